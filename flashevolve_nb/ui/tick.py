"""What each dashboard view gets on a refresh, and how views run a person's action."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flashevolve_nb.engine.events import Event
from flashevolve_nb.runtime.snapshot import RunSnapshot
from flashevolve_nb.ui.html import esc

__all__ = ["Tick", "act"]


@dataclass(frozen=True, slots=True)
class Tick:
    """One refresh: the run as it is now and the events since the last refresh."""

    snap: RunSnapshot
    events: tuple[Event, ...]
    real: float
    """``time.monotonic()`` at this refresh."""
    visible: bool
    """Whether the view's tab is showing: hidden views only take note of events."""
    full: bool
    """Redraw everything (first refresh, a tab just shown)."""


def act(status: Any, fn: Callable[[], str]) -> bool:
    """Run a person's action; show its outcome (or its error) in ``status``, escaped.

    Called from widget callbacks only, which own ``status``: the refresher never
    writes it.
    """
    try:
        message = fn()
    except Exception as exc:
        status.value = f'<span style="color:#c0392b">{esc(type(exc).__name__)}: {esc(exc)}</span>'
        return False
    status.value = f'<span style="color:#2e7d32">{esc(message)}</span>'
    return True
