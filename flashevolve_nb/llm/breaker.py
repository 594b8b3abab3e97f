"""A circuit breaker around any backend: stop hammering a server that is down.

A backend's own retries handle a blip. When failures keep coming (a vLLM
server crashed, an API outage), every stage worker would go on sending
requests that fail, each one spending a step's budget on nothing. The
breaker counts consecutive failures of its backend; after ``failures`` of
them it *opens*: calls stop reaching the backend for ``cooldown`` seconds of
the run clock. Then it is *half open*: one call goes through as a probe.
If the probe succeeds the breaker *closes* and calls flow again; if it
fails, the breaker opens for another cool-down.

While it is open, calls wait (the default) so that the run pauses instead
of failing work it could do a minute later; with ``fail_fast=True`` they
raise :class:`CircuitOpen` at once instead. Either way the stop of a run or
its deadline cancels the waiting calls.

Every transition goes to the breaker's listener; :meth:`CircuitBreaker.attach`
makes a pipeline that listener, so transitions become events
(``BreakerOpened``, ``BreakerHalfOpen``, ``BreakerClosed``), the cool-down
runs on the run clock and the state shows in the pipeline's snapshot. (The
breaker itself knows nothing of the engine: backends sit below it.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from flashevolve_nb.clock import Clock
from flashevolve_nb.llm.protocol import LLM, Completion, LLMError, Message

__all__ = [
    "BreakerListener",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpen",
    "Transition",
]

BreakerState = Literal["closed", "open", "half_open"]
Transition = Literal["opened", "reopened", "half_open", "closed"]


class CircuitOpen(LLMError):
    """The backend failed repeatedly and its breaker is open (``fail_fast=True``)."""


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    name: str
    state: BreakerState
    consecutive_failures: int
    threshold: int
    cooldown: float
    opened: int
    """How many times it has opened (a failed probe counts too)."""
    last_error: str
    retry_at: float | None
    """When an open breaker lets a probe through (run clock), else None."""
    waiting: int
    """Calls held back right now."""
    last_downtime: float
    """How long the last outage lasted, from opening to the probe that closed it."""


BreakerListener = Callable[[Transition, BreakerSnapshot], None]


class _Watcher(Protocol):
    """What :meth:`CircuitBreaker.attach` needs (a ``Pipeline``)."""

    def watch_breaker(self, breaker: Any) -> None: ...


class CircuitBreaker:
    """Wraps an :class:`LLM`; is itself one, so workloads use it unchanged."""

    def __init__(
        self,
        llm: LLM,
        *,
        failures: int = 5,
        cooldown: float = 60.0,
        fail_fast: bool = False,
        name: str | None = None,
    ) -> None:
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise ValueError(
                f"CircuitBreaker failures must be an int >= 1 (got {failures!r}); it is how "
                "many consecutive failed calls open the breaker, e.g. failures=5"
            )
        if not cooldown > 0:
            raise ValueError(
                f"CircuitBreaker cooldown must be > 0 seconds (got {cooldown!r}); e.g. cooldown=60"
            )
        self.llm = llm
        self.threshold = failures
        self.cooldown = float(cooldown)
        self.fail_fast = fail_fast
        self.breaker_name = name or llm.name
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened = 0
        self._last_error = ""
        self._retry_at = 0.0
        self._opened_at = 0.0
        self._probing = False
        self._waiting = 0
        self._downtime = 0.0
        self._changed: asyncio.Event | None = None
        self._clock: Clock | None = None
        self._listener: BreakerListener | None = None

    # ---- the LLM protocol -----------------------------------------------------
    @property
    def name(self) -> str:
        return self.llm.name

    @property
    def simulated(self) -> bool:
        return self.llm.simulated

    async def chat(self, messages: Sequence[Message], **params: Any) -> Completion:
        probe = await self._admit()
        try:
            completion = await self.llm.chat(messages, **params)
        except asyncio.CancelledError:
            if probe:  # the probe was abandoned: let the next call probe instead
                self._probing = False
                self._notify()
            raise
        except Exception as exc:
            self._failed(f"{type(exc).__name__}: {exc}", probe)
            raise
        if completion.finish_reason == "error":
            self._failed("the backend answered with finish_reason 'error'", probe)
        else:
            self._succeeded(probe)
        return completion

    # ---- wiring -----------------------------------------------------------
    def bind(self, clock: Clock, listener: BreakerListener | None) -> None:
        """Time the cool-down on ``clock`` and tell ``listener`` of every transition."""
        self._clock = clock
        self._listener = listener

    def attach(self, pipeline: _Watcher) -> CircuitBreaker:
        """Report to a pipeline: events on its bus, its clock, state in its snapshot."""
        pipeline.watch_breaker(self)
        return self

    @property
    def state(self) -> BreakerState:
        return self._state

    def snapshot(self) -> BreakerSnapshot:
        return BreakerSnapshot(
            name=self.breaker_name,
            state=self._state,
            consecutive_failures=self._failures,
            threshold=self.threshold,
            cooldown=self.cooldown,
            opened=self._opened,
            last_error=self._last_error,
            retry_at=self._retry_at if self._state == "open" else None,
            waiting=self._waiting,
            last_downtime=self._downtime,
        )

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.breaker_name!r}, {self._state}, {self.llm!r})"

    # ---- the state machine ------------------------------------------------------
    def _now(self) -> float:
        if self._clock is None:
            self._clock = Clock()
        if not self._clock.started:
            self._clock.start()
        return self._clock.now()

    async def _admit(self) -> bool:
        """Wait until this call may go to the backend; True if it is the probe."""
        while True:
            if self._state == "closed":
                return False
            if self._state == "open":
                if self.fail_fast:
                    raise CircuitOpen(
                        f"{self.breaker_name}: circuit open after {self._failures} consecutive "
                        f"failures (last: {self._last_error}); retrying at "
                        f"t={self._retry_at:.1f}"
                    )
                delay = self._retry_at - self._now()
                if delay > 0:
                    await self._hold(self._sleep(delay))
                    continue
                self._state = "half_open"
                self._report("half_open")
            if not self._probing:
                self._probing = True
                return True
            await self._hold(self._signal().wait())

    async def _sleep(self, delay: float) -> None:
        assert self._clock is not None
        await self._clock.sleep(delay)

    async def _hold(self, waiting: Any) -> None:
        self._waiting += 1
        try:
            await waiting
        finally:
            self._waiting -= 1

    # While open or half open, only the probe's outcome counts: other calls were sent
    # before the breaker opened, and a late answer to one says little about the backend now.
    def _failed(self, error: str, probe: bool) -> None:
        self._last_error = error
        if probe:
            self._failures += 1
            self._probing = False
            self._open(reopened=True)
        elif self._state == "closed":
            self._failures += 1
            if self._failures >= self.threshold:
                self._opened_at = self._now()
                self._open(reopened=False)

    def _open(self, *, reopened: bool) -> None:
        self._state = "open"
        self._opened += 1
        self._retry_at = self._now() + self.cooldown
        self._report("reopened" if reopened else "opened")
        self._notify()

    def _succeeded(self, probe: bool) -> None:
        if self._state == "closed":
            self._failures = 0
        elif probe:
            self._failures = 0
            self._state = "closed"
            self._probing = False
            self._downtime = self._now() - self._opened_at
            self._report("closed")
            self._notify()

    def _signal(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _notify(self) -> None:
        # A fresh Event per change: every waiter wakes once and re-reads the state.
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _report(self, change: Transition) -> None:
        if self._listener is not None:
            self._listener(change, self.snapshot())
