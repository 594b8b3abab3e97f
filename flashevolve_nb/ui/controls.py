"""Live knobs: staleness policy and Delta_max, pipeline depth, the adaptive controller.

The controller's knobs are made from its ``params`` dataclass, one widget per
number or switch, so whatever it can tune shows up here. Every change goes
through a ``Run`` method, and so shows up in the event log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as w

from flashevolve_nb.runtime.run import Run
from flashevolve_nb.ui.html import pre
from flashevolve_nb.ui.sync import EchoGuard, assign
from flashevolve_nb.ui.tick import Tick, act

__all__ = ["ControlsView"]

_WIDE = {"description_width": "140px"}


class ControlsView:
    def __init__(self, run: Run, guard: EchoGuard, poke: Callable[[], None]) -> None:
        self._run = run
        self._guard = guard
        self._poke = poke
        self.status = w.HTML()
        self.policy = w.Dropdown(
            options=[], value=None, description="staleness policy", style=_WIDE
        )
        self.delta_max = w.BoundedIntText(
            value=2, min=0, max=1000, description="Δ_max", tooltip="for the guarded policy"
        )
        self.depth = w.BoundedIntText(
            min=1, max=4096, description="depth", tooltip="evolution steps in flight at most"
        )
        self.policy.observe(lambda c: self._person(c, self._set_policy), names="value")
        self.delta_max.observe(lambda c: self._person(c, self._set_delta), names="value")
        self.depth.observe(lambda c: self._person(c, self._set_depth), names="value")
        parts: list[Any] = [
            w.HTML("<b>staleness</b>"),
            w.HBox([self.policy, self.delta_max]),
            w.HTML("<b>pipeline</b>"),
            self.depth,
        ]
        self.controller_on: Any = None
        self.knobs: dict[str, Any] = {}
        self.bounds: dict[str, tuple[Any, Any]] = {}
        self.controller_view = w.HTML()
        ctrl = run.controller
        if ctrl is not None:
            self.controller_on = w.Checkbox(description="adaptive controller on")
            self.controller_on.observe(
                lambda c: self._person(c, lambda: self._switch(c["new"])), names="value"
            )
            parts += [w.HTML("<b>adaptive controller</b>"), self.controller_on]
            params = getattr(ctrl, "params", None)
            if dataclasses.is_dataclass(params):
                if isinstance(getattr(params, "bounds", None), Mapping):
                    parts.append(self._bounds_knobs([s.name for s in run.pipeline.stages]))
                for f in dataclasses.fields(params):
                    knob = _knob(f.name, getattr(params, f.name))
                    if knob is None:
                        continue
                    knob.observe(
                        lambda c, name=f.name: self._person(c, lambda: self._tune(name, c["new"])),
                        names="value",
                    )
                    self.knobs[f.name] = knob
                    parts.append(knob)
            parts.append(self.controller_view)
        else:
            parts.append(w.HTML("<i>this run has no adaptive controller</i>"))
        parts.append(self.status)
        self.widget = w.VBox(parts)

    def _bounds_knobs(self, stages: list[str]) -> Any:
        """Per-stage worker bounds (the controller's ``bounds``): a min and a max per stage."""
        rows = []
        for name in stages:
            lo = w.BoundedIntText(
                min=0, max=4096, description="min", layout=w.Layout(width="150px")
            )
            hi = w.BoundedIntText(
                min=0, max=4096, description="max", layout=w.Layout(width="150px")
            )
            for knob in (lo, hi):
                knob.observe(
                    lambda c, n=name: self._person(c, lambda: self._set_bounds(n)), names="value"
                )
            self.bounds[name] = (lo, hi)
            rows.append(
                w.HBox([w.Label(f"{name} workers", layout=w.Layout(width="130px")), lo, hi])
            )
        return w.VBox([w.HTML("<i>worker bounds per stage</i>"), *rows])

    def _set_bounds(self, stage: str) -> str:
        lo, hi = self.bounds[stage]
        if lo.value > hi.value:
            raise ValueError(f"{stage}: min {lo.value} is above max {hi.value}")
        current = dict(getattr(self._run.controller.params, "bounds", {}))
        current[stage] = (lo.value, hi.value)
        self._run.tune(bounds=current)
        return f"{stage} workers between {lo.value} and {hi.value}"

    def _person(self, change: dict[str, Any], fn: Callable[[], str]) -> None:
        if self._guard.active:
            return  # the refresher showing the current setting
        act(self.status, fn)
        self._poke()

    def _set_policy(self) -> str:
        name = self.policy.value
        if name is None:
            raise ValueError("choose a policy")
        if name == "guarded":
            self._run.set_policy(name, delta_max=self.delta_max.value)
            return f"policy guarded, Δ_max {self.delta_max.value}"
        self._run.set_policy(name)
        return f"policy {name}"

    def _set_delta(self) -> str:
        if self.policy.value != "guarded":
            return "Δ_max takes effect with the guarded policy"
        return self._set_policy()

    def _set_depth(self) -> str:
        self._run.set_depth(self.depth.value)
        return f"depth {self.depth.value}"

    def _switch(self, on: bool) -> str:
        self._run.set_controller(on)
        return f"controller {'on' if on else 'off'}"

    def _tune(self, name: str, value: Any) -> str:
        self._run.tune(**{name: value})
        return f"controller {name} = {value}"

    def update(self, tick: Tick) -> None:
        if not tick.visible:
            return
        s = tick.snap
        policies = tuple(s.policies)
        current = s.policy if s.policy in policies else None
        assign(self.policy, options=policies, value=current, disabled=s.done)
        assign(self.depth, value=s.depth, disabled=s.done)
        delta = s.policy_params.get("delta_max")
        if isinstance(delta, int):
            assign(self.delta_max, value=delta, disabled=s.done)
        else:
            assign(self.delta_max, disabled=s.done)
        if self.controller_on is not None and s.controller_enabled is not None:
            assign(self.controller_on, value=bool(s.controller_enabled), disabled=s.done)
        params = s.controller_params
        bounds = getattr(params, "bounds", None)
        if isinstance(bounds, Mapping):
            default = (getattr(params, "min_workers", 0), getattr(params, "max_workers", 0))
            for name, (lo, hi) in self.bounds.items():
                low, high = bounds.get(name, default)
                assign(lo, value=low, disabled=s.done)
                assign(hi, value=high, disabled=s.done)
        for name, knob in self.knobs.items():
            value = getattr(params, name, None)
            if value is not None:
                assign(knob, value=value, disabled=s.done)
        if s.controller is not None:
            assign(
                self.controller_view,
                value="<i>what the controller saw and did last</i>" + pre(repr(s.controller), 160),
            )


def _knob(name: str, value: Any) -> Any:
    label = name  # descriptions render as text, not HTML
    if isinstance(value, bool):
        return w.Checkbox(value=value, description=label)
    if isinstance(value, int):
        return w.IntText(value=value, description=label, style=_WIDE)
    if isinstance(value, float):
        return w.FloatText(value=value, description=label, style=_WIDE)
    return None
