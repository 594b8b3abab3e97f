"""The writer: a run's events, pool changes and progress, written as the run goes.

It is two things attached to one pipeline. A pool listener, called inside
``Pool.admit`` / ``remove`` / ``confirm``, commits the change (with every
event emitted before it) before the pipeline goes on to report it, with
``synchronous=FULL`` so that an admission survives even a power cut. An
event subscriber buffers events and commits them at least every
``FLUSH_SECONDS`` of real time (or ``FLUSH_EVENTS`` events), so a killed
process loses at most that tail of its events, never an admission. The
progress row (step, id and call counters, budget spent, run clock) rides in
every commit, so it is never behind the events stored with it.

Everything runs on the pipeline's loop; the connection is only shared with
the thread that attached it before the run starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import flashevolve_nb
from flashevolve_nb.engine.artifact import Artifact
from flashevolve_nb.engine.events import (
    Admitted,
    Event,
    LLMCallFinished,
    RunFinished,
    SpeculationRolledBack,
    StepFinished,
)
from flashevolve_nb.engine.pool import PoolChange, PoolEntry
from flashevolve_nb.store.codec import artifact_row, describe, encode_event, encode_scores
from flashevolve_nb.store.errors import (
    IncompatibleRun,
    NothingToResume,
    RunExists,
    RunStoreError,
)
from flashevolve_nb.store.resume import ResumePlan, iter_events, plan_resume
from flashevolve_nb.store.schema import (
    RunLock,
    StoreMeta,
    create_store,
    inspect_dir,
    open_reader,
    open_writer,
    record_durable,
)

if TYPE_CHECKING:
    from flashevolve_nb.engine.pipeline import Pipeline

__all__ = ["DEFAULT_MEMORY_EVENTS", "FLUSH_EVENTS", "FLUSH_SECONDS", "RunStore", "attach"]

DEFAULT_MEMORY_EVENTS = 50_000
"""Events kept in memory when a store holds them all on disk (``memory_events``)."""

FLUSH_SECONDS = 0.05
FLUSH_EVENTS = 2000
"""Events are committed in batches: one commit per event would cost more than the run."""

INTERRUPTED = "interrupted: the process ended"


class RunStore:
    """The on-disk record of one run, written by the one process running it."""

    def __init__(
        self,
        pipeline: Pipeline,
        run_dir: Path,
        db: Path,
        conn: sqlite3.Connection,
        lock: RunLock,
        session: int,
        t_floor: float,
    ) -> None:
        self.pipeline = pipeline
        self.run_dir = run_dir
        self.path = db
        self.session = session
        self._conn = conn
        self._lock = lock
        self._mutex = threading.Lock()
        self._t_floor = t_floor
        self._buffer: list[Event] = []
        self._flush_scheduled = False
        self._last_flush = time.monotonic()
        self._closed = False
        self._broken: BaseException | None = None
        self._seq = int(conn.execute("SELECT coalesce(max(seq), -1) FROM events").fetchone()[0])
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def resumed(self) -> bool:
        return self.session > 1

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"RunStore({str(self.run_dir)!r}, session={self.session}, {state})"

    # ---- wiring -------------------------------------------------------------
    def _start(self, config: object, resumed: bool) -> None:
        cfg = {"pipeline": describe(self.pipeline.config), "run": describe(config)}
        self._conn.execute(
            "INSERT INTO sessions (session, started_wall, pid, resumed, config) "
            "VALUES (?, ?, ?, ?, ?)",
            (self.session, time.time(), os.getpid(), int(resumed), json.dumps(cfg)),
        )
        self._unsubscribe = self.pipeline.bus.subscribe(self)
        self.pipeline.pool.listeners.append(self._on_pool)

    # ---- the two entry points -------------------------------------------------
    def __call__(self, event: Event) -> None:
        """Event subscriber: buffer; commit when the batch is due."""
        if self._closed or self._broken is not None:
            return
        self._buffer.append(event)
        if isinstance(event, RunFinished):
            self._finish(event.reason)
            return
        if (
            len(self._buffer) >= FLUSH_EVENTS
            or time.monotonic() - self._last_flush >= FLUSH_SECONDS
        ):
            self._safe_flush()
            return
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # emitted outside the loop (before the run): write now
            self._safe_flush()
            return
        # The tail of a burst is written even if no further event comes to trigger it.
        self._flush_scheduled = True
        loop.call_later(FLUSH_SECONDS, self._scheduled_flush)

    def _on_pool(self, change: PoolChange, entry: PoolEntry) -> None:
        """Pool listener: the change is durable when this returns, or the run stops."""
        if self._closed:
            return
        if self._broken is not None:
            raise RunStoreError(f"the run store is broken ({self._broken}); the run is stopping")
        self._write(durable=True, change=(change, entry))
        with self._mutex:
            try:
                record_durable(self.run_dir, self._conn)
            except (OSError, sqlite3.Error) as exc:
                self._break(exc)
                raise RunStoreError(
                    f"could not note the pool's progress in {self.run_dir}: {exc}"
                ) from exc

    # ---- writing ------------------------------------------------------------
    def flush(self) -> None:
        """Commit the buffered events now."""
        if not self._closed and self._broken is None:
            self._write(durable=False)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._safe_flush()

    def _safe_flush(self) -> None:
        # An event must never fail the run; a write failure has already stopped it.
        with contextlib.suppress(RunStoreError):
            self.flush()

    def _write(self, *, durable: bool, change: tuple[PoolChange, PoolEntry] | None = None) -> None:
        with self._mutex:
            self._last_flush = time.monotonic()
            events, self._buffer = self._buffer, []
            try:
                self._commit(events, durable, change)
            except sqlite3.Error as exc:
                self._buffer = events + self._buffer
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                self._break(exc)
                raise RunStoreError(f"could not write to {self.path}: {exc}") from exc

    def _commit(
        self, events: list[Event], durable: bool, change: tuple[PoolChange, PoolEntry] | None
    ) -> None:
        conn = self._conn
        kept: list[Artifact] = []
        rows = []
        usage: dict[str, list[int]] = {}
        seq = self._seq
        for e in events:
            seq += 1
            step = getattr(e, "step", None)
            rows.append(
                (
                    seq,
                    self.session,
                    e.t,
                    e.kind,
                    step if isinstance(step, int) else None,
                    encode_event(e, kept.append),
                )
            )
            if isinstance(e, LLMCallFinished):
                u = usage.setdefault(e.role, [0, 0, 0, 0])
                u[0] += 1
                u[1] += int(not e.ok and e.finish_reason != "cancelled")
                u[2] += e.prompt_tokens
                u[3] += e.completion_tokens
        if durable:
            conn.execute("PRAGMA synchronous=FULL")
        try:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO events (seq, session, t, kind, step, data) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            if kept:
                conn.executemany(
                    "INSERT OR IGNORE INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [artifact_row(a) for a in kept],
                )
            if usage:
                conn.executemany(
                    "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (session, role) "
                    "DO UPDATE SET calls = calls + excluded.calls, errors = errors + "
                    "excluded.errors, prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                    "completion_tokens = completion_tokens + excluded.completion_tokens",
                    [(self.session, role, *u) for role, u in usage.items()],
                )
            if change is not None:
                self._pool_row(*change)
            self._progress_row()
            conn.execute("COMMIT")
        finally:
            if durable:
                conn.execute("PRAGMA synchronous=NORMAL")
        self._seq = seq

    def _pool_row(self, change: PoolChange, entry: PoolEntry) -> None:
        pool = self.pipeline.pool
        now = self._now()
        a = entry.artifact
        row: tuple[str, int, str, str | None, bool, float]
        if change == "admit":
            self._conn.execute(
                "INSERT OR IGNORE INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?, ?)", artifact_row(a)
            )
            row = (change, entry.version, a.id, encode_scores(entry.scores, entry.objectives),
                   entry.speculative, entry.admitted_at)  # fmt: skip
        elif change == "confirm":
            row = (change, entry.version, a.id, encode_scores(entry.scores, entry.objectives),
                   False, now)  # fmt: skip
        else:
            row = (change, pool.version, a.id, None, False, now)
        self._conn.execute(
            "INSERT INTO pool_log (session, change, version, artifact_id, scores, speculative, t) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self.session, *row),
        )

    def _progress_row(self) -> None:
        p = self.pipeline
        next_step, ids, call_id = p.counters()
        self._conn.execute(
            "INSERT OR REPLACE INTO progress VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.session,
                self._now(),
                p.budget.wall_seconds,
                next_step,
                call_id,
                json.dumps(ids),
                p.budget.metric_calls,
                p.budget.proposals,
            ),
        )

    def _now(self) -> float:
        return max(self._t_floor, self.pipeline.clock.now())

    def _break(self, exc: BaseException) -> None:
        """Writing failed: stop the run, since what it does next could not be kept."""
        self._broken = exc
        if self.pipeline.state == "running":
            self.pipeline.stop(
                "cancel", reason=f"failed: the run store could not write to {self.path}: {exc}"
            )

    # ---- ending -------------------------------------------------------------
    def _finish(self, reason: str) -> None:
        with contextlib.suppress(RunStoreError):
            self.flush()
        if self._broken is None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute(
                    "UPDATE sessions SET ended_wall = ?, finish_reason = ? WHERE session = ?",
                    (time.time(), reason, self.session),
                )
        self.close()

    def close(self) -> None:
        """Write what is buffered, detach from the pipeline and release the directory."""
        if self._closed:
            return
        with contextlib.suppress(RunStoreError):
            self.flush()
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        with contextlib.suppress(ValueError):
            self.pipeline.pool.listeners.remove(self._on_pool)
        with self._mutex:
            with contextlib.suppress(sqlite3.Error):
                # At rest the run is one plain database file: readers then create no
                # -wal/-shm files in the directory (a reader open now keeps WAL on).
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._conn.execute("PRAGMA journal_mode=DELETE")
            self._conn.close()
        self._lock.release()


def attach(
    pipeline: Pipeline,
    run_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    config: object = None,
    memory_events: int | None = DEFAULT_MEMORY_EVENTS,
) -> RunStore:
    """Record ``pipeline``'s run in ``run_dir`` (call before ``pipeline.run()``).

    ``resume=False`` starts a new run in a new or empty directory;
    ``resume=True`` continues the run stored there: the pool, counters, budget
    spent and run clock are restored into ``pipeline``, and the steps in
    flight when it ended are re-derived. ``config`` is stored with each
    session, secrets redacted. With a store the in-memory event history is
    bounded to ``memory_events`` (when the pipeline's own is unbounded): the
    whole history stays on disk.

    Raises a :class:`~flashevolve_nb.store.errors.RunDirError` (a ValueError)
    before changing anything when the directory cannot take this run.
    """
    if pipeline.state != "created":
        raise RuntimeError("attach a run store before the run starts (pipeline.run())")
    run_dir = Path(run_dir)
    db = inspect_dir(run_dir)
    if db is None and resume:
        raise NothingToResume(
            f"no run is stored in {run_dir}; start one there without resume (no --resume)"
        )
    if db is not None:
        # Refuse a foreign or damaged file before anything (even a lock file) is written.
        conn, _ = open_reader(db)
        try:
            summary = _summary(conn)
        finally:
            conn.close()
    if db is not None and not resume:
        raise RunExists(
            f"{run_dir} already holds a run ({summary}); continue it with resume=True "
            "(--resume) or choose another directory. Nothing was changed"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        db = inspect_dir(run_dir)  # again under the lock: another process may have won
        if db is None:
            if resume:
                raise NothingToResume(f"no run is stored in {run_dir}")
            db = create_store(
                run_dir,
                {
                    "created_wall": str(time.time()),
                    "package_version": flashevolve_nb.__version__,
                    "workload": pipeline.workload.name,
                    "instance_ids": list(pipeline.pool.instance_ids),
                },
            )
        elif not resume:
            raise RunExists(f"{run_dir} already holds a run; continue it with resume=True")
        conn, info = open_writer(db)
    except BaseException:
        lock.release()
        raise
    try:
        plan = None
        if resume:
            _check_compatible(info, pipeline, db)
            plan = plan_resume(conn)
        store = RunStore(
            pipeline, run_dir, db, conn, lock, plan.session if plan else 1,
            plan.t if plan else 0.0,
        )  # fmt: skip
        rec = pipeline.recorder
        if memory_events is not None and rec.events.maxlen is None:
            rec.events = deque(rec.events, maxlen=memory_events)
        if plan is not None:
            _restore(pipeline, conn, plan)
        store._start(config, resumed=plan is not None)
        if plan is not None:
            _close_what_was_cut_off(pipeline, plan)
        store.flush()
    except BaseException:
        with contextlib.suppress(Exception):
            conn.close()
        lock.release()
        raise
    return store


def _summary(conn: sqlite3.Connection) -> str:
    sessions, reason = conn.execute(
        "SELECT count(*), (SELECT finish_reason FROM sessions ORDER BY session DESC LIMIT 1) "
        "FROM sessions"
    ).fetchone()
    admitted = conn.execute("SELECT count(*) FROM pool_log WHERE change = 'admit'").fetchone()[0]
    ended = f"last ended: {reason}" if reason else "last session did not finish"
    return f"{sessions} session(s), {admitted} admission(s), {ended}"


def _check_compatible(info: StoreMeta, pipeline: Pipeline, db: Path) -> None:
    name = pipeline.workload.name
    if info.workload != name:
        raise IncompatibleRun(
            f"{db} holds a run of workload {info.workload!r}; this pipeline runs {name!r}. "
            "Resume with the same workload, or start a new run in another directory"
        )
    ids = pipeline.pool.instance_ids
    if tuple(info.instance_ids) != tuple(ids):
        raise IncompatibleRun(
            f"{db} holds a run validated on {len(info.instance_ids)} instance(s) "
            f"({', '.join(info.instance_ids[:3])}...); this pipeline validates on {len(ids)} "
            f"({', '.join(ids[:3])}...). The stored scores would not mean the same thing: "
            "resume with the same validation set, or start a new run elsewhere"
        )


def _restore(pipeline: Pipeline, conn: sqlite3.Connection, plan: ResumePlan) -> None:
    pipeline.restore(
        plan.entries,
        version=plan.version,
        next_step=plan.next_step,
        ids=plan.ids,
        call_id=plan.call_id,
        metric_calls=plan.metric_calls,
        proposals=plan.proposals,
        t=plan.t,
        wall_seconds=plan.wall_seconds,
        redo=plan.redo,
        session=plan.session,
    )
    # The run's figures cover all of it: the recorder and the statistics see the past.
    for e in iter_events(conn):
        pipeline.recorder(e)
        pipeline.collector(e)


def _close_what_was_cut_off(pipeline: Pipeline, plan: ResumePlan) -> None:
    """Give every start the process left open its end, and report durable admissions
    whose report was lost, so the stored history reads whole."""
    bus, t = pipeline.bus, plan.t
    for c in plan.open_calls:
        bus.emit(
            LLMCallFinished(
                t=t, call_id=c.call_id, role=c.role, stage=c.stage, step=c.step, ok=False,
                prompt_tokens=0, completion_tokens=0, latency=0.0, finish_reason="cancelled",
                error=INTERRUPTED,
            )
        )  # fmt: skip
    for step, _ in plan.redo:
        bus.emit(StepFinished(t=t, step=step, outcome=f"{INTERRUPTED}; re-derived on resume"))
    for entry, step in sorted(plan.unreported, key=lambda x: x[0].version):
        a = entry.artifact
        earlier = [e.score for e in plan.entries if e.version < entry.version]
        best = max(earlier, default=float("-inf"))
        bus.emit(
            Admitted(
                t=entry.admitted_at, step=step, artifact_id=a.id, parents=a.parents,
                origin=a.origin.value, version=entry.version, score=entry.score,
                is_best=entry.score > best,
            )
        )  # fmt: skip
    pool = pipeline.pool
    for entry in [e for e in pool if e.speculative]:
        # Its full validation died with the process: withdraw it; its step is re-derived.
        pool.remove(entry.artifact.id)
        bus.emit(
            SpeculationRolledBack(
                t=t, step=-1, artifact_id=entry.artifact.id, version=pool.version,
                prefix_score=entry.score, score=float("nan"), parent_score=float("nan"),
                reason=f"{INTERRUPTED} before its full validation",
            )
        )  # fmt: skip
