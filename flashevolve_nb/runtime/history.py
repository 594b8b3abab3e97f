"""A run's history as the dashboard shows it, kept from the first event on.

:class:`RunHistory` subscribes to the pipeline's bus and pool before the run
starts, so a dashboard opened late (or reopened, or a stored run read back)
shows everything since the start. It keeps plain JSON-ready values, bounded:
time series (downsampled when long), the notable events as one-line texts,
every artifact the views mention, the pool's rows and the staleness stories.
The shapes are those of ``widgets/PROTOCOL.md``.

It runs inside ``emit`` on the pipeline's loop, so each event costs a few
dictionary updates; readers on other threads take deltas under a lock.
"""

from __future__ import annotations

import bisect
import json
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flashevolve_nb.engine.artifact import Artifact
from flashevolve_nb.engine.events import (
    Admitted,
    Event,
    FrontierChanged,
    GateResult,
    ItemFailed,
    ItemFinished,
    ItemQueued,
    ItemStarted,
    LLMCallFinished,
    LLMCallStarted,
    PolicyDecision,
    ProposalMade,
    RunFinished,
    SpeculationConfirmed,
    SpeculationRolledBack,
    SpeculativeAdmitted,
    StaleDetected,
    StepFinished,
    ValidationDone,
)
from flashevolve_nb.engine.pool import PoolChange, PoolEntry
from flashevolve_nb.runtime.describe import describe

__all__ = ["HistoryCursor", "Probe", "RunHistory", "artifact_json"]

MAX_POINTS = 4000
MAX_EVENTS = 5000
SAMPLE_EVERY = 5.0
"""Run-clock seconds between two series points (at most one point per event)."""

_KEEP = frozenset(
    {
        "admitted", "policy_decision", "speculative_admitted", "speculation_confirmed",
        "speculation_rolled_back", "controller_action", "stage_control", "human_submitted",
        "queue_edited", "run_started", "run_finished", "run_resumed", "budget_exhausted",
    }
)  # fmt: skip
"""Events never dropped from the log: the run's story, and what people did."""

_SILENT = frozenset(
    {"item_queued", "item_started", "item_finished", "llm_call_started", "llm_call_finished"}
)
"""Per-item events: too many for a log; they show as series."""


@dataclass(frozen=True, slots=True)
class Probe:
    """What only the live pipeline knows at a sample: workers, depth (stage -> count)."""

    workers: Mapping[str, int]
    queued: Mapping[str, int]
    depth: int


@dataclass(frozen=True, slots=True)
class HistoryCursor:
    """Where a reader got to; pass it back to :meth:`RunHistory.delta`."""

    event_seq: int = -1
    t: float = -math.inf
    artifacts: int = 0
    change: int = 0


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


CHANGE_KEYS = ("change", "ace")
"""``Artifact.meta`` keys where a workload keeps its own record of what a child changed
(ACE: the delta's operations, bullets added or merged, tags remapped, duplicates)."""


def _change(meta: Mapping[str, Any]) -> dict[str, Any]:
    for key in CHANGE_KEYS:
        record = meta.get(key)
        if isinstance(record, Mapping):
            # Plain JSON only: the page shows it as a list of names and values.
            plain = json.loads(json.dumps(dict(record), default=str))
            return plain if isinstance(plain, dict) else {}
    return {}


def artifact_json(a: Artifact) -> dict[str, Any]:
    feedback = a.meta.get("feedback", ())
    return {
        "change": _change(a.meta),
        "id": a.id,
        "parents": list(a.parents),
        "origin": str(a.origin),
        "base_version": a.base_version,
        "created_at": a.created_at,
        "note": a.note,
        "components": dict(a.components),
        "feedback": [dict(f) for f in feedback if isinstance(f, Mapping)]
        if isinstance(feedback, list | tuple)
        else [],
    }


class RunHistory:
    """The dashboard's model of one run: subscribe it to a bus (and a pool) before the run."""

    def __init__(
        self,
        stages: Iterable[str],
        *,
        probe: Callable[[], Probe] | None = None,
        sample_every: float = SAMPLE_EVERY,
        max_points: int = MAX_POINTS,
        max_events: int = MAX_EVENTS,
    ) -> None:
        self.stages = tuple(stages)
        self._probe = probe
        self._every = sample_every
        self._max_points = max_points
        self._max_events = max_events
        self._lock = threading.Lock()
        # counters the series sample
        self._queued = dict.fromkeys(self.stages, 0)
        self._busy = dict.fromkeys(self.stages, 0)
        self._done = dict.fromkeys(self.stages, 0)
        self._requests = 0
        self._proposals = 0
        self._accepted = 0
        self._best: float | None = None
        self._best_id = ""
        self._version = 0
        self._t_last_sample = -math.inf
        self._t_now = 0.0
        # series, column-oriented
        self._t: list[float] = []
        self._cols: dict[str, list[float | None]] = {}
        # events
        self._seq = 0
        self._events: list[dict[str, Any]] = []
        self._droppable = 0
        # artifacts, pool rows, stories
        self._artifacts: dict[str, dict[str, Any]] = {}
        self._art_order: list[str] = []
        self._change = 0
        self._pool: dict[str, tuple[int, dict[str, Any]]] = {}
        self._stories: dict[int, tuple[int, dict[str, Any]]] = {}
        self._pending_stale: dict[tuple[str, str], StaleDetected] = {}
        self._stories_by_step: dict[int, list[int]] = {}
        self._version_ids: dict[int, str] = {}
        self._gated_out: set[str] = set()

    # ---- feeding ---------------------------------------------------------------
    def pool_changed(self, change: PoolChange, entry: PoolEntry) -> None:
        """A pool listener: rows carry per-instance scores, which events do not."""
        with self._lock:
            self._note_artifact(entry.artifact)
            old = self._pool.get(entry.artifact.id)
            row: dict[str, Any] = dict(old[1]) if old else {"step": None, "best_at_admit": False}
            state = {
                "admit": "speculative" if entry.speculative else "admitted",
                "confirm": "confirmed",
                "remove": "rolled_back",
            }[change]
            row.update(
                id=entry.artifact.id,
                version=entry.version,
                t=entry.admitted_at,
                score=_finite(entry.score),
                scores=[_finite(s) for s in entry.scores],
                objectives={k: _finite(v) for k, v in entry.objectives.items()},
                state=state,
            )
            self._upsert_pool(row)
            if change != "remove":
                self._version_ids[entry.version] = entry.artifact.id

    def note_artifact(self, artifact: Artifact) -> None:
        """Make an artifact known to the views (a person's submission, say)."""
        with self._lock:
            self._note_artifact(artifact)

    def __call__(self, e: Event) -> None:
        with self._lock:
            self._t_now = max(self._t_now, e.t)
            self._count(e)
            if e.kind not in _SILENT:
                self._log(e)
            if isinstance(e, StaleDetected | PolicyDecision):
                self._story(e)
            self._outcome(e)
            if e.t >= self._t_last_sample + self._every or isinstance(e, RunFinished):
                self._sample(e.t)

    # ---- counting and sampling ---------------------------------------------------
    def _count(self, e: Event) -> None:
        if isinstance(e, ItemQueued) and e.stage in self._queued:
            self._queued[e.stage] = e.depth
        elif isinstance(e, ItemStarted) and e.stage in self._busy:
            self._queued[e.stage] = max(0, self._queued[e.stage] - 1)
            self._busy[e.stage] += 1
        elif isinstance(e, ItemFinished | ItemFailed) and e.stage in self._busy:
            self._busy[e.stage] = max(0, self._busy[e.stage] - 1)
            if isinstance(e, ItemFinished):
                self._done[e.stage] += 1
        elif isinstance(e, LLMCallStarted):
            self._requests += 1
        elif isinstance(e, LLMCallFinished):
            self._requests = max(0, self._requests - 1)
        elif isinstance(e, ProposalMade):
            self._proposals += 1
        elif isinstance(e, Admitted):
            self._accepted += e.origin != "seed"
            self._version = max(self._version, e.version)
            self._version_ids[e.version] = e.artifact_id
            score = _finite(e.score)
            if e.is_best or self._best is None:
                self._best, self._best_id = score, e.artifact_id
            row = self._pool.get(e.artifact_id)
            if row is not None:
                self._upsert_pool({**row[1], "step": e.step, "best_at_admit": e.is_best})
        elif isinstance(e, FrontierChanged):
            self._best, self._best_id = _finite(e.best_score), e.best_id
            self._version = max(self._version, e.version)
        elif isinstance(e, SpeculativeAdmitted | SpeculationConfirmed | SpeculationRolledBack):
            row = self._pool.get(e.artifact_id)
            if row is not None:
                self._upsert_pool({**row[1], "step": e.step})

    def _sample(self, t: float) -> None:
        self._t_last_sample = t
        probe = self._probe() if self._probe is not None else None
        point: dict[str, float | None] = {}
        for s in self.stages:
            queued = probe.queued.get(s, self._queued[s]) if probe else self._queued[s]
            point[f"queued:{s}"] = queued
            point[f"busy:{s}"] = self._busy[s]
            point[f"done:{s}"] = self._done[s]
            if probe is not None:
                point[f"workers:{s}"] = probe.workers.get(s, 0)
        point["requests"] = self._requests
        if probe is not None:
            point["depth"] = probe.depth
        point["proposals"] = self._proposals
        point["accepted"] = self._accepted
        point["best"] = self._best
        if self._t and t <= self._t[-1]:
            # Same instant (a virtual clock, or RunFinished right after a sample): newest wins.
            for k, v in point.items():
                self._cols.setdefault(k, [None] * len(self._t))[-1] = v
            return
        n = len(self._t)
        self._t.append(t)
        for k, v in point.items():
            self._cols.setdefault(k, [None] * n).append(v)
        for col in self._cols.values():
            if len(col) < n + 1:
                col.append(None)
        if len(self._t) > self._max_points:
            self._decimate()

    def _decimate(self) -> None:
        # Every other point of the older half goes: recent detail stays, the start
        # keeps its shape, and the length stays bounded however long the run.
        half = len(self._t) // 2
        keep = [i for i in range(half) if i % 2 == 0] + list(range(half, len(self._t)))
        self._t = [self._t[i] for i in keep]
        for k, col in self._cols.items():
            self._cols[k] = [col[i] for i in keep]

    # ---- the event log -----------------------------------------------------------
    def _log(self, e: Event) -> None:
        text, level, ids = describe(e)
        row = {
            "seq": self._seq,
            "t": e.t,
            "kind": e.kind,
            "level": level,
            "step": getattr(e, "step", None),
            "stage": getattr(e, "stage", ""),
            "ids": list(ids),
            "text": text,
        }
        self._seq += 1
        self._events.append(row)
        if e.kind not in _KEEP:
            self._droppable += 1
        if self._droppable > self._max_events * 1.2:
            # Compact in one pass now and then, not on every event.
            surplus = self._droppable - self._max_events
            kept = []
            for r in self._events:
                if surplus > 0 and r["kind"] not in _KEEP:
                    surplus -= 1
                    continue
                kept.append(r)
            self._events = kept
            self._droppable = self._max_events

    # ---- artifacts, pool rows, stories -----------------------------------------------
    def _note_artifact(self, a: Artifact) -> None:
        if a.id not in self._artifacts:
            self._artifacts[a.id] = artifact_json(a)
            self._art_order.append(a.id)

    def _upsert_pool(self, row: dict[str, Any]) -> None:
        self._change += 1
        self._pool[row["id"]] = (self._change, row)

    def _upsert_story(self, key: int, story: dict[str, Any]) -> None:
        self._change += 1
        self._stories[key] = (self._change, story)

    def _story(self, e: StaleDetected | PolicyDecision) -> None:
        if isinstance(e, StaleDetected):
            self._pending_stale[(e.item_id, e.point)] = e
            return
        seen = self._pending_stale.pop((e.item_id, e.point), None)
        pool_version = seen.pool_version if seen else self._version
        base = seen.base_version if seen else pool_version - e.staleness
        if e.artifact is not None:
            self._note_artifact(e.artifact)
        if e.replacement is not None:
            self._note_artifact(e.replacement)
        ids = self._version_ids
        since = list(e.history_ids) or [
            ids[v] for v in range(base + 1, pool_version + 1) if v in ids
        ]
        stale = e.artifact
        key = self._seq - 1  # the log row just written for this decision
        status = "discarded" if e.decision == "discard" else "pending"
        self._upsert_story(
            key,
            {
                "key": key,
                "t": e.t,
                "step": e.step,
                "item_id": e.item_id,
                "point": e.point,
                "policy": e.policy,
                "decision": e.decision,
                "reason": e.reason,
                "staleness": e.staleness,
                "base_version": base,
                "pool_version": pool_version,
                "stale_id": e.artifact_id,
                "parent_id": stale.parents[0] if stale is not None and stale.parents else "",
                "since_ids": since,
                "best_id": self._best_id,
                "replacement_id": e.replacement.id if e.replacement is not None else "",
                "request": e.request,
                "answer": e.answer,
                "tokens": e.tokens,
                "outcome": {"status": status, "artifact_id": "", "score": None,
                            "version": None, "is_best": False, "text": ""},
            },
        )  # fmt: skip
        self._stories_by_step.setdefault(e.step, []).append(key)

    def _outcome(self, e: Event) -> None:
        """Fill in what became of the items the staleness stories are about."""
        keys = self._stories_by_step.get(getattr(e, "step", -1))
        if not keys:
            return
        if isinstance(e, GateResult) and not e.passed:
            self._gated_out.add(e.artifact_id)
        for key in keys:
            _, story = self._stories[key]
            out = story["outcome"]
            if out["status"] != "pending":
                continue
            new: dict[str, Any] | None = None
            if isinstance(e, Admitted | SpeculativeAdmitted):
                score = e.score if isinstance(e, Admitted) else e.provisional_score
                sure = isinstance(e, Admitted)
                new = {"status": "admitted", "artifact_id": e.artifact_id,
                       "score": _finite(score), "version": e.version,
                       "is_best": isinstance(e, Admitted) and e.is_best,
                       "text": "admitted" if sure else "admitted speculatively"}  # fmt: skip
            elif isinstance(e, ValidationDone):
                story = {**story, "outcome": {**out, "artifact_id": e.artifact_id,
                                              "score": _finite(e.score)}}  # fmt: skip
                self._upsert_story(key, story)
                continue
            elif isinstance(e, StepFinished):
                word = e.outcome.lower()
                status = (
                    "gated_out" if "gate" in word
                    else "cancelled" if "cancel" in word
                    else "failed" if "fail" in word
                    else "discarded" if "discard" in word or "stale" in word or "drop" in word
                    else "admitted" if word == "admitted"
                    else "ended"
                )  # fmt: skip
                new = {**out, "status": status, "text": e.outcome}
            if new is not None:
                self._upsert_story(key, {**story, "outcome": new})
        if isinstance(e, StepFinished):
            self._stories_by_step.pop(e.step, None)

    # ---- reading -------------------------------------------------------------------
    @property
    def t(self) -> float:
        """The run clock of the latest event seen."""
        return self._t_now

    def delta(self, cursor: HistoryCursor) -> tuple[dict[str, Any], HistoryCursor]:
        """What is new since ``cursor`` (PROTOCOL.md's tick fields), and the next cursor."""
        with self._lock:
            i = bisect.bisect_right(self._events, cursor.event_seq, key=lambda r: r["seq"])
            events = self._events[i:]
            j = bisect.bisect_right(self._t, cursor.t)
            series = {"t": self._t[j:], "cols": {k: v[j:] for k, v in self._cols.items()}}
            ids = self._art_order[cursor.artifacts :]
            artifacts = {a: self._artifacts[a] for a in ids}
            pool = [row for ch, row in self._pool.values() if ch > cursor.change]
            stories = [s for ch, s in self._stories.values() if ch > cursor.change]
            stories.sort(key=lambda s: s["key"])
            nxt = HistoryCursor(
                event_seq=self._events[-1]["seq"] if self._events else cursor.event_seq,
                t=self._t[-1] if self._t else cursor.t,
                artifacts=len(self._art_order),
                change=self._change,
            )
        return (
            {"series": series, "events": events, "artifacts": artifacts,
             "pool": pool, "stories": stories},
            nxt,
        )  # fmt: skip

    def full(self) -> tuple[dict[str, Any], HistoryCursor]:
        """Everything kept so far, and the cursor that follows it."""
        return self.delta(HistoryCursor())
