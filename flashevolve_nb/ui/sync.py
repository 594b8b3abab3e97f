"""How the dashboard writes to widgets: only what changed, in one message per widget.

Every trait assignment is a comm message to the browser, and ipywidgets has
no locks; so one refresher thread does all the writing that follows the run,
each widget gets its changes in one ``hold_sync()`` message, and unchanged
values are never sent.

Widgets that show state can also be changed by a person (a worker count, a
knob). Their observers must tell the two apart, or a refresh that shows the
controller moving a worker would be taken for a person asking for it:
:class:`EchoGuard` marks the refresher's own writes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["EchoGuard", "assign"]


def assign(widget: Any, **traits: Any) -> bool:
    """Set the traits of ``widget`` that differ; one message at most. True if any did."""
    changed = {k: v for k, v in traits.items() if getattr(widget, k) != v}
    if not changed:
        return False
    if "options" in changed and "value" in traits:
        # New options reset a selection widget's value: set it again, after them.
        changed.pop("value", None)
        changed["value"] = traits["value"]
    with widget.hold_sync():
        for k, v in changed.items():
            setattr(widget, k, v)
    return True


class EchoGuard:
    """Whether the current thread is the refresher writing state into widgets."""

    def __init__(self) -> None:
        self._local = threading.local()

    @contextmanager
    def writing(self) -> Iterator[None]:
        self._local.on = True
        try:
            yield
        finally:
            self._local.on = False

    @property
    def active(self) -> bool:
        return bool(getattr(self._local, "on", False))
