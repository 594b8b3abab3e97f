"""What one system's run against one server produced, as plain frozen values.

Every system (the real ``gepa``, our modes, ``turbo-gepa``) reports the same
:class:`RunFigures`, counted on the client side from its own events, so the
benchmark compares like with like. What the *server* saw (in-flight requests,
running sequences, generated tokens) comes separately from the server's own
samples (:mod:`flashevolve_nb.bench.metrics`), the same way for every system.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RunBudget", "RunFigures"]


@dataclass(frozen=True, slots=True)
class RunBudget:
    """When a run stops: whichever limit comes first (at least one must be set).

    ``sim_minutes`` is simulated time: real seconds = ``sim_minutes * 60 /
    time_scale`` (against a real engine, ``time_scale`` is 1).
    """

    sim_minutes: float | None = None
    metric_calls: int | None = None
    wall_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.sim_minutes is None and self.metric_calls is None and self.wall_seconds is None:
            raise ValueError(
                "a run budget needs a limit: give sim_minutes, metric_calls or wall_seconds"
            )
        for name in ("sim_minutes", "metric_calls", "wall_seconds"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"RunBudget.{name} must be > 0 or None (got {value!r})")

    def real_seconds(self, time_scale: float) -> float | None:
        """The tighter of the time limits, in real seconds (None: no time limit)."""
        limits = [self.wall_seconds] if self.wall_seconds is not None else []
        if self.sim_minutes is not None:
            limits.append(self.sim_minutes * 60.0 / time_scale)
        return min(limits) if limits else None


@dataclass(frozen=True, slots=True)
class RunFigures:
    """Client-side counts of one run; times in simulated seconds unless named ``wall``."""

    system: str
    seed: int
    time_scale: float
    wall_seconds: float
    sim_seconds: float
    """``wall_seconds * time_scale``: the run's length on the simulated clock."""
    proposals: int
    """New candidates produced by the propose step (reflection answers parsed)."""
    accepted: int
    """Proposals admitted to the pool (for gepa: passed its minibatch check)."""
    val_sweeps: int
    """Validation-set evaluations of a candidate (the seed's included)."""
    metric_calls: int
    """Evaluations of one data instance (gepa's ``max_metric_calls`` unit)."""
    llm_requests: int
    prompt_tokens: int
    completion_tokens: int
    wasted_tokens: int
    """Completion tokens of work that led to no admitted candidate (gated out, stale,
    discarded, rolled back)."""
    seed_val: float
    best_val: float
    best_test: float | None
    """Mean score of the best candidate on the held-out test split (outside the budget)."""
    seed_test: float | None
    curve: tuple[tuple[float, float], ...] = ()
    """(simulated seconds since the start, best validation score so far)."""
    notes: tuple[str, ...] = field(default=())
    client_lag: float = float("nan")
    """Mean wake-up lag of the client's event loop, in simulated seconds
    (``flashevolve_nb.clock_lag``): how much the client's own simulated waits stretched.
    NaN where not measured (``gepa`` keeps no simulated clock of its own)."""

    def best_at(self, sim_seconds: float) -> float:
        """Best validation score reached by ``sim_seconds`` (the seed's before any)."""
        best = self.seed_val
        for t, score in self.curve:
            if t <= sim_seconds:
                best = max(best, score)
        return best
