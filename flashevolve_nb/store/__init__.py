"""The run store: a run's durable record in a run directory (SQLite, WAL mode).

A run can last hours and cost real money, so what it admitted must outlive
the process. Attach a store to a pipeline before running it::

    from flashevolve_nb import store

    rs = store.attach(pipeline, "runs/exp1", resume=False, config=my_config)
    result = await pipeline.run()          # the store closes itself at the end

    # after a crash, a kill or a kernel restart, in a new process:
    rs = store.attach(new_pipeline, "runs/exp1", resume=True)
    result = await new_pipeline.run()      # continues: same pool, budgets counted

    run = store.open_run("runs/exp1")      # read-only, also while it runs
    run.events_frame(); run.pool; run.result(); run.sessions; run.usage_frame()

``attach(pipeline, run_dir, *, resume, config=None, memory_events=50_000) -> RunStore``
    ``resume=False``: a new run in a new or empty directory. ``resume=True``:
    restores the pool, the step/id/call counters, the budget spent (metric
    calls, proposals, wall seconds) and the run clock, and re-derives the
    steps that were in flight (``StepRestarted`` events). ``config`` (any
    mapping or dataclass) is stored per session with secrets redacted.
``open_run(run_dir) -> StoredRun``
    The same events, pool and result as the live run, rebuilt from disk.

What is stored: artifacts with lineage, every pool change (admit, confirm,
remove) with per-instance scores, every event, the configuration of each
session, LLM usage per role, and the progress counters. Guarantees:

- An admission is durable before it is reported: the store listens on the
  pool itself (``Pool.listeners``) and commits with ``synchronous=FULL``
  before the pipeline emits ``Admitted``. A store that cannot write stops
  the run (``RunStoreError``) rather than let it go on unrecorded.
- Events are committed once per turn of the event loop; a killed process
  loses at most its last turn's events, never an admission.
- Pool versions are unique in the store (a unique index refuses a repeat).
- How far the pool log was committed is also noted outside the database
  (``run.durable``): a damaged write-ahead log that lost reported admissions
  is refused (``CorruptRunDir``) instead of resumed, and left untouched.
- A directory is never overwritten: a foreign, damaged, newer-format or
  busy directory, or an existing run without ``resume``, raises a
  :class:`RunDirError` (a ValueError) before anything is changed.
- Memory stays bounded on long runs: with a store, the in-memory event
  history keeps the last ``memory_events`` events; everything is on disk.

Errors::

    ValueError
     └── RunDirError  (ForeignRunDir, CorruptRunDir, RunExists, NothingToResume,
                       RunDirInUse, IncompatibleRun)
    RuntimeError
     └── RunStoreError
"""

from __future__ import annotations

from flashevolve_nb.store.errors import (
    CorruptRunDir,
    ForeignRunDir,
    IncompatibleRun,
    NothingToResume,
    RunDirError,
    RunDirInUse,
    RunExists,
    RunStoreError,
)
from flashevolve_nb.store.reader import Session, StoredRun, open_run
from flashevolve_nb.store.writer import DEFAULT_MEMORY_EVENTS, RunStore, attach

__all__ = [
    "DEFAULT_MEMORY_EVENTS",
    "CorruptRunDir",
    "ForeignRunDir",
    "IncompatibleRun",
    "NothingToResume",
    "RunDirError",
    "RunDirInUse",
    "RunExists",
    "RunStore",
    "RunStoreError",
    "Session",
    "StoredRun",
    "attach",
    "open_run",
]
