"""Budgets: when a run stops asking for more work.

Count budgets (metric calls, proposals) stop new evolution steps and make
stages that would spend an exhausted budget drop the items waiting for them;
work already running finishes and anything that reaches admission is
admitted. Time budgets end the run at the deadline: what is in flight is
cancelled, what was admitted stays.

Metric calls are *reserved* by a stage before it makes them
(:meth:`BudgetTracker.reserve`) and count as committed from then on: once the
spent and the reserved calls reach the budget, no new step starts and items
waiting for a stage that spends calls are dropped. A run therefore overshoots
its metric-call budget by at most the one stage run that reserved last (GEPA
overshoots by one iteration), not by everything that was in flight.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["Budget", "BudgetTracker", "Reservation"]


@dataclass(frozen=True, slots=True)
class Budget:
    """Limits of one run; ``None`` means no limit of that kind.

    ``max_metric_calls`` counts task evaluations of one example, as ``gepa``
    does. ``max_sim_seconds`` is on the run clock (simulated seconds with the
    simulator); ``max_wall_seconds`` is real time.
    """

    max_metric_calls: int | None = None
    max_proposals: int | None = None
    max_sim_seconds: float | None = None
    max_wall_seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_metric_calls", "max_proposals", "max_sim_seconds", "max_wall_seconds"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise ValueError(
                    f"Budget.{name} must be a number or None (got {type(value).__name__} "
                    f"{value!r}); e.g. Budget({name}=100)"
                )
            if value is not None and not value > 0:
                raise ValueError(f"Budget.{name} must be > 0 or None (got {value!r})")

    @property
    def unlimited(self) -> bool:
        return all(
            v is None
            for v in (
                self.max_metric_calls,
                self.max_proposals,
                self.max_sim_seconds,
                self.max_wall_seconds,
            )
        )


class Reservation:
    """Metric calls one stage run promised to make and has not made yet."""

    __slots__ = ("_tracker", "left")

    def __init__(self, tracker: BudgetTracker, n: int) -> None:
        self._tracker = tracker
        self.left = n

    def spend(self, n: int = 1) -> None:
        """Count ``n`` calls made: spent, and no longer reserved."""
        moved = min(n, self.left)
        self.left -= moved
        self._tracker.reserved -= moved
        self._tracker.metric_calls += n

    def release(self) -> None:
        """Give back what was not spent (the stage ended, failed or was cancelled)."""
        self._tracker.reserved -= self.left
        self.left = 0


class BudgetTracker:
    """What has been spent (and reserved) against a :class:`Budget`."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.metric_calls = 0
        self.reserved = 0
        """Metric calls reserved by running stages and not yet made."""
        self.proposals = 0
        self._wall_start = time.monotonic()
        self._wall_before = 0.0

    def restart_wall_clock(self) -> None:
        self._wall_start = time.monotonic()

    def restore(self, *, metric_calls: int, proposals: int, wall_seconds: float) -> None:
        """Count what earlier sessions of a resumed run spent, so the limits cover the whole run."""
        self.metric_calls = metric_calls
        self.proposals = proposals
        self._wall_before = wall_seconds

    @property
    def wall_seconds(self) -> float:
        """Real seconds this run has run, over all of its sessions."""
        return self._wall_before + time.monotonic() - self._wall_start

    def exhausted(self, resource: str) -> bool:
        """Whether the count budget ``metric_calls`` or ``proposals`` is used up."""
        b = self.budget
        if resource == "metric_calls":
            return b.max_metric_calls is not None and self.metric_calls >= b.max_metric_calls
        if resource == "proposals":
            return b.max_proposals is not None and self.proposals >= b.max_proposals
        raise ValueError(f"unknown budget resource {resource!r}")

    def reserve(self, n: int) -> Reservation:
        """Reserve ``n`` metric calls for a stage about to make them."""
        if n < 0:
            raise ValueError(f"cannot reserve {n} metric calls")
        self.reserved += n
        return Reservation(self, n)

    def committed(self, resource: str) -> bool:
        """Like :meth:`exhausted`, counting reserved metric calls as spent."""
        if resource == "metric_calls":
            limit = self.budget.max_metric_calls
            return limit is not None and self.metric_calls + self.reserved >= limit
        return self.exhausted(resource)

    def count_reason(self) -> str | None:
        """Why no new step may start, if a count budget is used up."""
        if self.exhausted("metric_calls"):
            return f"max_metric_calls={self.budget.max_metric_calls} reached"
        if self.exhausted("proposals"):
            return f"max_proposals={self.budget.max_proposals} reached"
        return None
