"""Run statistics, derived from events only.

Deriving every figure from the event stream (and not from counters scattered
over the engine) means the CLI summary, the dashboard and a run reopened from
its stored events all agree by construction.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from flashevolve_nb.clock_lag import ClockBehind, LagReport
from flashevolve_nb.engine.duplicates import DUPLICATE
from flashevolve_nb.engine.events import (
    Admitted,
    Event,
    GateResult,
    ItemFailed,
    LLMCallFinished,
    LLMCallStarted,
    PolicyDecision,
    ProposalFailed,
    ProposalMade,
    RunFinished,
    StaleDetected,
    StepFinished,
    StepStarted,
    ValidationDone,
)

__all__ = ["RunStats", "StatsCollector"]


@dataclass(frozen=True, slots=True)
class RunStats:
    """Figures of a run. Rates are per minute of the run clock (simulated with the simulator)."""

    sim_seconds: float
    steps: int
    proposals: int
    proposals_failed: int
    gate_passed: int
    gate_failed: int
    accepted: int
    validations: int
    items_failed: int
    llm_calls: int
    llm_errors: int
    llm_cancelled: int
    prompt_tokens: int
    completion_tokens: int
    inflight_mean: float
    inflight_peak: int
    seed_score: float
    best_score: float
    stale_seen: int
    """Stale detections (an item stale at two decision points counts twice)."""
    decisions: dict[str, int] = field(default_factory=dict)
    """Policy decisions by kind: accept, patch, discard, defer."""
    repair_tokens: int = 0
    """Tokens spent on repair/distillation LLM calls (role ``repair``)."""
    repaired_admitted: int = 0
    repaired_best: int = 0
    """Repaired artifacts that became the pool's best when admitted."""
    finish_reason: str = ""
    partial_releases: int = 0
    """Stage outputs handed on before all their requests were in (speculative completion)."""
    speculative_admitted: int = 0
    speculation_confirmed: int = 0
    speculation_rolled_back: int = 0
    controller_actions: int = 0
    """Changes the adaptive controller made (and tunings of it)."""
    duplicates: int = 0
    """Steps ended before validation because their text was validated already."""
    clock_behind: LagReport | None = None
    """Set when the real clock fell behind the simulated one (``ClockBehind``): every
    figure above is degraded. None when it kept up, or on the virtual clock."""

    @property
    def minutes(self) -> float:
        return self.sim_seconds / 60.0

    def per_minute(self, count: int) -> float:
        return count / self.minutes if self.minutes > 0 else 0.0

    @property
    def proposals_per_min(self) -> float:
        return self.per_minute(self.proposals)

    @property
    def accepted_per_min(self) -> float:
        return self.per_minute(self.accepted)

    @property
    def validations_per_min(self) -> float:
        return self.per_minute(self.validations)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


_COUNTED = frozenset(
    {
        "partial_release",
        "speculative_admitted",
        "speculation_confirmed",
        "speculation_rolled_back",
        "controller_action",
    }
)
"""Event kinds that are only counted (speculation and adaptive control)."""


class StatsCollector:
    """An event subscriber that keeps running totals."""

    def __init__(self) -> None:
        self._c: Counter[str] = Counter()
        self._decisions: Counter[str] = Counter()
        self._inflight = 0
        self._peak = 0
        self._area = 0.0
        self._t_last = 0.0
        self._t_end = 0.0
        self._seed_score = float("nan")
        self._best = float("nan")
        self._finish = ""
        self._behind: LagReport | None = None

    def __call__(self, e: Event) -> None:
        self._t_end = max(self._t_end, e.t)
        if isinstance(e, LLMCallStarted | LLMCallFinished):
            self._area += self._inflight * (e.t - self._t_last)
            self._t_last = e.t
            if isinstance(e, LLMCallStarted):
                self._inflight += 1
                self._peak = max(self._peak, self._inflight)
            else:
                self._inflight -= 1
                self._c["llm_calls"] += 1
                self._c["prompt_tokens"] += e.prompt_tokens
                self._c["completion_tokens"] += e.completion_tokens
                if e.role == "repair":
                    self._c["repair_tokens"] += e.prompt_tokens + e.completion_tokens
                if e.finish_reason == "cancelled":
                    self._c["llm_cancelled"] += 1
                elif not e.ok:
                    self._c["llm_errors"] += 1
        elif isinstance(e, StepStarted):
            self._c["steps"] += 1
        elif isinstance(e, ProposalMade):
            self._c["proposals"] += 1
        elif isinstance(e, ProposalFailed):
            self._c["proposals_failed"] += 1
        elif isinstance(e, GateResult):
            self._c["gate_passed" if e.passed else "gate_failed"] += 1
        elif isinstance(e, ValidationDone):
            self._c["validations"] += 1
        elif isinstance(e, ItemFailed):
            self._c["items_failed"] += 1
        elif isinstance(e, StaleDetected):
            self._c["stale_seen"] += 1
        elif isinstance(e, PolicyDecision):
            self._decisions[e.decision] += 1
        elif isinstance(e, Admitted):
            if e.origin == "seed":
                if self._seed_score != self._seed_score:  # first seed only
                    self._seed_score = e.score
            else:
                self._c["accepted"] += 1
            if e.origin == "repair":
                self._c["repaired_admitted"] += 1
                self._c["repaired_best"] += int(e.is_best)
            if self._best != self._best or e.score > self._best:
                self._best = e.score
        elif e.kind in _COUNTED:
            self._c[e.kind] += 1
        elif isinstance(e, RunFinished):
            self._finish = e.reason
        elif isinstance(e, StepFinished):
            self._c["duplicates"] += e.outcome.startswith(DUPLICATE)
        elif isinstance(e, ClockBehind):
            self._behind = e.report

    def stats(self, now: float | None = None) -> RunStats:
        t = self._t_end if now is None else max(now, self._t_end)
        area = self._area + self._inflight * (t - self._t_last)
        c = self._c
        return RunStats(
            sim_seconds=t,
            steps=c["steps"],
            proposals=c["proposals"],
            proposals_failed=c["proposals_failed"],
            gate_passed=c["gate_passed"],
            gate_failed=c["gate_failed"],
            accepted=c["accepted"],
            validations=c["validations"],
            items_failed=c["items_failed"],
            llm_calls=c["llm_calls"],
            llm_errors=c["llm_errors"],
            llm_cancelled=c["llm_cancelled"],
            prompt_tokens=c["prompt_tokens"],
            completion_tokens=c["completion_tokens"],
            inflight_mean=area / t if t > 0 else 0.0,
            inflight_peak=self._peak,
            seed_score=self._seed_score,
            best_score=self._best,
            stale_seen=c["stale_seen"],
            decisions=dict(self._decisions),
            repair_tokens=c["repair_tokens"],
            repaired_admitted=c["repaired_admitted"],
            repaired_best=c["repaired_best"],
            finish_reason=self._finish,
            partial_releases=c["partial_release"],
            speculative_admitted=c["speculative_admitted"],
            speculation_confirmed=c["speculation_confirmed"],
            speculation_rolled_back=c["speculation_rolled_back"],
            controller_actions=c["controller_action"],
            duplicates=c["duplicates"],
            clock_behind=self._behind,
        )
