"""The run clock: simulated seconds derived from the event loop's time.

Everything that reports time in a run reads one ``Clock``. With a real backend
``time_scale`` is 1 and simulated seconds are wall seconds. With the simulator,
``time_scale`` simulated seconds pass per real second, so a 30-minute simulated
run takes well under a minute.

Why the loop's time and not ``time.monotonic()``: tests run the pipeline on a
virtual loop clock (``looptime``) that jumps forward whenever every task is
blocked; reading ``loop.time()`` makes the simulator, the budgets and the
events all follow that clock for free.
"""

from __future__ import annotations

import asyncio

__all__ = ["Clock", "virtual_event_loop"]


def virtual_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop on a virtual clock that jumps ahead whenever every task waits.

    A simulated run on it is deterministic under its seed and takes only the CPU
    it needs. It needs ``looptime`` (the ``virtual`` extra), imported only here.
    """
    try:
        import looptime
    except ImportError:
        raise ImportError(
            "the virtual clock needs the 'looptime' package, which is not installed: "
            "pip install 'flashevolve_nb[virtual]' (or: pip install looptime)"
        ) from None
    loop: asyncio.AbstractEventLoop = looptime.new_event_loop(start=0.0)
    return loop


class Clock:
    """Simulated seconds since :meth:`start`, ``time_scale`` per real second."""

    def __init__(self, time_scale: float = 1.0) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0 (got {time_scale!r})")
        self.time_scale = float(time_scale)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._origin = 0.0

    @property
    def started(self) -> bool:
        return self._loop is not None

    def start(self, at: float = 0.0) -> None:
        """Bind to the running loop; the clock reads ``at`` now (0, or where a resumed run was)."""
        self._loop = asyncio.get_running_loop()
        self._origin = self._loop.time() - at / self.time_scale

    def now(self) -> float:
        """Simulated seconds since start (0.0 before start)."""
        if self._loop is None:
            return 0.0
        return (self._loop.time() - self._origin) * self.time_scale

    def to_real(self, sim_seconds: float) -> float:
        """How many loop seconds ``sim_seconds`` of simulated time take."""
        return max(0.0, sim_seconds) / self.time_scale

    def loop_time_at(self, sim_time: float) -> float:
        """The loop time at which the clock will read ``sim_time``."""
        return self._origin + sim_time / self.time_scale

    async def sleep(self, sim_seconds: float) -> None:
        await asyncio.sleep(self.to_real(sim_seconds))

    def __repr__(self) -> str:
        return f"Clock(time_scale={self.time_scale:g}, now={self.now():.3f})"
