"""The run directory's layout, the SQLite schema and the checks that refuse foreign files.

A run directory holds ``run.sqlite`` (with its ``-wal`` and ``-shm`` files
while open) and ``run.lock``. The database says what it is twice: SQLite's
``application_id`` header field and a ``meta`` row ``format``; a file that
lacks either is not ours and is never written to. ``format_version`` lets a
newer package refuse, rather than misread, a store it does not know.

A new store is built under a temporary name and renamed into place once its
schema and identity are committed, so a crash during creation leaves no
half-made ``run.sqlite`` that would later look corrupt.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from flashevolve_nb.store.errors import (
    CorruptRunDir,
    ForeignRunDir,
    RunDirError,
    RunDirInUse,
)

__all__ = [
    "APPLICATION_ID",
    "DB_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "LOCK_NAME",
    "RunLock",
    "StoreMeta",
    "create_store",
    "inspect_dir",
    "open_reader",
    "open_writer",
    "record_durable",
]

DB_NAME = "run.sqlite"
LOCK_NAME = "run.lock"
FORMAT = "flashevolve_nb.run"
FORMAT_VERSION = 1
APPLICATION_ID = 0x46455652  # "FEVR"
DURABLE_NAME = "run.durable"
_CREATING = DB_NAME + ".creating"
WORKLOAD_DIR = "workload"
"""A folder of a run directory that belongs to the workload (Meta-Harness keeps every
candidate's code, scores and traces there, so a resumed run reads them again)."""
_OURS = {
    DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", LOCK_NAME, _CREATING, DURABLE_NAME,
    DURABLE_NAME + ".tmp", WORKLOAD_DIR,
}  # fmt: skip

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sessions (
    session INTEGER PRIMARY KEY,
    started_wall REAL NOT NULL,
    pid INTEGER NOT NULL,
    resumed INTEGER NOT NULL,
    config TEXT NOT NULL,
    ended_wall REAL,
    finish_reason TEXT
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    session INTEGER NOT NULL,
    t REAL NOT NULL,
    kind TEXT NOT NULL,
    step INTEGER,
    data TEXT NOT NULL
);
CREATE INDEX events_by_kind ON events (kind, step);
CREATE TABLE artifacts (
    id TEXT PRIMARY KEY,
    components TEXT NOT NULL,
    parents TEXT NOT NULL,
    origin TEXT NOT NULL,
    base_version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    note TEXT NOT NULL,
    meta TEXT NOT NULL
);
CREATE TABLE pool_log (
    seq INTEGER PRIMARY KEY,
    session INTEGER NOT NULL,
    change TEXT NOT NULL CHECK (change IN ('admit', 'remove', 'confirm')),
    version INTEGER NOT NULL,
    artifact_id TEXT NOT NULL,
    scores TEXT,
    speculative INTEGER NOT NULL,
    t REAL NOT NULL
);
-- Every admission and removal has its own pool version: a repeat is refused here.
CREATE UNIQUE INDEX pool_versions ON pool_log (version) WHERE change != 'confirm';
CREATE TABLE usage (
    session INTEGER NOT NULL,
    role TEXT NOT NULL,
    calls INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    PRIMARY KEY (session, role)
);
CREATE TABLE progress (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    session INTEGER NOT NULL,
    t REAL NOT NULL,
    wall_seconds REAL NOT NULL,
    next_step INTEGER NOT NULL,
    call_id INTEGER NOT NULL,
    ids TEXT NOT NULL,
    metric_calls INTEGER NOT NULL,
    proposals INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class StoreMeta:
    """Who the stored run is: checked on resume against the pipeline about to continue it."""

    format_version: int
    created_wall: float
    package_version: str
    workload: str
    instance_ids: tuple[str, ...]


def inspect_dir(run_dir: Path) -> Path | None:
    """The run store in ``run_dir``; None if the directory is missing or empty of runs.

    Raises :class:`ForeignRunDir` for a directory with other files in it.
    """
    if not run_dir.exists():
        return None
    if not run_dir.is_dir():
        raise ForeignRunDir(f"{run_dir} is a file, not a run directory; give a directory path")
    db = run_dir / DB_NAME
    if db.exists():
        return db
    others = sorted(p.name for p in run_dir.iterdir() if p.name not in _OURS)
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise ForeignRunDir(
            f"{run_dir} is not empty and holds no flashevolve_nb run (found {shown}); "
            "choose a new or empty directory"
        )
    return None


def _check_identity(conn: sqlite3.Connection, db: Path) -> StoreMeta:
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise CorruptRunDir(
            f"{db} is not a readable SQLite database ({exc}); it was left untouched. "
            "Choose another run directory"
        ) from None
    if app_id != APPLICATION_ID or "meta" not in tables:
        raise ForeignRunDir(
            f"{db} is an SQLite database but not a flashevolve_nb run store; it was left "
            "untouched. Choose another run directory"
        )
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as exc:
        raise CorruptRunDir(f"{db}: cannot read its identity ({exc})") from None
    if meta.get("format") != FORMAT:
        raise ForeignRunDir(
            f"{db} is not a flashevolve_nb run store (format {meta.get('format')!r})"
        )
    try:
        version = int(meta["format_version"])
        info = StoreMeta(
            format_version=version,
            created_wall=float(meta["created_wall"]),
            package_version=meta["package_version"],
            workload=meta["workload"],
            instance_ids=tuple(json.loads(meta["instance_ids"])),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise CorruptRunDir(f"{db}: its identity rows are damaged ({exc!r})") from None
    if version > FORMAT_VERSION:
        raise RunDirError(
            f"{db} was written in store format {version} by flashevolve_nb "
            f"{info.package_version}; this package reads format {FORMAT_VERSION} at most. "
            "Upgrade flashevolve_nb to open it"
        )
    missing = {"sessions", "events", "artifacts", "pool_log", "usage", "progress"} - tables
    if missing:
        raise CorruptRunDir(f"{db} lacks table(s) {sorted(missing)}; it was left untouched")
    return info


def _quick_check(conn: sqlite3.Connection, db: Path) -> None:
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        raise CorruptRunDir(f"{db} is damaged ({exc}); it was left untouched") from None
    if rows != [("ok",)]:
        shown = "; ".join(str(r[0]) for r in rows[:3])
        raise CorruptRunDir(f"{db} failed SQLite's integrity check ({shown}); left untouched")


def record_durable(run_dir: Path, conn: sqlite3.Connection) -> None:
    """Note, outside the database and its WAL, how far the committed pool log reaches.

    Called after every pool change is committed. A WAL damaged later (a bad disk,
    a stray write) makes SQLite drop every commit from the damage on without a
    word; :func:`open_reader` compares the store with this note and refuses it.
    """
    changes, version = conn.execute(
        "SELECT count(*), coalesce(max(version), 0) FROM pool_log"
    ).fetchone()
    tmp = run_dir / (DURABLE_NAME + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"pool_changes": int(changes), "pool_version": int(version)}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, run_dir / DURABLE_NAME)


def _read_durable(db: Path) -> tuple[int, int] | None:
    try:
        data = json.loads((db.parent / DURABLE_NAME).read_text())
        return int(data["pool_changes"]), int(data["pool_version"])
    except FileNotFoundError:
        return None  # a store from before the note, or no pool change yet
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptRunDir(
            f"{db.parent / DURABLE_NAME} (how far {db.name} was committed) is unreadable "
            f"({exc!r}); the run was left untouched"
        ) from None


def _check_durable(conn: sqlite3.Connection, db: Path, noted: tuple[int, int] | None) -> None:
    if noted is None:
        return
    try:
        changes, version = conn.execute(
            "SELECT count(*), coalesce(max(version), 0) FROM pool_log"
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise CorruptRunDir(f"{db} is damaged ({exc}); it was left untouched") from None
    if changes < noted[0] or version < noted[1]:
        raise CorruptRunDir(
            f"{db} holds {changes} pool changes up to version {version}, but {noted[0]} up to "
            f"version {noted[1]} were committed: its write-ahead log ({db.name}-wal) is "
            "damaged and admissions that were reported durable are missing. The run was left "
            "untouched; restore the directory from a backup, or read what is left with a "
            "copy of it"
        )


def open_reader(db: Path) -> tuple[sqlite3.Connection, StoreMeta]:
    """A read-only connection to a checked store (safe while a writer runs)."""
    # The note first: a writer commits before it writes the note, so the store read
    # after it is never behind it unless something was lost.
    noted = _read_durable(db)
    try:
        conn = sqlite3.connect(
            f"{db.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
        )
    except sqlite3.DatabaseError as exc:
        raise CorruptRunDir(f"cannot open {db} ({exc})") from None
    try:
        info = _check_identity(conn, db)
        _quick_check(conn, db)
        _check_durable(conn, db, noted)
    except BaseException:
        conn.close()
        raise
    return conn, info


def open_writer(db: Path) -> tuple[sqlite3.Connection, StoreMeta]:
    """A connection for the one process that writes the run (hold its :class:`RunLock`)."""
    conn, _ = open_reader(db)  # refuse foreign or damaged files before writing anything
    conn.close()
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    try:
        info = _check_identity(conn, db)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL: each commit survives the process being killed; pool changes are
        # committed with FULL so that they also survive a power cut (see writer).
        conn.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn, info


def create_store(run_dir: Path, meta: dict[str, Any]) -> Path:
    """Build a new, empty store in ``run_dir`` and move it into place atomically."""
    tmp = run_dir / _CREATING
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a creation cut short earlier: ours, and holding nothing
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.executescript("BEGIN;" + _SCHEMA + "COMMIT;")
        rows = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            **{k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()},
        }
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", rows.items())
        conn.execute("COMMIT")
    finally:
        conn.close()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    db = run_dir / DB_NAME
    os.rename(tmp, db)
    with contextlib.suppress(OSError):  # make the rename itself durable where we can
        fd = os.open(run_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return db


class RunLock:
    """An exclusive lock on a run directory, held by the process writing the run.

    ``flock`` locks go away with the process that held them, so a killed run
    never leaves its directory locked.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        f = open(self.path, "a+")  # noqa: SIM115 - held open for as long as the lock
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, a second writer is not detected
            self._file = f
            return
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunDirInUse(
                f"{self.path.parent} is being written by {holder}; wait for it to end or "
                "stop it, or open the run read-only with open_run()"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None

    @staticmethod
    def held(run_dir: Path) -> bool:
        """Whether some process holds the lock now (the run is being written)."""
        path = run_dir / LOCK_NAME
        if not path.exists():
            return False
        try:
            import fcntl
        except ImportError:
            return False
        with open(path) as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return False
