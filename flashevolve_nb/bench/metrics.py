"""The benchmark's figures: one system's run (client counts + server window) -> named numbers.

Rates are per simulated minute of the run. In-flight requests, running
sequences, utilisation and tokens come from the server (the same source for
every system); proposals, accepted candidates and sweeps from each system's
own events. Across seeds: the median and the spread (min, max); ratios to
``gepa`` are taken seed by seed (same seed, same server) before the median.

The limit: with the server's capacity (tokens/s at its cap) and a system's
measured tokens per proposal, ``capacity * 60 / tokens_per_proposal`` is the
most proposals per minute any scheduler could get; ``of_limit`` is the
achieved fraction of it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from flashevolve_nb.bench.figures import RunFigures
from flashevolve_nb.bench.sampling import ServerWindow

__all__ = ["CPU_BOUND", "FIGURES", "Figure", "Spread", "figures", "ratio", "spread"]


@dataclass(frozen=True, slots=True)
class Figure:
    key: str
    label: str
    fmt: str
    ratio: bool
    """Whether a ratio to gepa's value means something for it."""


FIGURES: tuple[Figure, ...] = (
    Figure("proposals_per_min", "proposals/min", ".1f", True),
    Figure("accepted_per_min", "accepted/min", ".2f", True),
    Figure("sweeps_per_min", "val sweeps/min", ".2f", True),
    Figure("metric_calls_per_min", "metric calls/min", ".0f", True),
    Figure("mean_in_flight", "mean in-flight", ".1f", True),
    Figure("peak_in_flight", "peak in-flight", ".0f", True),
    Figure("running_util", "running/cap", ".0%", True),
    Figure("token_util", "tokens/s / capacity", ".0%", True),
    Figure("tokens_per_proposal", "tokens/proposal", ".0f", True),
    Figure("tokens_per_accepted", "tokens/accepted", ".0f", True),
    Figure("wasted_tokens", "wasted tokens", ".0f", True),
    Figure("wasted_share", "wasted share", ".0%", False),
    Figure("limit_proposals_per_min", "limit proposals/min", ".1f", False),
    Figure("of_limit", "achieved/limit", ".1%", True),
    Figure("best_val", "best val", ".3f", True),
    Figure("best_test", "held-out test", ".3f", True),
    Figure("sim_minutes", "sim minutes", ".1f", False),
    Figure("metric_calls", "metric calls", ".0f", False),
    Figure("proposals", "proposals", ".0f", False),
    Figure("wall_seconds", "wall s", ".1f", False),
    Figure("client_cpu", "client CPU", ".0%", False),
    Figure("server_cpu", "server CPU", ".0%", False),
)
CPU_BOUND = 0.85
"""A process busy this share of real time was the bottleneck, not the simulated model:
its run measures the machine at that time scale, and the report flags it."""


def _div(a: float, b: float) -> float:
    return a / b if b else math.nan


def figures(
    run: RunFigures, win: ServerWindow, *, client_cpu: float = math.nan
) -> dict[str, float]:
    """Every figure of one run, by :data:`FIGURES` key (NaN where undefined).

    ``client_cpu``: the client process's CPU seconds per real second during the run.
    """
    minutes = run.sim_seconds / 60.0
    tokens = win.tokens_generated
    # Decoding the server did that no client answer reports: requests cancelled
    # mid-way (speculative completion) are work thrown away too.
    cancelled = max(0, tokens - run.completion_tokens)
    wasted = run.wasted_tokens + cancelled
    per_proposal = _div(tokens, run.proposals)
    limit = _div(win.capacity_tokens_per_s * 60.0, per_proposal)
    proposals_per_min = _div(run.proposals, minutes)
    return {
        "proposals_per_min": proposals_per_min,
        "accepted_per_min": _div(run.accepted, minutes),
        "sweeps_per_min": _div(run.val_sweeps, minutes),
        "metric_calls_per_min": _div(run.metric_calls, minutes),
        "mean_in_flight": win.mean_in_flight,
        "peak_in_flight": float(win.peak_in_flight),
        "running_util": win.running_utilisation,
        "token_util": win.token_utilisation,
        "tokens_per_proposal": per_proposal,
        "tokens_per_accepted": _div(tokens, run.accepted),
        "wasted_tokens": float(wasted),
        "wasted_share": _div(wasted, tokens),
        "limit_proposals_per_min": limit,
        "of_limit": _div(proposals_per_min, limit),
        "best_val": run.best_val,
        "best_test": run.best_test if run.best_test is not None else math.nan,
        "sim_minutes": minutes,
        "metric_calls": float(run.metric_calls),
        "proposals": float(run.proposals),
        "wall_seconds": run.wall_seconds,
        "client_cpu": client_cpu,
        "server_cpu": win.server_cpu,
    }


def ratio(value: float, base: float) -> float:
    """``value / base``; NaN when either is undefined or the base is 0."""
    if math.isnan(value) or math.isnan(base) or base == 0:
        return math.nan
    return value / base


@dataclass(frozen=True, slots=True)
class Spread:
    """Median and range over seeds (NaNs left out; all NaN gives NaN)."""

    median: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high, "n": self.n}


def spread(values: Sequence[float]) -> Spread:
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return Spread(math.nan, math.nan, math.nan, 0)
    return Spread(statistics.median(clean), min(clean), max(clean), len(clean))


def paired_ratios(
    ours: Mapping[int, Mapping[str, float]], gepa: Mapping[int, Mapping[str, float]], key: str
) -> Spread:
    """Seed-by-seed ratio of one figure to gepa's, summarised over the seeds both ran."""
    return spread([ratio(ours[s][key], gepa[s][key]) for s in sorted(ours) if s in gepa])
