"""Opening a stored run read-only: finished, crashed, or still being written.

``open_run(run_dir)`` gives the same views a live run gives (the events
DataFrame, the pool, a :class:`RunResult` with its statistics), rebuilt from
disk, plus what only the store knows: the sessions (one per process that
ran it), the configuration each used, LLM usage per role, and lineage.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flashevolve_nb.engine.artifact import Artifact
from flashevolve_nb.engine.bus import events_frame
from flashevolve_nb.engine.events import Event, RunStarted
from flashevolve_nb.engine.pool import Pool, PoolChange, PoolEntry, PoolSnapshot
from flashevolve_nb.engine.result import RunResult
from flashevolve_nb.engine.stats import RunStats, StatsCollector
from flashevolve_nb.store.codec import decode_scores
from flashevolve_nb.store.errors import RunDirError
from flashevolve_nb.store.resume import ArtifactLookup, iter_events, load_pool
from flashevolve_nb.store.schema import RunLock, StoreMeta, inspect_dir, open_reader

if TYPE_CHECKING:
    import pandas as pd

    from flashevolve_nb.ui import Dashboard

__all__ = ["Session", "StoredRun", "open_run"]

Status = Literal["finished", "failed", "interrupted", "running"]


@dataclass(frozen=True, slots=True)
class Session:
    """One process's part of a run."""

    session: int
    started_wall: float
    pid: int
    resumed: bool
    config: dict[str, Any]
    ended_wall: float | None
    finish_reason: str | None
    """None when the process ended without finishing (killed, crashed) or still runs."""


def open_run(run_dir: str | os.PathLike[str]) -> StoredRun:
    """Open the run stored in ``run_dir`` read-only (it may be running in another process)."""
    path = Path(run_dir)
    db = inspect_dir(path)
    if db is None:
        raise RunDirError(f"no run is stored in {path}; give the directory a run was started in")
    conn, meta = open_reader(db)
    return StoredRun(path, db, conn, meta)


class StoredRun:
    """A run read back from its directory. Views are read once and cached; reopen to refresh."""

    def __init__(self, run_dir: Path, db: Path, conn: sqlite3.Connection, meta: StoreMeta) -> None:
        self.run_dir = run_dir
        self.path = db
        self.meta = meta
        self._conn = conn

    def __enter__(self) -> StoredRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def __repr__(self) -> str:
        return (
            f"StoredRun({str(self.run_dir)!r}, {self.meta.workload}, "
            f"{len(self.sessions)} session(s), {self.status})"
        )

    # ---- what the store alone knows ---------------------------------------
    @cached_property
    def sessions(self) -> tuple[Session, ...]:
        rows = self._conn.execute(
            "SELECT session, started_wall, pid, resumed, config, ended_wall, finish_reason "
            "FROM sessions ORDER BY session"
        ).fetchall()
        return tuple(
            Session(s, started, pid, bool(resumed), json.loads(cfg), ended, reason)
            for s, started, pid, resumed, cfg, ended, reason in rows
        )

    @cached_property
    def status(self) -> Status:
        """``running`` (a process holds the run), ``finished``, ``failed`` or ``interrupted``."""
        if RunLock.held(self.run_dir):
            return "running"
        last = self.sessions[-1] if self.sessions else None
        if last is None or last.finish_reason is None:
            return "interrupted"
        return "failed" if last.finish_reason.startswith("failed") else "finished"

    @property
    def config(self) -> dict[str, Any]:
        """The configuration of the latest session (secrets were never stored)."""
        return self.sessions[-1].config if self.sessions else {}

    def usage_frame(self) -> pd.DataFrame:
        """LLM calls, errors and tokens per session and role."""
        import pandas as pd

        return pd.read_sql_query(
            "SELECT session, role, calls, errors, prompt_tokens, completion_tokens FROM usage "
            "ORDER BY session, role",
            self._conn,
        )

    def pool_log(self) -> pd.DataFrame:
        """Every pool change in order: admit, confirm, remove, with the version it made."""
        import pandas as pd

        return pd.read_sql_query(
            "SELECT seq, session, change, version, artifact_id, speculative, t FROM pool_log "
            "ORDER BY seq",
            self._conn,
        )

    def pool_changes(self) -> tuple[tuple[PoolChange, PoolEntry], ...]:
        """Every pool change in order, with the entry it made (what a pool listener saw)."""
        artifacts = ArtifactLookup(self._conn)
        rows = self._conn.execute(
            "SELECT change, version, artifact_id, scores, speculative, t FROM pool_log ORDER BY seq"
        ).fetchall()
        entries: dict[str, PoolEntry] = {}
        out: list[tuple[PoolChange, PoolEntry]] = []
        for change, v, aid, scores, speculative, t in rows:
            old = entries.get(aid)
            measured, objectives = decode_scores(scores)
            if change == "confirm" and old is not None:
                entry = PoolEntry(old.artifact, measured, old.version, old.admitted_at,
                                  objectives=objectives or old.objectives)  # fmt: skip
            elif change == "remove" and old is not None:
                entry = old
            else:
                entry = PoolEntry(artifacts[aid], measured, v, t, bool(speculative), objectives)
            entries[aid] = entry
            out.append((change, entry))
        return tuple(out)

    def dashboard(self, *, replay: bool = False) -> Dashboard:
        """This stored run in the dashboard (read-only); ``replay=True`` opens it at the
        start with play / pause / scrub controls, to show it step by step."""
        from flashevolve_nb.ui import Dashboard
        from flashevolve_nb.ui.source import RecordedSource

        return Dashboard(RecordedSource.from_stored(self, replay=replay), autostart=False)

    def report(self, path: str | os.PathLike[str]) -> Path:
        """Write the dashboard of this run as one self-contained HTML file."""
        from flashevolve_nb.ui.report import write_report
        from flashevolve_nb.ui.source import RecordedSource

        return write_report(RecordedSource.from_stored(self).model(), path)

    def artifact(self, artifact_id: str) -> Artifact:
        """Any artifact the run admitted or an event showed (a stale or repaired one...)."""
        try:
            return ArtifactLookup(self._conn)[artifact_id]
        except KeyError:
            raise KeyError(f"artifact {artifact_id!r} is not in {self.path}") from None

    def lineage(self, artifact_id: str) -> tuple[Artifact, ...]:
        """``artifact_id`` and its first parents back to a seed, newest first."""
        chain = []
        seen = set()
        current: str | None = artifact_id
        while current is not None and current not in seen:
            seen.add(current)
            a = self.artifact(current)
            chain.append(a)
            current = a.parents[0] if a.parents else None
        return tuple(chain)

    # ---- the same views as a live run -----------------------------------------
    @cached_property
    def events(self) -> tuple[Event, ...]:
        return tuple(iter_events(self._conn))

    def events_frame(self) -> pd.DataFrame:
        return events_frame(self.events)

    @cached_property
    def pool(self) -> PoolSnapshot:
        entries, version = load_pool(self._conn)
        pool = Pool(self.meta.instance_ids)
        pool.restore(entries, version)
        return pool.snapshot()

    @cached_property
    def stats(self) -> RunStats:
        collector = StatsCollector()
        for e in self.events:
            collector(e)
        return collector.stats()

    def result(self) -> RunResult:
        started = [e for e in self.events if isinstance(e, RunStarted)]
        last = self.sessions[-1] if self.sessions else None
        reason = last.finish_reason if last and last.finish_reason else f"({self.status})"
        return RunResult(
            mode=started[-1].mode if started else "",
            seed=started[-1].seed if started else 0,
            pool=self.pool,
            stats=self.stats,
            events=self.events,
            finish_reason=reason,
        )
