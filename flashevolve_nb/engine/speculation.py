"""Speculation: per-stage alpha, tails per step, speculative admission with confirm/rollback.

Two mechanisms (PAPER.md, Mechanism 3), both off by default:

- **Partial release** (see :mod:`flashevolve_nb.engine.partial`): a stage
  with ``alpha < 1`` hands its output on once that fraction of its requests
  has finished. The rest run on in *tails* that this object keeps per step.
- **Speculative validation**: a candidate whose validation was released
  early reaches admission with the scores of a prefix of the validation set.
  If the prefix beats its parent's scores on the same instances it enters the
  pool at once, as *speculative* (selectable as a parent, provisional scores).
  When its full evaluation is in, it is either **confirmed** (full mean beats
  the parent's: same version, full scores) or **rolled back**: its entry is
  removed, which bumps the pool version, so everything derived from it is
  stale at its next decision point and the staleness policy decides about it.
  A rolled-back candidate then takes the ordinary way: it is admitted with
  its full scores like any candidate that was never speculative. Speculation
  therefore changes *when* candidates become parents, never *which*
  candidates end up in the pool; no confirmed admission is ever removed.
  A candidate whose prefix does not clear the bar waits for its full scores
  and is admitted then, as without speculation.

Every step of this is an event: ``PartialRelease``, ``PartialFoldIn``,
``SpeculativeAdmitted``, ``SpeculationConfirmed``, ``SpeculationRolledBack``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from flashevolve_nb.engine.events import (
    Admitted,
    FrontierChanged,
    SpeculationConfirmed,
    SpeculationRolledBack,
    SpeculativeAdmitted,
    StageControl,
)
from flashevolve_nb.engine.items import WorkItem
from flashevolve_nb.engine.workload import (
    PendingValidations,
    partial_stages_of,
    validation_stage_of,
)

if TYPE_CHECKING:
    from flashevolve_nb.engine.context import StageContext
    from flashevolve_nb.engine.pipeline import Pipeline

__all__ = [
    "PendingValidation",
    "Speculation",
    "SpeculationConfig",
    "SpeculationSnapshot",
    "speculation_of",
    "stage_alpha",
]

T = TypeVar("T")


@dataclass(frozen=True)
class SpeculationConfig:
    """How a run speculates. The defaults speculate not at all."""

    alpha: float | Mapping[str, float] = 1.0
    """Fraction of a stage's requests after which it hands its output on (1: wait for
    all). A number applies to every stage the workload can release early (its
    ``partial_stages``); a mapping sets stages one by one, e.g. ``{"validate": 0.25}``."""
    validation: bool = False
    """Speculative validation: admit a candidate on its validation prefix (needs the
    workload's ``validation_stage`` to have an alpha below 1)."""
    margin: float = 0.0
    """How far the prefix mean must exceed the parent's mean on the same instances."""

    def __post_init__(self) -> None:
        values = self.alpha.values() if isinstance(self.alpha, Mapping) else [self.alpha]
        for a in values:
            if not (isinstance(a, int | float) and 0 < a <= 1):
                raise ValueError(f"SpeculationConfig.alpha values must be in (0, 1] (got {a!r})")
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ValueError(f"SpeculationConfig.margin must be >= 0 (got {self.margin!r})")


@dataclass(frozen=True, eq=False)
class PendingValidation:
    """A candidate at admission whose validation is still running (a workload hands it over).

    ``measured`` holds the scores in so far, by instance index; ``full``
    resolves to every score in instance order.
    """

    artifact_id: str
    measured: Mapping[int, float]
    full: asyncio.Task[tuple[float, ...]]


@dataclass(frozen=True, slots=True)
class SpeculationSnapshot:
    alpha: Mapping[str, float]
    validation: bool
    margin: float
    open: tuple[str, ...]
    """Speculative admissions waiting for their full evaluation."""
    tails: int
    """Partially released stages whose remaining requests are still running."""
    admitted: int
    confirmed: int
    rolled_back: int


@dataclass(slots=True)
class _Open:
    artifact_id: str
    step: int
    prefix_score: float
    bar: float
    parent_score: float


def speculation_of(ctx: StageContext) -> Speculation:
    """The run's :class:`Speculation`, from inside a stage."""
    return ctx.speculation


def stage_alpha(ctx: StageContext) -> float:
    """The alpha of the stage ``ctx`` works for (1.0: release only when all requests are in)."""
    return speculation_of(ctx).alpha(ctx.stage)


class Speculation:
    """Owned by the pipeline; runs on its loop only."""

    def __init__(self, pipeline: Pipeline, config: SpeculationConfig) -> None:
        self._p = pipeline
        workload = pipeline.workload
        self._stages = tuple(s.name for s in pipeline.stages)
        self._partial: tuple[str, ...] | None = partial_stages_of(workload)
        self._validation_stage: str | None = validation_stage_of(workload)
        self._alpha: dict[str, float] = {}
        if isinstance(config.alpha, Mapping):
            for stage, a in config.alpha.items():
                self._check_stage(stage)
                if a < 1:
                    self._alpha[stage] = float(a)
        elif config.alpha < 1:
            if not self._partial:
                raise ValueError(
                    f"alpha={config.alpha:g}: the workload {workload.name!r} has no stage "
                    "that can release partial output"
                )
            self._alpha = dict.fromkeys(self._partial, float(config.alpha))
        self.margin = config.margin
        self._validation = False
        if config.validation:
            self._check_validation()
            self._validation = True
        # Insertion-ordered (a dict, not a set): a step's tails are cancelled in the order
        # they started, so cancelled calls report in the same order under the same seed.
        self._tails: dict[int, dict[asyncio.Task[Any], None]] = {}
        self._open: dict[str, _Open] = {}
        self._admitted = 0
        self._confirmed = 0
        self._rolled_back = 0

    # ---- settings ----------------------------------------------------------
    @property
    def partial_stages(self) -> tuple[str, ...]:
        """Stages that can hand their output on early (every stage if the workload says none)."""
        return self._partial if self._partial is not None else tuple(self._stages)

    def alpha(self, stage: str) -> float:
        return self._alpha.get(stage, 1.0)

    @property
    def validation(self) -> bool:
        return self._validation

    def set_alpha(self, stage: str, alpha: float, *, source: str = "user") -> None:
        """Change a stage's alpha now; its next item uses it."""
        self._check_stage(stage)
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1] (got {alpha!r})")
        if alpha == 1 and self._validation and stage == self._validation_stage:
            raise ValueError(
                f"speculative validation is on and needs {stage!r} to release early; "
                "turn it off first (set_validation(False))"
            )
        if alpha < 1:
            self._alpha[stage] = float(alpha)
        else:
            self._alpha.pop(stage, None)
        self._control(stage, "alpha", f"{alpha:g}", source)

    def set_validation(self, on: bool, *, source: str = "user") -> None:
        """Turn speculative validation on or off; candidates already admitted stay as they are."""
        if on:
            self._check_validation()
        self._validation = on
        self._control("*", "speculative_validation", "on" if on else "off", source)

    def _check_stage(self, stage: str) -> None:
        if stage not in self._stages:
            raise ValueError(
                f"alpha given for unknown stage {stage!r}; stages: {list(self._stages)}"
            )
        if self._partial is not None and stage not in self._partial:
            can = ", ".join(self._partial) or "none"
            raise ValueError(
                f"stage {stage!r} cannot release partial output; stages that can: {can}"
            )

    def _check_validation(self) -> None:
        stage = self._validation_stage
        if stage is not None and self.alpha(stage) >= 1:
            raise ValueError(
                f"speculative validation judges a validation prefix: give {stage!r} an "
                f"alpha below 1, e.g. alpha={{{stage!r}: 0.25}}"
            )

    def _control(self, stage: str, action: str, value: str, source: str) -> None:
        self._p.bus.emit(
            StageControl(
                t=self._p.clock.now(), stage=stage, action=action, value=value, source=source
            )
        )

    # ---- tails -----------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """A task of the run (cancelled and awaited when it stops)."""
        return self._p.spawn(coro, name=name)

    def spawn_tail(self, step: int, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Run ``coro`` for ``step``: cancelled when the step ends or the run stops."""
        task = self._p.spawn(coro, name=name)
        tails = self._tails.setdefault(step, {})
        tails[task] = None

        def forget(t: asyncio.Task[Any]) -> None:
            left = self._tails.get(step)
            if left is not None:
                left.pop(t, None)
                if not left:
                    del self._tails[step]

        task.add_done_callback(forget)
        return task

    def step_ended(self, step: int) -> None:
        """The step is over: whatever its tails were computing is no longer needed."""
        for t in tuple(self._tails.get(step, ())):
            t.cancel()

    # ---- admission ---------------------------------------------------------
    def take(self, item: WorkItem) -> bool:
        """Handle ``item`` at admission if its validation is still running; else False."""
        workload = self._p.workload
        pending = (
            workload.pending_validation(item) if isinstance(workload, PendingValidations) else None
        )
        if pending is None or pending.artifact_id != item.artifact.id:
            return False
        spec = self._speculate(item, pending) if self._validation else None
        self._p.spawn(self._fold_in(item, pending, spec), name="flashevolve-fold-in")
        return True

    def _speculate(self, item: WorkItem, pending: PendingValidation) -> _Open | None:
        pool = self._p.pool
        art = item.artifact
        parent_id = art.parents[0] if art.parents else None
        if parent_id is None or parent_id not in pool or not pending.measured:
            return None
        parent = pool.entry(parent_id)
        idx = sorted(pending.measured)
        prefix = sum(pending.measured[i] for i in idx) / len(idx)
        bar = sum(parent.scores[i] for i in idx) / len(idx) + self.margin
        if not prefix > bar:
            return None
        # Unmeasured instances borrow the parent's scores: no better than what is known.
        provisional = [pending.measured.get(i, s) for i, s in enumerate(parent.scores)]
        front_before = pool.front_ids()
        entry = pool.admit(art, provisional, self._p.clock.now(), speculative=True)
        self._admitted += 1
        spec = _Open(art.id, item.step, prefix, bar, parent.score)
        self._open[art.id] = spec
        self._p.bus.emit(
            SpeculativeAdmitted(
                t=self._p.clock.now(), step=item.step, artifact_id=art.id, parents=art.parents,
                version=entry.version, prefix_score=prefix, bar=bar, measured=len(idx),
                instances=len(provisional), provisional_score=entry.score,
            )
        )  # fmt: skip
        self._frontier(front_before)
        return spec

    async def _fold_in(
        self, item: WorkItem, pending: PendingValidation, spec: _Open | None
    ) -> None:
        p = self._p
        try:
            try:
                scores = tuple(await pending.full)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if spec is not None:
                    self._roll_back(spec, None, f"its validation failed: {exc}")
                p._item_failed(item, "admit", exc)
                return
            try:
                outcome = self._settle(item, spec, scores)
            except Exception as exc:
                p._item_failed(item, "admit", exc)
                return
            p._end_item(item, outcome)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an engine bug: stop the run, do not lose it silently
            p._fail(exc)

    def _settle(self, item: WorkItem, spec: _Open | None, scores: tuple[float, ...]) -> str:
        p = self._p
        if spec is None:
            p._admit_scores(item.step, item.artifact, scores)
            return "admitted"
        score = sum(scores) / len(scores) if scores else 0.0
        if score > spec.parent_score:
            self._confirm(item, spec, scores, score)
            return "admitted (speculation confirmed)"
        why = f"full score {score:.4f} does not beat the parent's {spec.parent_score:.4f}"
        self._roll_back(spec, score, why)
        p._admit_scores(item.step, item.artifact, scores)
        return "admitted (speculation rolled back)"

    def _confirm(
        self, item: WorkItem, spec: _Open, scores: tuple[float, ...], score: float
    ) -> None:
        p = self._p
        pool = p.pool
        others = [e.score for e in pool if e.artifact.id != spec.artifact_id]
        best_before = max(others) if others else float("-inf")
        front_before = pool.front_ids()
        entry = pool.confirm(spec.artifact_id, scores)
        del self._open[spec.artifact_id]
        self._confirmed += 1
        now = p.clock.now()
        p.bus.emit(
            SpeculationConfirmed(
                t=now, step=item.step, artifact_id=spec.artifact_id, version=entry.version,
                prefix_score=spec.prefix_score, score=score, parent_score=spec.parent_score,
            )
        )  # fmt: skip
        # The admission now counts: it is reported as any other (a run store that
        # persists admissions must treat this point like Pipeline._admit_scores).
        p.bus.emit(
            Admitted(
                t=now, step=item.step, artifact_id=spec.artifact_id, parents=entry.artifact.parents,
                origin=entry.artifact.origin.value, version=entry.version, score=entry.score,
                is_best=entry.score > best_before,
            )
        )  # fmt: skip
        self._frontier(front_before)
        improved = getattr(p, "_after_improvement", None)
        if improved is not None and entry.score > best_before:
            improved()

    def _roll_back(self, spec: _Open, score: float | None, reason: str) -> None:
        p = self._p
        pool = p.pool
        if spec.artifact_id not in pool:
            return
        front_before = pool.front_ids()
        pool.remove(spec.artifact_id)
        self._open.pop(spec.artifact_id, None)
        self._rolled_back += 1
        derived = tuple(
            queued.id
            for stage in p.stages
            for queued in stage.queue.items()
            if queued.artifact.id == spec.artifact_id or spec.artifact_id in queued.artifact.parents
        )
        p.bus.emit(
            SpeculationRolledBack(
                t=p.clock.now(), step=spec.step, artifact_id=spec.artifact_id,
                version=pool.version, prefix_score=spec.prefix_score, score=score,
                parent_score=spec.parent_score, reason=reason, derived=derived,
            )
        )  # fmt: skip
        self._frontier(front_before)

    def _frontier(self, before: tuple[str, ...]) -> None:
        pool = self._p.pool
        if pool.front_ids() == before or not len(pool):
            return
        best = pool.best()
        self._p.bus.emit(
            FrontierChanged(
                t=self._p.clock.now(), version=pool.version,
                front_size=len(pool.front_ids()), best_id=best.artifact.id, best_score=best.score,
            )
        )  # fmt: skip

    def close(self) -> None:
        """At the end of a run: withdraw speculative admissions that were never confirmed.

        Their scores are provisional, and a finished run must report measured
        scores only; every confirmed admission stays.
        """
        for spec in list(self._open.values()):
            self._roll_back(spec, None, "the run ended before its full validation")

    def snapshot(self) -> SpeculationSnapshot:
        return SpeculationSnapshot(
            alpha=dict(self._alpha),
            validation=self._validation,
            margin=self.margin,
            open=tuple(self._open),
            tails=sum(len(ts) for ts in self._tails.values()),
            admitted=self._admitted,
            confirmed=self._confirmed,
            rolled_back=self._rolled_back,
        )
