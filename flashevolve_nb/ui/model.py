"""The dashboard's JSON: a run's snapshot, its controller knobs and its warnings.

Plain functions from immutable snapshots to JSON-ready dicts (the shapes of
``widgets/PROTOCOL.md``). Nothing here talks to a widget or to the run's
loop, so all of it is tested without a kernel.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from flashevolve_nb.clock_lag import MIN_WAKES, LagReport
from flashevolve_nb.engine.controller import ControllerParams
from flashevolve_nb.engine.stats import RunStats
from flashevolve_nb.runtime.snapshot import RunSnapshot

__all__ = [
    "KNOBS", "STAGE_HELP", "clean", "clean_dict", "clock_behind", "knobs", "lag_json",
    "snapshot_json", "stats_json", "warnings",
]  # fmt: skip

LAGGING_SECONDS = 0.5
"""A run loop that takes longer than this to answer for a snapshot is falling behind."""

KNOBS: Mapping[str, tuple[str, str, str, float, float, float]] = {
    # name: (label, unit, help, min, max, step)
    "interval": ("decision interval", "s of run clock",
                 "How often the controller looks at the stages and decides.", 1, 3600, 1),
    "low": ("slow-stage threshold", "x median rate",
            "A stage producing under this multiple of the median rate, with a backlog, "
            "gains a worker.", 0.05, 0.95, 0.05),
    "high": ("fast-stage threshold", "x median rate",
             "A stage producing over this multiple of the median rate, with nothing "
             "queued, gives a worker up.", 1.05, 10, 0.05),
    "min_workers": ("min workers per stage", "workers",
                    "No stage goes below this (per-stage bounds override it).", 0, 64, 1),
    "max_workers": ("max workers per stage", "workers",
                    "No stage goes above this (per-stage bounds override it).", 1, 256, 1),
    "max_total_workers": ("max workers in all", "workers",
                          "Cap on the sum of every stage's workers.", 1, 1024, 1),
    "adjust_depth": ("adjust depth", "",
                     "Let the controller change how many steps are in flight.", 0, 1, 1),
    "min_depth": ("min depth", "steps in flight", "The depth never goes below this.", 1, 256, 1),
    "max_depth": ("max depth", "steps in flight", "The depth never goes above this.", 1, 1024, 1),
    "depth_step": ("depth step", "steps", "How much one decision changes the depth.", 1, 64, 1),
    "staleness_budget": ("staleness budget", "pool versions",
                         "Mean versions an admitted artifact may have missed before the "
                         "depth shrinks.", 0, 1000, 1),
    "latency_limit": ("latency limit", "x lowest per-token latency",
                      "Past this slowdown of the backend the depth stops growing.",
                      1.05, 20, 0.05),
    # server_cap is not a knob: it is a fact about the backend (None when unknown).
    "server_fill": ("server fill", "x server's sequence cap",
                    "With the server's cap known, the depth aims at this many requests "
                    "in flight per slot (over 1: the load swings).", 0.25, 4, 0.05),
    "backoff": ("back-off factor", "x depth",
                "Depth multiplier after the backend answers 'too many requests'.",
                0.05, 0.95, 0.05),
    "cooldown": ("cool-down", "s of run clock",
                 "No depth growth for this long after a back-off.", 0, 7200, 10),
    "smoothing": ("smoothing", "weight of the past",
                  "0 uses the last interval only; closer to 1 reacts more slowly.",
                  0, 0.95, 0.05),
}  # fmt: skip
"""Controller parameters the page may tune: label, unit, help text and bounds."""

STAGE_HELP: Mapping[str, str] = {
    "select": "picks a parent from the pool and a minibatch",
    "rollout": "runs the task model with the parent on the minibatch",
    "reflect": "the reflection model reads the traces and proposes a new text",
    "gate": "runs the child on the same minibatch; it must beat its parent",
    "validate": "scores the child on the validation set",
}


def clean(x: Any) -> Any:
    """JSON-safe: non-finite floats become None (JSON has no NaN; browsers reject it)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [clean(v) for v in x]
    return x


def clean_dict(x: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`clean` for a mapping, typed as the dict it gives."""
    return {str(k): clean(v) for k, v in x.items()}


def knobs(params: ControllerParams | None) -> list[dict[str, Any]]:
    if params is None:
        return []
    out = []
    for f in dataclasses.fields(params):
        spec = KNOBS.get(f.name)
        if spec is None:
            continue
        label, unit, help_, lo, hi, step = spec
        value = getattr(params, f.name)
        kind = "bool" if isinstance(value, bool) else "int" if isinstance(value, int) else "float"
        out.append({"name": f.name, "label": label, "unit": unit, "help": help_,
                    "kind": kind, "min": lo, "max": hi, "step": step})  # fmt: skip
    return out


def stats_json(s: RunStats) -> dict[str, Any]:
    d = dataclasses.asdict(s)
    d.update(
        proposals_per_min=s.proposals_per_min,
        accepted_per_min=s.accepted_per_min,
        tokens=s.tokens,
        minutes=s.minutes,
    )
    return clean_dict(d)


def warnings(snap: RunSnapshot) -> list[str]:
    """What the person's steering does to the run, said on the page."""
    if snap.done:
        return []
    out = []
    stages = snap.stages
    for i, s in enumerate(stages):
        if not s.paused:
            continue
        starved = [d.name for d in stages[i + 1 :] if d.queued == 0 and d.busy == 0]
        if starved:
            names = ", ".join(repr(n) for n in starved)
            out.append(f"{s.name!r} is paused: {names} get nothing from it (resume it to go on)")
    paused = {s.name for s in stages if s.paused}
    for q in snap.queued:
        if q.origin == "human" and q.stage in paused:
            out.append(
                f"a person's artifact {q.artifact_id} waits in the queue of {q.stage!r}, "
                "which is paused"
            )
    if stages and all(s.workers == 0 for s in stages if not s.paused) and not paused:
        out.append("every stage has 0 workers: nothing moves")
    return out


def clock_behind(snap: RunSnapshot) -> dict[str, Any] | None:
    """Whether the real clock fell behind the simulated one (the figures are degraded).

    The run's verdict once it has one (``stats.clock_behind``, kept with its events);
    before that, the live measure, once it has enough wake-ups to mean something.
    """
    lag = snap.stats.clock_behind
    live = snap.clock
    if lag is None and live is not None and live.wakes >= MIN_WAKES and live.behind:
        lag = live
    return lag_json(lag)


def lag_json(lag: LagReport | None) -> dict[str, Any] | None:
    """The snapshot's ``clock_behind``: None when the clock kept up (or is not known to lag)."""
    if lag is None:
        return None
    return {
        "time_scale": lag.time_scale,
        "sim_lag_mean": lag.sim_lag_mean,
        "sim_lag_p95": lag.sim_lag_p95,
        "real_lag_mean": lag.real_lag_mean,
        "loop_cpu": lag.loop_cpu,
        "message": lag.warning("Lower time_scale, or run on the virtual clock."),
    }


def _stage_rows(snap: RunSnapshot) -> list[dict[str, Any]]:
    requests: dict[str, int] = {}
    for r in snap.requests:
        requests[r.stage] = requests.get(r.stage, 0) + 1
    alpha: Mapping[str, float] = getattr(snap.speculation, "alpha", {}) or {}
    rows = []
    for s in snap.stages:
        items = [
            {"item_id": q.item_id, "step": q.step, "artifact_id": q.artifact_id,
             "staleness": q.staleness, "human": q.origin == "human"}
            for q in snap.queued if q.stage == s.name
        ]  # fmt: skip
        rows.append({
            "name": s.name, "queued": s.queued, "busy": s.busy, "workers": s.workers,
            "paused": s.paused, "processed": s.processed, "failed": s.failed,
            "dropped": s.dropped, "requests": requests.get(s.name, 0),
            "held": s.name in snap.held, "alpha": alpha.get(s.name, 1.0), "items": items,
        })  # fmt: skip
    return rows


def _controller(snap: RunSnapshot) -> dict[str, Any] | None:
    c = snap.controller
    params = snap.controller_params
    if params is None:
        return None
    moves: Sequence[Any] = getattr(c, "moves", ()) or ()
    return {
        "enabled": bool(snap.controller_enabled),
        "params": {f.name: getattr(params, f.name) for f in dataclasses.fields(params)
                   if f.name in KNOBS},
        "moves": [{"action": m.action, "stage": m.stage, "before": m.before, "after": m.after,
                   "reason": m.reason} for m in moves],
        "decisions": getattr(c, "decisions", 0),
        "actions": getattr(c, "actions", 0),
        "held": dict(snap.held),
    }  # fmt: skip


def _speculation(snap: RunSnapshot) -> dict[str, Any] | None:
    sp = snap.speculation
    if sp is None:
        return None
    return {"alpha": dict(sp.alpha), "validation": sp.validation, "margin": sp.margin,
            "open": list(sp.open), "partial_stages": list(snap.partial_stages)}  # fmt: skip


def snapshot_json(snap: RunSnapshot) -> dict[str, Any]:
    pool = snap.pool
    return clean_dict(
        {
            "state": snap.state,
            "t": snap.sim_seconds,
            "real_seconds": snap.real_seconds,
            "lagging": snap.answer_seconds > LAGGING_SECONDS and not snap.done,
            "finish_reason": snap.finish_reason,
            "error": snap.error,
            "stats": stats_json(snap.stats),
            "depth": snap.depth,
            "steps_in_flight": snap.pipeline.steps_in_flight,
            "requests_in_flight": snap.pipeline.requests_in_flight,
            "policy": snap.policy,
            "policy_params": dict(snap.policy_params),
            "stages": _stage_rows(snap),
            "pool": {"version": pool.version, "size": len(pool.entries), "best_id": pool.best_id,
                     "best_score": pool.best_score, "front_ids": list(pool.front_ids)},
            "controller": _controller(snap),
            "speculation": _speculation(snap),
            "warnings": warnings(snap),
            "clock_behind": clock_behind(snap),
            "errors": list(snap.errors),
        }
    )  # fmt: skip
