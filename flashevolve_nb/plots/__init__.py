"""Figures people would rather look at than read, built from a run's events.

Every builder takes a run's events (a ``RunResult``, a ``Run`` or an events
DataFrame), or a mapping ``{label: run}`` to compare runs in one figure, and
returns a plotly ``Figure``. Hover text and titles carry ids and numbers,
never artifact text (LLM output), and every string that does go in is
HTML-escaped. Runs on the simulator say "simulated" in the title.
"""

from __future__ import annotations

from flashevolve_nb.plots._source import RunLike, Runs
from flashevolve_nb.plots.score import best_score_frame, score_over_time
from flashevolve_nb.plots.throughput import rates, throughput
from flashevolve_nb.plots.timeline import mean_busy, occupancy_frame, stage_timeline

__all__ = [
    "RunLike",
    "Runs",
    "best_score_frame",
    "mean_busy",
    "occupancy_frame",
    "rates",
    "score_over_time",
    "stage_timeline",
    "throughput",
]
