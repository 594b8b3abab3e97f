"""The event bus and the recorder that turns events into a DataFrame.

Dispatch is synchronous on the pipeline's loop: a subscriber runs inside the
``emit`` call, so it must be cheap (the dashboard samples and throttles
itself). A subscriber that raises is unsubscribed and reported once instead of
killing the run: observers must never be able to break an evolution.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from flashevolve_nb.engine.events import Event

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EventBus", "Recorder", "SubscriberWarning", "events_frame"]

Subscriber = Callable[[Event], None]


class SubscriberWarning(RuntimeWarning):
    """An event subscriber raised and was removed."""


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Call ``fn(event)`` for every event; returns a function that unsubscribes."""
        self._subscribers.append(fn)

        def unsubscribe() -> None:
            if fn in self._subscribers:
                self._subscribers.remove(fn)

        return unsubscribe

    def emit(self, event: Event) -> None:
        for fn in tuple(self._subscribers):
            try:
                fn(event)
            except Exception as exc:  # an observer must not break the run
                self._subscribers.remove(fn)
                warnings.warn(
                    f"event subscriber {fn!r} raised {exc!r} on {event.kind}; it was removed",
                    SubscriberWarning,
                    stacklevel=2,
                )


def events_frame(events: Iterable[Event]) -> pd.DataFrame:
    """One row per event: ``seq``, ``t``, ``kind`` and the event's own fields."""
    import pandas as pd

    rows = []
    for seq, e in enumerate(events):
        row = e.to_row()
        row["seq"] = seq
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["seq", "t", "kind"])
    frame = pd.DataFrame.from_records(rows)
    front = ["seq", "t", "kind"]
    return frame[front + [c for c in frame.columns if c not in front]]


class Recorder:
    """Keeps events (the most recent ``maxlen`` if given) for ``frame()``."""

    def __init__(self, maxlen: int | None = None) -> None:
        self.events: deque[Event] = deque(maxlen=maxlen)

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def __len__(self) -> int:
        return len(self.events)

    def frame(self) -> pd.DataFrame:
        return events_frame(list(self.events))
