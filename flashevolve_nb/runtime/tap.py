"""The run's event tap: numbered events for readers on other threads.

It subscribes to the pipeline's bus (so it runs on the pipeline's loop, inside
``emit``) and does only cheap things there: append to a bounded log, track
which LLM requests are in flight, remember recent item failures. Readers on
any thread ask for "everything after number N" and get a consistent batch.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from itertools import islice

from flashevolve_nb.engine.events import Event, ItemFailed, LLMCallFinished, LLMCallStarted

__all__ = ["EventBatch", "EventTap", "RequestInFlight"]


@dataclass(frozen=True, slots=True)
class RequestInFlight:
    """One LLM request that has started and not yet finished."""

    call_id: int
    role: str
    stage: str
    step: int
    started: float
    """On the run clock."""


@dataclass(frozen=True, slots=True)
class EventBatch:
    events: tuple[Event, ...]
    next_seq: int
    """Ask for events after this number next time."""
    missed: int
    """Events that fell out of the bounded log before this reader asked."""


class EventTap:
    def __init__(self, maxlen: int = 50_000, keep_errors: int = 20) -> None:
        self._lock = threading.Lock()
        self._log: deque[Event] = deque(maxlen=maxlen)
        self._total = 0
        self._requests: dict[int, RequestInFlight] = {}
        self._errors: deque[str] = deque(maxlen=keep_errors)

    def __call__(self, e: Event) -> None:
        with self._lock:
            self._log.append(e)
            self._total += 1
        if isinstance(e, LLMCallStarted):
            self._requests[e.call_id] = RequestInFlight(e.call_id, e.role, e.stage, e.step, e.t)
        elif isinstance(e, LLMCallFinished):
            self._requests.pop(e.call_id, None)
        elif isinstance(e, ItemFailed):
            self.note_error(f"{e.stage}, step {e.step}: {e.error}")

    def note_error(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)

    @property
    def total(self) -> int:
        return self._total

    def since(self, seq: int) -> EventBatch:
        """Events numbered ``seq`` and later (the first event is number 0)."""
        with self._lock:
            total = self._total
            first = total - len(self._log)
            start = max(seq, first)
            # From the newest end: a reader that keeps up copies only what is new.
            events = tuple(reversed(tuple(islice(reversed(self._log), total - start))))
        return EventBatch(events, total, start - seq if seq < first else 0)

    def requests(self) -> tuple[RequestInFlight, ...]:
        """Call on the pipeline's loop (the dict changes there)."""
        return tuple(self._requests.values())

    def errors(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._errors)
