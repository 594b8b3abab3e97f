"""The benchmark's figures: one system's run (client counts + server window) -> named numbers.

Rates are per simulated minute of the run. In-flight requests, running
sequences, utilisation and tokens come from the server (the same source for
every system); proposals, accepted candidates and sweeps from each system's
own events. Across seeds: the median and the spread (min, max); ratios to
``gepa`` are taken seed by seed (same seed, same server) before the median.

Whether a run's figures are degraded (:func:`degraded`): its client or server
process was CPU-bound, or the real clock fell behind the simulated one (a late
wake-up of the client's loop or of the simulator server's stretches every
simulated latency; ``flashevolve_nb.clock_lag``).

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
from typing import Any

from flashevolve_nb.bench.figures import RunFigures
from flashevolve_nb.bench.sampling import ServerWindow
from flashevolve_nb.clock_lag import BEHIND_SIM_SECONDS

__all__ = [
    "CPU_BOUND", "FIGURES", "Figure", "Spread", "degraded", "figures", "ratio", "server_lag",
    "spread",
]  # fmt: skip


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
    Figure("client_lag", "client lag (sim s)", ".2f", False),
    Figure("server_lag", "server lag (sim s)", ".2f", False),
)
CPU_BOUND = 0.85
"""A process busy this share of real time was the bottleneck, not the simulated model:
its run measures the machine at that time scale, and the report flags it."""


def _div(a: float, b: float) -> float:
    return a / b if b else math.nan


def server_lag(start: Mapping[str, Any], end: Mapping[str, Any]) -> float:
    """Mean wake-up lag of the simulator server's loop between two ``/sim/stats``
    snapshots, in simulated seconds (NaN from a server that does not measure it)."""
    if "lag_counts" not in start or "lag_counts" not in end:
        return math.nan
    wakes = int(sum(end["lag_counts"])) - int(sum(start["lag_counts"]))
    if wakes <= 0:
        return math.nan
    late = float(end["lag_sum"]) - float(start["lag_sum"])
    return late / wakes * float(end["time_scale"])


def degraded(figs: Mapping[str, float]) -> list[str]:
    """Why one run's figures measure the machine rather than the schedule ([] if they do not)."""
    out = []
    for key, who in (("client_lag", "client"), ("server_lag", "simulator server")):
        value = figs.get(key, math.nan)
        if not math.isnan(value) and value > BEHIND_SIM_SECONDS:
            out.append(
                f"the {who}'s clock fell behind by {value:.2f} simulated s on average "
                f"(limit {BEHIND_SIM_SECONDS:g})"
            )
    for key, who in (("client_cpu", "client"), ("server_cpu", "server")):
        value = figs.get(key, math.nan)
        if not math.isnan(value) and value >= CPU_BOUND:
            out.append(f"the {who} process was busy {value:.0%} of real time")
    return out


def figures(
    run: RunFigures,
    win: ServerWindow,
    *,
    client_cpu: float = math.nan,
    server_lag: float = math.nan,
) -> dict[str, float]:
    """Every figure of one run, by :data:`FIGURES` key (NaN where undefined).

    ``client_cpu``: the client process's CPU seconds per real second during the run;
    ``server_lag``: :func:`server_lag` over the run.
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
        "client_lag": run.client_lag,
        "server_lag": server_lag,
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
