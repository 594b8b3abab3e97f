"""The hosted-API timing model: per-request latency, a concurrency cap, rate limits.

A hosted API does not slow down with *our* load (its fleet is large); what
limits us is the account: a cap on concurrent requests (extra ones wait FIFO
here, as a client-side pool would) and optional requests/tokens-per-minute
limits, answered with ``RateLimited`` (HTTP 429) rather than by queueing, as
real APIs do. Latency = time to first token (lognormal, heavy tail) + output
tokens / a jittered per-stream speed.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque

from flashevolve_nb.clock import Clock
from flashevolve_nb.sim.errors import RateLimited
from flashevolve_nb.sim.profiles import ApiProfile
from flashevolve_nb.sim.server import SimulatedServer

__all__ = ["HostedServer"]

_WINDOW = 60.0


class HostedServer(SimulatedServer):
    """A hosted API account (``ApiProfile``)."""

    profile_name = "api"

    def __init__(self, profile: ApiProfile, clock: Clock, seed: int = 0) -> None:
        super().__init__(clock, profile.capacity_tokens_per_s)
        self.profile = profile
        self._rng = random.Random(seed)
        self._active = 0
        self._queue: deque[asyncio.Future[None]] = deque()
        self._recent: deque[tuple[float, int]] = deque()

    @property
    def running(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._queue if not f.done())

    def service_time(self, output_tokens: int, rng: random.Random) -> float:
        """Time to first token plus decode time of one request, without queueing."""
        p = self.profile
        ttft = rng.lognormvariate(math.log(p.ttft_median), p.ttft_sigma)
        speed = p.tokens_per_s * rng.lognormvariate(0.0, p.speed_jitter)
        return ttft + output_tokens / speed

    async def generate(
        self, prompt_tokens: int, output_tokens: int, *, rng: random.Random | None = None
    ) -> float:
        if prompt_tokens < 0 or output_tokens < 0:
            raise ValueError("token counts must be >= 0")
        arrival = self._now()
        self._check_limits(arrival, prompt_tokens + output_tokens)
        service = self.service_time(output_tokens, rng or self._rng)
        await self._acquire()
        try:
            await self.clock.sleep(service)
        except asyncio.CancelledError:
            self._release()
            self._cancelled += 1
            raise
        self._release()
        self._served += 1
        self._tokens += output_tokens
        return self._now() - arrival

    def _check_limits(self, now: float, tokens: int) -> None:
        p = self.profile
        if p.rpm_limit is None and p.tpm_limit is None:
            return
        while self._recent and self._recent[0][0] <= now - _WINDOW:
            self._recent.popleft()
        retry_after = (self._recent[0][0] + _WINDOW - now) if self._recent else _WINDOW
        if p.rpm_limit is not None and len(self._recent) >= p.rpm_limit:
            self._rejected += 1
            raise RateLimited(retry_after, f"limit {p.rpm_limit} requests per minute")
        used = sum(t for _, t in self._recent)
        if p.tpm_limit is not None and used + tokens > p.tpm_limit:
            self._rejected += 1
            raise RateLimited(retry_after, f"limit {p.tpm_limit} tokens per minute")
        self._recent.append((now, tokens))

    async def _acquire(self) -> None:
        if self._active < self.profile.max_concurrency and not self.waiting:
            self._account(self._now())
            self._active += 1
            return
        self._account(self._now())
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(slot)
        try:
            await slot
        except asyncio.CancelledError:
            self._account(self._now())
            if slot.done() and not slot.cancelled():
                self._release()  # the slot was handed over just as we were cancelled
            else:
                self._queue.remove(slot)
            self._cancelled += 1
            raise

    def _release(self) -> None:
        """Hand the slot to the next waiter (the active count stays), or free it."""
        self._account(self._now())
        while self._queue:
            slot = self._queue.popleft()
            if not slot.done():
                slot.set_result(None)
                return
        self._active -= 1
