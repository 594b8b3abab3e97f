"""What every simulated server shares: the clock, load accounting, a stats snapshot.

A simulated server answers one question: how long, in simulated seconds, does
a request with this many prompt and output tokens take *given everything else
the server is doing right now*? Subclasses model that per profile
(``BatchingServer`` for vLLM, ``HostedServer`` for an API). This base keeps the
time-weighted load integrals, so a benchmark or the dashboard can read a
small immutable ``ServerStats`` at any moment instead of poking at internals.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass

from flashevolve_nb.clock import Clock

__all__ = ["ServerStats", "SimulatedServer"]


@dataclass(frozen=True, slots=True)
class ServerStats:
    """A snapshot of one simulated server; times are simulated seconds since clock zero."""

    profile: str
    now: float
    requests_served: int
    requests_cancelled: int
    requests_rejected: int
    running: int
    waiting: int
    tokens_generated: int
    mean_running: float
    """Time-weighted mean of sequences being served since clock zero."""
    mean_in_flight: float
    """Time-weighted mean of requests at the server (running + waiting)."""
    tokens_per_s: float
    """Generated tokens per simulated second since clock zero."""
    capacity_tokens_per_s: float

    @property
    def in_flight(self) -> int:
        return self.running + self.waiting

    @property
    def utilisation(self) -> float:
        """Generated throughput as a fraction of the profile's capacity."""
        return self.tokens_per_s / self.capacity_tokens_per_s if self.capacity_tokens_per_s else 0.0


class SimulatedServer(ABC):
    """A server model on the run clock, with live load statistics."""

    profile_name: str = "?"

    def __init__(self, clock: Clock, capacity_tokens_per_s: float) -> None:
        self.clock = clock
        self._capacity = capacity_tokens_per_s
        self._served = 0
        self._cancelled = 0
        self._rejected = 0
        self._tokens = 0.0
        self._accounted_until = 0.0
        self._running_area = 0.0
        self._in_flight_area = 0.0

    @property
    @abstractmethod
    def running(self) -> int:
        """Requests being served right now."""

    @property
    @abstractmethod
    def waiting(self) -> int:
        """Requests queued behind the concurrency cap right now."""

    @abstractmethod
    async def generate(
        self, prompt_tokens: int, output_tokens: int, *, rng: random.Random | None = None
    ) -> float:
        """Serve one request; return its latency in simulated seconds (queueing included).

        ``rng`` draws any per-request jitter, so latencies need not depend on the
        order in which requests arrive.
        """

    @property
    def tokens_generated(self) -> int:
        self._sync()
        return round(self._tokens)

    @property
    def busy_time_integral(self) -> float:
        """Integral of running sequences over simulated time (sequence-seconds)."""
        self._sync()
        return self._running_area

    def stats(self) -> ServerStats:
        self._sync()
        now = self._accounted_until
        elapsed = now if now > 0 else 0.0
        return ServerStats(
            profile=self.profile_name,
            now=now,
            requests_served=self._served,
            requests_cancelled=self._cancelled,
            requests_rejected=self._rejected,
            running=self.running,
            waiting=self.waiting,
            tokens_generated=round(self._tokens),
            mean_running=self._running_area / elapsed if elapsed else 0.0,
            mean_in_flight=self._in_flight_area / elapsed if elapsed else 0.0,
            tokens_per_s=self._tokens / elapsed if elapsed else 0.0,
            capacity_tokens_per_s=self._capacity,
        )

    def _now(self) -> float:
        """Simulated now; binds the clock to the running loop on first use."""
        if not self.clock.started:
            self.clock.start()
        return self.clock.now()

    def _sync(self) -> None:
        """Bring the load integrals (and subclass progress) up to now."""
        if self.clock.started:
            self._account(self.clock.now())

    def _account(self, now: float) -> None:
        """Integrate load up to ``now``; call before running/waiting change."""
        dt = now - self._accounted_until
        if dt > 0:
            self._running_area += self.running * dt
            self._in_flight_area += (self.running + self.waiting) * dt
            self._accounted_until = now
