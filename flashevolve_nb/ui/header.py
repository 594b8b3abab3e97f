"""The dashboard's header: the figures that say how the run is doing, and run-wide buttons."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as w

from flashevolve_nb.runtime.run import Run
from flashevolve_nb.runtime.snapshot import RunSnapshot
from flashevolve_nb.ui.html import badge, esc, num
from flashevolve_nb.ui.sync import assign
from flashevolve_nb.ui.tick import Tick, act

__all__ = ["HeaderView"]

STATE_COLOURS = {
    "starting": "#607d8b",
    "running": "#2e7d32",
    "paused": "#ef6c00",
    "stopping": "#ef6c00",
    "finished": "#1565c0",
    "failed": "#c62828",
    "cancelled": "#6d4c41",
}


class HeaderView:
    def __init__(self, run: Run, poke: Callable[[], None]) -> None:
        self._run = run
        self._poke = poke
        self.figures = w.HTML()
        self.problems = w.HTML()
        self.status = w.HTML()
        self.pause_all = w.Button(
            description="pause all", icon="pause", tooltip="pause every stage"
        )
        self.resume_all = w.Button(description="resume all", icon="play")
        self.stop_drain = w.Button(
            description="stop (drain)", icon="stop", tooltip="finish what is in flight, then end"
        )
        self.stop_cancel = w.Button(
            description="stop (cancel)",
            icon="times",
            button_style="danger",
            tooltip="end now; what is in flight is dropped, admitted artifacts stay",
        )
        self.pause_all.on_click(lambda _: self._do(self._pause_all))
        self.resume_all.on_click(lambda _: self._do(self._resume_all))
        self.stop_drain.on_click(lambda _: self._do(lambda: self._stop("drain")))
        self.stop_cancel.on_click(lambda _: self._do(lambda: self._stop("cancel")))
        buttons = w.HBox([self.pause_all, self.resume_all, self.stop_drain, self.stop_cancel])
        self.widget = w.VBox([self.figures, buttons, self.status, self.problems])
        # Stable hooks for browser tests and user CSS; the layout may change, these do not.
        self.widget.add_class("fe-header")
        self.figures.add_class("fe-figures")
        self.pause_all.add_class("fe-pause-all")
        self.resume_all.add_class("fe-resume-all")
        self.stop_drain.add_class("fe-stop-drain")
        self.stop_cancel.add_class("fe-stop-cancel")
        self.status.add_class("fe-header-status")

    def _do(self, fn: Callable[[], str]) -> None:
        act(self.status, fn)
        self._poke()

    def _pause_all(self) -> str:
        self._run.pause()
        return "paused every stage and the start of new steps"

    def _resume_all(self) -> str:
        self._run.resume()
        return "resumed"

    def _stop(self, mode: Any) -> str:
        self._run.stop(mode)
        return f"stopping ({mode})"

    def update(self, tick: Tick) -> None:
        s = tick.snap
        assign(self.figures, value=figures_html(s))
        problems = ""
        if s.error:
            problems += (
                f'<div style="color:#c62828;font-weight:bold">the run failed: {esc(s.error)}</div>'
            )
        if s.errors:
            recent = "".join(f"<li>{esc(e[:300])}</li>" for e in s.errors[-3:])
            problems += (
                f'<div style="color:#b35c00">{s.stats.items_failed} item failure(s), '
                f'most recent:<ul style="margin:0">{recent}</ul></div>'
            )
        assign(self.problems, value=problems)
        ended = s.done
        for b in (self.pause_all, self.resume_all, self.stop_drain, self.stop_cancel):
            assign(b, disabled=ended)


def figures_html(s: RunSnapshot) -> str:
    st = s.stats
    sim = s.sim_seconds
    clock = (
        f"{sim / 60:.1f} simulated min (×{s.time_scale:g})"
        if s.time_scale != 1.0
        else f"{sim / 60:.1f} min"
    )
    real = int(s.real_seconds)
    inflight = len(s.requests)
    cells = [
        ("elapsed", f"{real // 60}:{real % 60:02d} real, {clock}"),
        ("proposals/min", num(st.proposals_per_min, 2)),
        ("accepted/min", num(st.accepted_per_min, 2)),
        ("best score", f"{num(st.best_score)} (seed {num(st.seed_score)})"),
        ("tokens", f"{st.tokens:,}"),
        ("LLM requests in flight", f"{inflight} (peak {st.inflight_peak})"),
        ("steps in flight", f"{s.pipeline.steps_in_flight} / depth {s.depth}"),
        ("policy", s.policy),
    ]
    body = " &nbsp;·&nbsp; ".join(
        f'<span style="opacity:0.7">{esc(k)}</span> <b>{esc(v)}</b>' for k, v in cells
    )
    backend = s.backend + (
        " (simulated)" if "simulat" not in s.backend.lower() and s.time_scale != 1.0 else ""
    )
    title = (
        f"{badge(s.state, STATE_COLOURS.get(s.state, '#607d8b'))} <b>{esc(s.name)}</b> "
        f'<span style="opacity:0.7">{esc(s.workload)} on {esc(backend)}</span>'
    )
    if s.finish_reason and s.done:
        title += f' <span style="opacity:0.7">— {esc(s.finish_reason)}</span>'
    return f'<div style="font-size:13px">{title}<br>{body}</div>'
