"""Runs in the background of a notebook: ``start()`` and the ``Run`` handle.

A run's pipeline lives on an event loop of its own thread, so a cell that
blocks never stalls it; every ``Run`` method is thread-safe and marshals onto
that loop. No Jupyter module is imported here: the dashboard is
``flashevolve_nb.ui``, reached through ``run.dashboard()``.
"""

from __future__ import annotations

from flashevolve_nb.runtime.launch import start
from flashevolve_nb.runtime.loop import LoopUnresponsive
from flashevolve_nb.runtime.run import Run, RunEnded
from flashevolve_nb.runtime.snapshot import QueuedItem, RunSnapshot
from flashevolve_nb.runtime.tap import EventBatch, RequestInFlight

__all__ = [
    "EventBatch",
    "LoopUnresponsive",
    "QueuedItem",
    "RequestInFlight",
    "Run",
    "RunEnded",
    "RunSnapshot",
    "start",
]
