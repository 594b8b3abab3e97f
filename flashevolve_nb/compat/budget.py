"""``max_metric_calls`` as a hard cap, with many evolution steps in flight.

``gepa`` checks its budget before each iteration and lets the last iteration
finish, so a run may overshoot by up to one iteration's worth of metric calls.
With sixteen steps in flight the same rule would overshoot by sixteen. So
here a step reserves what it could spend at most (its minibatch twice and the
validation set once) before it evaluates anything, waits while the budget is
spoken for by other steps, and gives back what it did not spend when it ends
(gated out, skipped, failed). Work beyond that (a repaired artifact validated
again) reserves more before it runs. The spent count never exceeds the cap, every
step that starts can finish, and a run ends when the unreserved rest cannot
pay for another step.

One assumption: an evaluation of ``n`` examples costs at most ``n`` metric
calls. An adapter whose ``num_metric_calls`` says more is counted as it says,
and the count can then pass the cap; the budget never hides that.
"""

from __future__ import annotations

import asyncio

__all__ = ["MetricBudget"]


class MetricBudget:
    """Metric calls spent and reserved per step; ``limit=None`` is no limit (nothing waits)."""

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"max_metric_calls must be >= 1 or None (got {limit})")
        self.limit = limit
        self.spent = 0
        self._held: dict[int, int] = {}
        self._waiters: list[asyncio.Future[None]] = []

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
        self.spent += n
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
