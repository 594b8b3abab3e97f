"""Whether the real clock kept up with the simulated one, and by how much it fell behind.

On the real clock a simulated latency of ``s`` seconds is a real sleep of
``s / time_scale``. When the event loop is busy (a CPU-bound client, a slow
simulator server) that sleep wakes late, and every simulated latency stretches
by ``late * time_scale`` simulated seconds: at 100000x a millisecond of lateness
is 100 simulated seconds, and the run's figures describe the machine, not the
schedule. Nothing in the figures themselves shows it, so a :class:`LagMonitor`
measures it directly: a task that sleeps a fixed real interval, again and
again, and records how late it woke, plus the loop thread's CPU share.

The verdict (:attr:`LagReport.behind`): the mean wake-up lag, in simulated
seconds, above :data:`BEHIND_SIM_SECONDS`, a quarter of a short simulated
request (:data:`SHORT_REQUEST_SIM_SECONDS`), so that the short latencies a run
sees stretched by a quarter or more on average; or the loop thread on the CPU
:data:`LOOP_CPU_BOUND` of the time, where any more work makes it late. The mean,
not a tail: a request's completion is late by the lag of its one wake-up, so
throughput follows the mean, while the tail shows bursts (one long callback
delays every timer due meanwhile). Measured on the demo (30 simulated minutes,
seed 0, a 2-core machine, 4 Dec 2026): 30x, mean lag 0.03 simulated s, 10.5
proposals/min; 120x, 0.15-0.20 s, 10.1-10.5 (kept up: a few % lost); 240x,
0.9-1.1 s, 8.9-9.5 (behind: 10-15% lost); 600x, 7-12 s with the loop 94% busy,
5.5-7.2 (behind).

The virtual clock (``looptime``) never falls behind: its time stands still
while the CPU works. A monitor started on it measures nothing and reports
``virtual``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from flashevolve_nb.engine.events import Event

__all__ = [
    "BEHIND_SIM_SECONDS",
    "FAR_BEHIND_SIM_SECONDS",
    "LOOP_CPU_BOUND",
    "MIN_WAKES",
    "SHORT_REQUEST_SIM_SECONDS",
    "ClockBehind",
    "LagMonitor",
    "LagReport",
    "lag_p95",
]

SHORT_REQUEST_SIM_SECONDS = 2.0
"""A short simulated request: about 100 output tokens, on the vllm profile (100 decode
steps of 12-27 ms) as on the api one (0.5 s to the first token, 80 tokens/s)."""
BEHIND_SIM_SECONDS = 0.25 * SHORT_REQUEST_SIM_SECONDS
"""Mean wake-up lag, in simulated seconds, past which a run's figures are degraded."""
FAR_BEHIND_SIM_SECONDS = SHORT_REQUEST_SIM_SECONDS
"""Past this (mean over at least :data:`MIN_WAKES` wake-ups) a run says so while it runs."""
LOOP_CPU_BOUND = 0.85
"""The loop thread on the CPU this share of real time has no slack left (the bench's
``CPU_BOUND`` for whole processes)."""
MIN_WAKES = 20
"""Wake-ups before a mid-run verdict or a CPU share means anything (a second at 20 a second)."""

_EDGES: tuple[float, ...] = tuple(1e-5 * 10 ** (i / 8) for i in range(57))
"""Upper edges of the lag histogram's bins, real seconds: 10 us to 100 s, 8 per decade
(bin 0 is everything up to 10 us, the last one everything past 100 s)."""


def lag_p95(counts: Sequence[int]) -> float:
    """The 95th percentile of a lag histogram (the upper edge of its bin), real seconds."""
    total = sum(counts)
    if total == 0:
        return 0.0
    need = math.ceil(0.95 * total)
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= need:
            return _EDGES[i] if i < len(_EDGES) else math.inf
    return math.inf


@dataclass(frozen=True, slots=True)
class LagReport:
    """How far the real clock fell behind the simulated one during (part of) a run."""

    time_scale: float
    wakes: int
    """Wake-ups measured."""
    real_lag_mean: float
    """Mean wake-up lag, real seconds."""
    real_lag_p95: float
    """95th percentile of the wake-up lag, real seconds."""
    real_lag_max: float
    loop_cpu: float
    """The loop thread's CPU seconds per real second (NaN when not measured)."""
    wall_seconds: float
    virtual: bool = False

    @property
    def sim_lag_p95(self) -> float:
        """The p95 wake-up lag in simulated seconds: how much a simulated latency stretched."""
        return self.real_lag_p95 * self.time_scale

    @property
    def sim_lag_max(self) -> float:
        return self.real_lag_max * self.time_scale

    @property
    def sim_lag_mean(self) -> float:
        """The mean wake-up lag in simulated seconds: what the verdict is on."""
        return self.real_lag_mean * self.time_scale

    @property
    def behind(self) -> bool:
        """The figures of this run are degraded: the machine, not the model, set its pace."""
        if self.virtual:
            return False
        cpu_bound = not math.isnan(self.loop_cpu) and self.loop_cpu >= LOOP_CPU_BOUND
        return self.sim_lag_mean > BEHIND_SIM_SECONDS or cpu_bound

    @property
    def far_behind(self) -> bool:
        return (
            not self.virtual
            and self.wakes >= MIN_WAKES
            and (self.sim_lag_mean > FAR_BEHIND_SIM_SECONDS)
        )

    def describe(self) -> str:
        """One line of figures: lag in real and simulated seconds, the loop's CPU share."""
        if self.virtual:
            return "virtual clock: no lag"
        cpu = "" if math.isnan(self.loop_cpu) else f"; event loop busy {self.loop_cpu:.0%}"
        return (
            f"wake-ups late by {_real(self.real_lag_mean)} on average, "
            f"{_real(self.real_lag_p95)} at p95: {_sim(self.sim_lag_mean)} on average at "
            f"{self.time_scale:g}x{cpu}"
        )

    def warning(self, fix: str = "Lower --time-scale, or use --clock virtual.") -> str:
        """What a person must read when :attr:`behind`: what happened, and what to do
        (``fix``: the CLI's words by default)."""
        return (
            f"WARNING: the real clock fell behind the simulated one ({self.describe()}; "
            f"the limit is {BEHIND_SIM_SECONDS:g} simulated s on average, or the loop "
            f"{LOOP_CPU_BOUND:.0%} busy). Simulated latencies stretched, so the figures are "
            f"degraded: they measure this machine at {self.time_scale:g}x, not the schedule. "
            f"{fix}"
        )


def _real(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def _sim(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} simulated s"
    return f"{seconds / 60:.3g} simulated min"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockBehind(Event):
    """The run's real clock fell behind its simulated one; its figures are degraded.

    Emitted once while the run goes on, when it is already far behind, and at its
    end when it was behind at all (``final``). The last one is the run's verdict.
    """

    kind: ClassVar[str] = "clock_behind"
    time_scale: float
    wakes: int
    real_lag_mean: float
    real_lag_p95: float
    real_lag_max: float
    loop_cpu: float
    wall_seconds: float
    final: bool

    @classmethod
    def of(cls, report: LagReport, *, t: float, final: bool) -> ClockBehind:
        return cls(
            t=t,
            time_scale=report.time_scale,
            wakes=report.wakes,
            real_lag_mean=report.real_lag_mean,
            real_lag_p95=report.real_lag_p95,
            real_lag_max=report.real_lag_max,
            loop_cpu=report.loop_cpu,
            wall_seconds=report.wall_seconds,
            final=final,
        )

    @property
    def report(self) -> LagReport:
        return LagReport(
            self.time_scale,
            self.wakes,
            self.real_lag_mean,
            self.real_lag_p95,
            self.real_lag_max,
            self.loop_cpu,
            self.wall_seconds,
        )


class LagMonitor:
    """Measures the wake-up lag of the running loop, from :meth:`start` to :meth:`stop`.

    The interval is 60 simulated seconds, within 1 to 50 real ms: at ordinary scales
    twenty wake-ups a real second (negligible work), at absurd ones still a few
    wake-ups in a run of a few real milliseconds.
    """

    def __init__(
        self,
        time_scale: float,
        *,
        interval: float | None = None,
        on_far_behind: Callable[[LagReport], None] | None = None,
    ) -> None:
        self.time_scale = float(time_scale)
        self.interval = (
            interval if interval is not None else min(0.05, max(0.001, 60.0 / time_scale))
        )
        self._on_far_behind = on_far_behind
        self._counts = [0] * (len(_EDGES) + 1)
        self._max = 0.0
        self._sum = 0.0
        self._wall0: float | None = None
        self._cpu0 = 0.0
        self._cpu = 0.0
        self._wall = 0.0
        self._asked: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._virtual = False
        self._stopped = False
        self._warned = False

    def start(self) -> None:
        """Watch the running loop: on the real clock, at a time scale above 1.

        Nothing to watch on a virtual clock, nor at 1x, the scale of a real backend:
        there the run clock is the wall clock, and no simulated latency can stretch.
        """
        loop = asyncio.get_running_loop()
        if getattr(loop, "looptime_on", False):
            self._virtual = True
            return
        if self.time_scale <= 1.0:
            return
        self._wall0 = time.perf_counter()
        self._cpu0 = time.thread_time()
        self._task = loop.create_task(self._watch(), name="flashevolve-clock-lag")

    def record(self, late: float) -> None:
        """One wake-up ``late`` real seconds after it was due (tests feed synthetic ones)."""
        late = max(0.0, late)
        self._counts[bisect.bisect_left(_EDGES, late)] += 1
        self._max = max(self._max, late)
        self._sum += late

    async def _watch(self) -> None:
        while True:
            self._asked = time.perf_counter()
            try:
                await asyncio.sleep(self.interval)
            except asyncio.CancelledError:
                self._asked = None  # cancelled, not late: stop() counted what was overdue
                raise
            now = time.perf_counter()
            self.record(now - self._asked - self.interval)
            self._asked = None
            # Read on the loop's own thread: its CPU is what can starve the loop.
            self._cpu, self._wall = time.thread_time(), now
            if not self._warned and self._on_far_behind is not None:
                report = self.report()
                if report.far_behind:
                    self._warned = True
                    self._on_far_behind(report)

    def stop(self) -> LagReport:
        """Stop watching (call on the loop's thread) and return the verdict.

        A wake-up overdue right now counts too: a run at an absurd scale may end
        before its first wake-up came, and that lateness is the finding.
        """
        if self._task is not None and not self._stopped:
            self._stopped = True
            now = time.perf_counter()
            if self._asked is not None and now - self._asked > self.interval:
                self.record(now - self._asked - self.interval)
            self._cpu, self._wall = time.thread_time(), now
            self._task.cancel()
        return self.report()

    def report(self) -> LagReport:
        if self._virtual:
            return LagReport(self.time_scale, 0, 0.0, 0.0, 0.0, math.nan, 0.0, virtual=True)
        wall = self._wall - self._wall0 if self._wall0 is not None and self._wall else 0.0
        # Below a few wake-ups the CPU share is noise (a run's start-up alone).
        cpu = (self._cpu - self._cpu0) / wall if wall > 0 and self.wakes >= MIN_WAKES else math.nan
        # The histogram's p95 is its bin's upper edge: never above the largest lag seen.
        p95 = min(lag_p95(self._counts), self._max)
        wakes = self.wakes
        mean = self._sum / wakes if wakes else 0.0
        return LagReport(self.time_scale, wakes, mean, p95, self._max, cpu, wall)

    @property
    def wakes(self) -> int:
        return sum(self._counts)

    def totals(self) -> dict[str, Any]:
        """Cumulative counts, for a window between two readings (a server's ``/sim/stats``):
        the histogram, the largest lag, and the loop thread's CPU and wall seconds."""
        return {
            "lag_counts": list(self._counts),
            "lag_max": self._max,
            "lag_sum": self._sum,
            "lag_interval": self.interval,
        }

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The watching task (None before :meth:`start` and on a virtual clock)."""
        return self._task

    async def aclose(self) -> LagReport:
        """:meth:`stop`, then wait until the watching task has ended."""
        report = self.stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return report
