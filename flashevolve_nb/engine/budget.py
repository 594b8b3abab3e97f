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

**Hard-cap mode** (:class:`HardCap`, ``Budget(hard_metric_cap=True)``): a step
reserves what it could spend at most (its minibatch twice and the validation
set once, for GEPA) before it evaluates anything, waits while the budget is
spoken for by other steps, and gives back what it did not spend when it ends
(gated out, skipped, failed). Work beyond that (a repaired artifact validated
again) reserves more before it runs (:meth:`HardCap.ensure`). The spent count
never exceeds the cap, every step that starts can finish, and a run ends when
the unreserved rest cannot pay for another step. This is how
``flashevolve_nb.optimize`` keeps ``max_metric_calls``. One assumption: an
evaluation of ``n`` examples costs at most ``n`` metric calls; an evaluator
that reports more is counted as it says, and the count can then pass the cap.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

__all__ = ["Budget", "BudgetTracker", "HardCap", "Reservation"]


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
    hard_metric_cap: bool = False
    """``max_metric_calls`` as a hard cap: a workload's steps reserve their worst case
    up front (:class:`HardCap`, handed to stages as ``StageContext.metric_cap``; both
    GEPA evaluators do) and the run never spends more than the limit. Default: the
    per-stage reservations above (overshoot by at most one stage run)."""

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
        self.hard_cap = HardCap(self)
        """Per-step reservations against ``max_metric_calls`` (the hard-cap mode); it
        counts on this tracker's ``metric_calls``, so there is one count."""

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


class HardCap:
    """``max_metric_calls`` as a hard cap, reserved per step (see the module docstring).

    It counts on a :class:`BudgetTracker`'s ``metric_calls`` (the run's one
    count); ``HardCap(limit)`` alone makes a tracker of its own. ``limit`` None
    is no limit: nothing ever waits.
    """

    def __init__(self, tracker: BudgetTracker | int | None) -> None:
        if not isinstance(tracker, BudgetTracker):
            if tracker is not None and (
                isinstance(tracker, bool) or not isinstance(tracker, int) or tracker < 1
            ):
                raise ValueError(f"max_metric_calls must be >= 1 or None (got {tracker!r})")
            tracker = BudgetTracker(Budget(max_metric_calls=tracker, hard_metric_cap=True))
        self.tracker = tracker
        self._held: dict[int, int] = {}
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def limit(self) -> int | None:
        return self.tracker.budget.max_metric_calls

    @property
    def spent(self) -> int:
        return self.tracker.metric_calls

    @property
    def reserved(self) -> int:
        return sum(self._held.values())

    @property
    def remaining(self) -> int | None:
        """What is neither spent nor reserved (None without a limit)."""
        if self.limit is None:
            return None
        return max(0, self.limit - self.spent - self.reserved)

    def can_ever_pay(self, cost: int) -> bool:
        """Whether a step costing ``cost`` can still start, now or once reservations come back."""
        return self.limit is None or self.limit - self.spent >= cost

    async def reserve(self, step: int, cost: int) -> bool:
        """Hold ``cost`` calls for ``step``, waiting for other steps to give some back if needed.

        False when the budget can never pay for it (even with every reservation returned).
        """
        while True:
            if not self.can_ever_pay(cost):
                return False
            remaining = self.remaining
            if remaining is None or remaining >= cost:
                self._held[step] = self._held.get(step, 0) + cost
                return True
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    async def ensure(self, step: int, n: int) -> bool:
        """Make ``step``'s reservation cover ``n`` more calls, reserving more if it does not.

        A step only needs more than it reserved when its work is redone (a repaired
        artifact is validated again) or it never reserved (steps the engine starts by
        itself). It gives back what it holds before it waits, so a waiting step never
        holds budget that another waiting step needs.
        """
        held = self._held.get(step, 0)
        if self.limit is None or held >= n:
            return True
        self.release(step)
        return await self.reserve(step, n)

    def spend(self, step: int, n: int) -> None:
        """Count ``n`` calls as spent, out of ``step``'s reservation first."""
        self.tracker.metric_calls += n
        held = self._held.get(step)
        if held is not None:
            self._held[step] = max(0, held - n)
        self._wake()

    def release(self, step: int) -> None:
        """Give back what ``step`` reserved and did not spend (its step has ended)."""
        if self._held.pop(step, None) is not None:
            self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)
