"""The vLLM timing model: continuous batching as processor sharing.

A real server runs decode steps; each step gives one token to every running
sequence and takes ``t0 + t1 * running`` seconds. Simulating step by step
would cost one timer per token, so this is the fluid version of the same
model: all running sequences progress at ``1 / step_time(n)`` tokens per
simulated second. On every arrival, completion or cancellation the server
advances everyone's remaining work to now, admits waiting requests (FIFO, up
to ``max_running``) and sets ONE loop timer for the earliest completion. The
number of timers is therefore the number of events, not of tokens, and the
model runs the same on a real loop and on a virtual one (``looptime``).

Prefill is extra work of the joining request, in decode-step equivalents: a
long prompt delays its own first token, not the whole batch.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import dataclass, field

from flashevolve_nb.clock import Clock
from flashevolve_nb.sim.profiles import VllmProfile
from flashevolve_nb.sim.server import SimulatedServer

__all__ = ["BatchingServer"]

_DONE = 1e-3
"""Remaining work (in tokens) counted as finished: absorbs clock rounding."""


@dataclass(eq=False, slots=True)
class _Sequence:
    work: float
    """Remaining step-equivalents: prefill first, then one per output token."""
    output_tokens: int
    arrival: float
    future: asyncio.Future[float] = field(repr=False)

    @property
    def decoded(self) -> float:
        return self.output_tokens - min(float(self.output_tokens), max(self.work, 0.0))


class BatchingServer(SimulatedServer):
    """One GPU server with continuous batching (``VllmProfile``)."""

    profile_name = "vllm"

    def __init__(self, profile: VllmProfile, clock: Clock) -> None:
        super().__init__(clock, profile.capacity_tokens_per_s)
        self.profile = profile
        self._running: list[_Sequence] = []
        self._waiting: deque[_Sequence] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._advanced_until = 0.0

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def timer_pending(self) -> bool:
        """Whether a completion timer is set (False whenever the server is idle)."""
        return self._timer is not None

    async def generate(
        self, prompt_tokens: int, output_tokens: int, *, rng: random.Random | None = None
    ) -> float:
        if prompt_tokens < 0 or output_tokens < 0:
            raise ValueError("token counts must be >= 0")
        now = self._advance()
        seq = _Sequence(
            work=output_tokens + self.profile.prefill_per_token * prompt_tokens,
            output_tokens=output_tokens,
            arrival=now,
            future=asyncio.get_running_loop().create_future(),
        )
        self._waiting.append(seq)
        self._admit()
        self._reschedule(now)
        try:
            return await seq.future
        except asyncio.CancelledError:
            self._drop(seq)
            raise

    def _sync(self) -> None:
        if self.clock.started:
            self._advance()

    def _advance(self) -> float:
        """Move every running sequence's work forward to now."""
        now = self._now()
        dt = now - self._advanced_until
        if dt > 0:
            self._account(now)
            if self._running:
                progress = dt / self.profile.step_time(len(self._running))
                for seq in self._running:
                    before = seq.decoded
                    seq.work -= progress
                    self._tokens += seq.decoded - before
            self._advanced_until = now
        return now

    def _admit(self) -> None:
        while self._waiting and len(self._running) < self.profile.max_running:
            self._running.append(self._waiting.popleft())

    def _reschedule(self, now: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._running:
            return
        earliest = max(0.0, min(seq.work for seq in self._running))
        at = now + earliest * self.profile.step_time(len(self._running))
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(self.clock.loop_time_at(at), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self._advance()
        finished = [seq for seq in self._running if seq.work <= _DONE]
        for seq in finished:
            self._running.remove(seq)
            self._tokens += seq.output_tokens - seq.decoded
            self._served += 1
            if not seq.future.done():
                seq.future.set_result(now - seq.arrival)
        self._admit()
        self._reschedule(now)

    def _drop(self, seq: _Sequence) -> None:
        """A cancelled request leaves the batch (or the line) at once."""
        now = self._advance()
        if seq in self._running:
            self._running.remove(seq)
        elif seq in self._waiting:
            self._waiting.remove(seq)
        else:
            return
        self._cancelled += 1
        self._admit()
        self._reschedule(now)
