"""One plain-text line per event, for the dashboard's log (and anyone reading events).

Plain text only: the page sets it as text, so LLM excerpts inside stay inert.
Each line comes with a level (``info``, ``warn``, ``error``) and the ids of
the artifacts it is about, which is what the log's per-artifact filter uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from flashevolve_nb.engine.events import Event

__all__ = ["describe"]

Line = tuple[str, str, tuple[str, ...]]


def _score(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _cut(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _admitted(e: Any) -> Line:
    best = ", new best" if e.is_best else ""
    return (f"{e.artifact_id} ({e.origin}) admitted as v{e.version}, score {_score(e.score)}{best}",
            "info", (e.artifact_id, *e.parents))  # fmt: skip


def _decision(e: Any) -> Line:
    rep = f" -> repair {e.replacement.id}" if e.replacement is not None else ""
    level = "warn" if e.decision == "discard" else "info"
    why = f": {_cut(e.reason)}" if e.reason else ""
    ids = (e.artifact_id, *((e.replacement.id,) if e.replacement is not None else ()))
    return (f"{e.policy} policy, before {e.point}: {e.decision} {e.artifact_id} "
            f"(stale by {e.staleness}){rep}{why}", level, ids)  # fmt: skip


_LINES: dict[str, Callable[[Any], Line]] = {
    "run_started": lambda e: (
        f"run started: {e.workload} on {e.backend}, {e.mode}, seed {e.seed}", "info", ()),
    "run_finished": lambda e: (f"run ended: {e.reason}", "info", ()),
    "run_resumed": lambda e: (
        f"resumed (session {e.session}) at pool v{e.version}, {e.entries} artifact(s)", "info", ()),
    "budget_exhausted": lambda e: (f"budget reached: {e.reason}", "info", ()),
    "clock_behind": lambda e: (
        e.report.warning("Lower time_scale, or run on the virtual clock."), "warn", ()
    ),
    "step_started": lambda e: (
        f"step {e.step} started from {e.parent_id} (pool v{e.base_version})", "info",
        (e.parent_id,)),
    "step_finished": lambda e: (f"step {e.step} ended: {e.outcome}", "info", ()),
    "item_dropped": lambda e: (f"{e.stage}: item {e.item_id} dropped: {e.reason}", "warn", ()),
    "item_failed": lambda e: (f"{e.stage}: item {e.item_id} failed: {_cut(e.error)}", "error", ()),
    "llm_retry": lambda e: (
        f"{e.role} call retried (attempt {e.attempt}, {e.cause}) in {e.delay:.1f} s", "warn", ()),
    "proposal_made": lambda e: (
        f"{e.artifact_id} proposed from {e.parent_id} (component {e.component!r})", "info",
        (e.artifact_id, e.parent_id)),
    "proposal_failed": lambda e: (
        f"proposal from {e.parent_id} failed: {_cut(e.reason)}", "warn", (e.parent_id,)),
    "gate_result": lambda e: (
        f"{e.artifact_id} {'passed' if e.passed else 'failed'} the gate: "
        f"{e.child_score:g} vs parent {e.parent_score:g} on the minibatch",
        "info", (e.artifact_id, e.parent_id)),
    "validation_done": lambda e: (
        f"{e.artifact_id} validated: {_score(e.score)} on {e.instances} instance(s)", "info",
        (e.artifact_id,)),
    "stale_detected": lambda e: (
        f"{e.artifact_id} is stale before {e.point}: based on v{e.base_version}, pool at "
        f"v{e.pool_version} ({e.staleness} behind)", "info", (e.artifact_id,)),
    "policy_decision": _decision,
    "admitted": _admitted,
    "frontier_changed": lambda e: (
        f"frontier now {e.front_size} artifact(s), best {e.best_id} ({_score(e.best_score)})",
        "info", (e.best_id,)),
    "stage_control": lambda e: (
        f"{e.source}: {e.action} {'' if e.stage == '*' else e.stage} {e.value}".replace("  ", " "),
        "info", ()),
    "human_submitted": lambda e: (
        f"a person submitted {e.artifact_id} (from {e.parent_id}) as step {e.step}", "info",
        (e.artifact_id, e.parent_id)),
    "queue_edited": lambda e: (
        f"a person {e.action} item {e.item_id} in {e.stage}"
        + (f": {e.replaced_id} -> {e.artifact_id}" if e.replaced_id else ""),
        "info", tuple(x for x in (e.artifact_id, e.replaced_id) if x)),
    "partial_release": lambda e: (
        f"{e.stage}: released after {e.released}/{e.total} requests (alpha {e.alpha:g})",
        "info", ()),
    "partial_fold_in": lambda e: (
        f"{e.stage}: the remaining {e.finished}/{e.total} requests folded in"
        + (" (cancelled)" if e.cancelled else ""), "info", ()),
    "speculative_admitted": lambda e: (
        f"{e.artifact_id} admitted speculatively as v{e.version}: prefix {_score(e.prefix_score)} "
        f"over bar {_score(e.bar)} on {e.measured}/{e.instances}", "info",
        (e.artifact_id, *e.parents)),
    "speculation_confirmed": lambda e: (
        f"{e.artifact_id} confirmed: full score {_score(e.score)} (prefix "
        f"{_score(e.prefix_score)})", "info", (e.artifact_id,)),
    "speculation_rolled_back": lambda e: (
        f"{e.artifact_id} rolled back: {_cut(e.reason)} (full {_score(e.score)}, prefix "
        f"{_score(e.prefix_score)})", "warn", (e.artifact_id,)),
    "controller_action": lambda e: (
        f"{e.source}: {e.action} {'' if e.stage == '*' else e.stage} {e.before} -> {e.after}: "
        f"{_cut(e.reason)}".replace("  ", " "), "info", ()),
    "worker_lost": lambda e: (
        f"{e.stage}: a worker died ({_cut(e.error)}); {e.workers_left} left", "error", ()),
    "stage_stalled": lambda e: (
        f"{e.stage} stalled with {e.queued} queued: {e.reason}", "warn", ()),
    "breaker_opened": lambda e: (
        f"circuit breaker {e.breaker} open after {e.failures} failures: {_cut(e.error)}",
        "error", ()),
    "breaker_half_open": lambda e: (f"circuit breaker {e.breaker}: probing", "warn", ()),
    "breaker_closed": lambda e: (
        f"circuit breaker {e.breaker} closed after {e.downtime:.0f} s", "info", ()),
}  # fmt: skip


def describe(e: Event) -> Line:
    """``(text, level, artifact ids)`` for one event."""
    line = _LINES.get(e.kind)
    if line is not None:
        try:
            return line(e)
        except Exception:  # a field missing from an older stored event: say what we can
            pass
    return (e.kind.replace("_", " "), "info", ())
