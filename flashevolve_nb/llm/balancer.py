"""Spreading requests over replicas: least outstanding requests, failing ones rested.

Several base URLs of one model (vLLM replicas) serve one backend. Each new
attempt goes to the healthy replica with the fewest requests in flight and a
free slot under its concurrency cap, so a slow replica naturally gets less
work. A replica whose attempt failed (5xx, timeout, dropped connection) rests
for a cooldown that doubles with each consecutive failure; a success ends it.
When every replica rests, the one that recovers first is tried anyway: a
request is never refused for lack of a healthy replica, only delayed by the
caller's own backoff.

Not thread-safe, and bound to one event loop: the backend keeps one balancer
per loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Balancer", "Replica", "ReplicaStats"]

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class ReplicaStats:
    endpoint: str
    in_flight: int
    served: int
    failed: int
    healthy: bool
    resting_for: float
    """Seconds until a resting replica is preferred again (0 when healthy)."""


class Replica(Generic[C]):
    """One endpoint and its client, with live load and health."""

    def __init__(self, endpoint: str, client: C, cap: int) -> None:
        self.endpoint = endpoint
        self.client = client
        self.cap = cap
        self.in_flight = 0
        self.served = 0
        self.failed = 0
        self.consecutive_failures = 0
        self.rest_until = 0.0

    def healthy(self, now: float) -> bool:
        return self.rest_until <= now

    def stats(self, now: float) -> ReplicaStats:
        return ReplicaStats(
            self.endpoint,
            self.in_flight,
            self.served,
            self.failed,
            self.healthy(now),
            max(0.0, self.rest_until - now),
        )


class Balancer(Generic[C]):
    def __init__(
        self,
        replicas: Sequence[Replica[C]],
        *,
        cooldown: float = 1.0,
        max_cooldown: float = 30.0,
        time_source: Callable[[], float] = time.monotonic,
    ) -> None:
        if not replicas:
            raise ValueError("a balancer needs at least one replica")
        self.replicas = list(replicas)
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self._now = time_source
        self._turn = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self, avoid: Replica[C] | None = None) -> Replica[C]:
        """A replica with a free slot; waits while every healthy replica is full.

        ``avoid`` (the replica that just failed this request) is taken only when
        no other replica could serve.
        """
        loop = asyncio.get_running_loop()
        while True:
            pick = self._pick(avoid)
            if pick is not None:
                pick.in_flight += 1
                return pick
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                # A resting replica with free slots may recover before any slot frees.
                await asyncio.wait({waiter}, timeout=self._next_recovery())
            except asyncio.CancelledError:
                if waiter.done():
                    self._wake()  # we were woken for a slot we will not take: pass it on
                raise
            finally:
                if not waiter.done():
                    waiter.cancel()
                    self._waiters.remove(waiter)

    def release(self, replica: Replica[C], *, ok: bool | None, rest: float | None = None) -> None:
        """Give the slot back. ``ok=None``: cancelled, which says nothing about health.

        ``rest``: seconds the replica asked us to leave it alone (``Retry-After``),
        without counting as a failure.
        """
        now = self._now()
        replica.in_flight -= 1
        if ok:
            replica.served += 1
            replica.consecutive_failures = 0
            replica.rest_until = 0.0
        elif ok is False:
            replica.failed += 1
            replica.consecutive_failures += 1
            backoff = self.cooldown * 2 ** (replica.consecutive_failures - 1)
            replica.rest_until = max(replica.rest_until, now + min(self.max_cooldown, backoff))
        if rest is not None and rest > 0:
            replica.rest_until = max(replica.rest_until, now + rest)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _next_recovery(self) -> float | None:
        now = self._now()
        resting = [r.rest_until - now for r in self.replicas if not r.healthy(now)]
        return max(0.0, min(resting)) if resting else None

    def _pick(self, avoid: Replica[C] | None) -> Replica[C] | None:
        now = self._now()
        free = [r for r in self.replicas if r.in_flight < r.cap]
        healthy = [r for r in free if r.healthy(now)]
        if len(healthy) > 1 and avoid in healthy:
            healthy.remove(avoid)
        if healthy:
            return self._least_loaded(healthy)
        if any(r.healthy(now) for r in self.replicas):
            return None  # a healthy replica is only full: wait for its slot
        if len(free) > 1 and avoid in free:
            free.remove(avoid)
        if not free:
            return None
        # Every replica rests: probe the one that recovers first.
        return min(free, key=lambda r: r.rest_until)

    def _least_loaded(self, candidates: list[Replica[C]]) -> Replica[C]:
        least = min(r.in_flight for r in candidates)
        tied = [r for r in candidates if r.in_flight == least]
        # Rotate among ties so idle replicas share the first requests too.
        self._turn += 1
        return tied[self._turn % len(tied)]

    def stats(self) -> tuple[ReplicaStats, ...]:
        now = self._now()
        return tuple(r.stats(now) for r in self.replicas)
