"""Reading a stored run back: its pool, its progress, and what was cut off.

The pool is rebuilt by replaying ``pool_log`` (admit, confirm, remove) in
order. What the process was doing when it ended is read from the events
that have a start but no end: those steps are re-derived by the resumed run
and those LLM calls get a closing event, so every start keeps its end.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from flashevolve_nb.engine.artifact import Artifact
from flashevolve_nb.engine.events import Event
from flashevolve_nb.engine.pool import PoolEntry
from flashevolve_nb.store.codec import (
    artifact_from_row,
    decode_event,
    decode_scores,
    event_classes,
)

__all__ = [
    "ArtifactLookup",
    "OpenCall",
    "ResumePlan",
    "iter_events",
    "load_pool",
    "plan_resume",
]


class ArtifactLookup(Mapping[str, Artifact]):
    """Stored artifacts by id, read on demand (a long run holds thousands)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __getitem__(self, key: str) -> Artifact:
        row = self._conn.execute(
            "SELECT id, components, parents, origin, base_version, created_at, note, meta "
            "FROM artifacts WHERE id = ?",
            (key,),
        ).fetchone()
        if row is None:
            raise KeyError(key)
        return artifact_from_row(row)

    def __iter__(self) -> Iterator[str]:
        return (r[0] for r in self._conn.execute("SELECT id FROM artifacts ORDER BY rowid"))

    def __len__(self) -> int:
        n: int = self._conn.execute("SELECT count(*) FROM artifacts").fetchone()[0]
        return n


def iter_events(conn: sqlite3.Connection, after_seq: int = -1) -> Iterator[Event]:
    """Every stored event in order, decoded (streamed: a long run has a great many)."""
    classes = event_classes()
    artifacts = ArtifactLookup(conn)
    cur = conn.execute("SELECT kind, t, data FROM events WHERE seq > ? ORDER BY seq", (after_seq,))
    for kind, t, data in cur:
        yield decode_event(kind, t, data, artifacts, classes)


def load_pool(conn: sqlite3.Connection) -> tuple[list[PoolEntry], int]:
    """The pool's entries and version, replayed from the log of its changes."""
    artifacts = ArtifactLookup(conn)
    entries: dict[str, PoolEntry] = {}
    version = 0
    rows = conn.execute(
        "SELECT change, version, artifact_id, scores, speculative, t FROM pool_log ORDER BY seq"
    ).fetchall()
    for change, v, aid, scores, speculative, t in rows:
        if change == "admit":
            measured, objectives = decode_scores(scores)
            entries[aid] = PoolEntry(artifacts[aid], measured, v, t, bool(speculative), objectives)
        elif change == "confirm":
            old = entries[aid]
            measured, objectives = decode_scores(scores)
            entries[aid] = PoolEntry(
                old.artifact, measured, old.version, old.admitted_at,
                objectives=objectives or old.objectives,
            )  # fmt: skip
        else:
            entries.pop(aid, None)
        if change != "confirm":
            version = max(version, v)
    return sorted(entries.values(), key=lambda e: e.version), version


@dataclass(frozen=True, slots=True)
class OpenCall:
    call_id: int
    role: str
    stage: str
    step: int


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """Everything a pipeline needs to continue a stored run."""

    session: int
    """The session about to start (1 + the sessions before)."""
    entries: tuple[PoolEntry, ...]
    version: int
    t: float
    wall_seconds: float
    next_step: int
    ids: Mapping[str, int]
    call_id: int
    metric_calls: int
    proposals: int
    redo: tuple[tuple[int, str], ...]
    """(step, parent id) of steps started and never finished."""
    open_calls: tuple[OpenCall, ...]
    unreported: tuple[tuple[PoolEntry, int], ...]
    """Admissions made durable whose ``Admitted`` event was not stored, with their step."""


def _one(conn: sqlite3.Connection, sql: str, *args: Any) -> Any:
    row = conn.execute(sql, args).fetchone()
    return row[0] if row else None


def plan_resume(conn: sqlite3.Connection) -> ResumePlan:
    entries, version = load_pool(conn)
    progress = conn.execute(
        "SELECT t, wall_seconds, next_step, call_id, ids, metric_calls, proposals "
        "FROM progress WHERE id = 1"
    ).fetchone()
    t, wall, next_step, call_id, ids, metric_calls, proposals = progress or (
        0.0, 0.0, 1, 0, "{}", 0, 0,
    )  # fmt: skip
    t = max(t, _one(conn, "SELECT max(t) FROM events") or 0.0)
    max_step = _one(conn, "SELECT max(step) FROM events") or 0
    redo = tuple(
        (int(step), parent)
        for step, parent in conn.execute(
            "SELECT step, json_extract(data, '$.parent_id') FROM events "
            "WHERE kind = 'step_started' AND step NOT IN "
            "(SELECT step FROM events WHERE kind = 'step_finished' AND step IS NOT NULL) "
            "ORDER BY step"
        )
    )
    open_calls = tuple(
        OpenCall(int(cid), role, stage, int(step))
        for cid, role, stage, step in conn.execute(
            "SELECT json_extract(data, '$.call_id'), json_extract(data, '$.role'), "
            "json_extract(data, '$.stage'), step FROM events WHERE kind = 'llm_call_started' "
            "AND json_extract(data, '$.call_id') NOT IN (SELECT json_extract(data, '$.call_id') "
            "FROM events WHERE kind = 'llm_call_finished') ORDER BY seq"
        )
    )
    reported = {
        int(v)
        for (v,) in conn.execute(
            "SELECT json_extract(data, '$.version') FROM events WHERE kind = 'admitted'"
        )
    }
    unreported = []
    for e in entries:
        if e.version not in reported and not e.speculative:
            step = _one(
                conn,
                "SELECT step FROM events WHERE kind = 'proposal_made' "
                "AND json_extract(data, '$.artifact_id') = ?",
                e.artifact.id,
            )
            if step is None:  # a seed has step 0; -1: not known
                step = 0 if e.artifact.origin == "seed" else -1
            unreported.append((e, int(step)))
    sessions = _one(conn, "SELECT max(session) FROM sessions") or 0
    return ResumePlan(
        session=sessions + 1,
        entries=tuple(entries),
        version=version,
        t=float(t),
        wall_seconds=float(wall),
        next_step=max(int(next_step), int(max_step) + 1),
        ids=json.loads(ids),
        call_id=int(call_id),
        metric_calls=int(metric_calls),
        proposals=int(proposals),
        redo=redo,
        open_calls=open_calls,
        unreported=tuple(unreported),
    )
