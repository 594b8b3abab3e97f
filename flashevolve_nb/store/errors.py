"""What can go wrong with a run directory, and what to do about it.

::

    ValueError
     └── RunDirError              the directory cannot hold or give this run
          ├── ForeignRunDir       not empty, and not a flashevolve_nb run: choose another
          ├── CorruptRunDir       a run store that cannot be read safely
          ├── RunExists           a run is already there: resume it or choose another
          ├── NothingToResume     resume asked for where no run is stored
          ├── RunDirInUse         another process is writing this run right now
          └── IncompatibleRun     the stored run is of another workload or validation set
    RuntimeError
     └── RunStoreError            writing failed during a run (disk full...); the run stops

A directory is never overwritten: every ``RunDirError`` is raised before
anything in it was changed.
"""

from __future__ import annotations

from flashevolve_nb.errors import FlashEvolveError

__all__ = [
    "CorruptRunDir",
    "ForeignRunDir",
    "IncompatibleRun",
    "NothingToResume",
    "RunDirError",
    "RunDirInUse",
    "RunExists",
    "RunStoreError",
]


class RunDirError(FlashEvolveError, ValueError):
    """The run directory cannot hold or give this run; nothing in it was changed."""


class ForeignRunDir(RunDirError):
    """The directory holds files that are not a flashevolve_nb run."""


class CorruptRunDir(RunDirError):
    """The run store exists but cannot be read safely."""


class RunExists(RunDirError):
    """A run is stored there already and ``resume`` was not asked for."""


class NothingToResume(RunDirError):
    """``resume`` was asked for, but no run is stored there."""


class RunDirInUse(RunDirError):
    """Another process holds the run's lock (it is running that run now)."""


class IncompatibleRun(RunDirError):
    """The stored run cannot continue with this workload (other name or validation set)."""


class RunStoreError(FlashEvolveError, RuntimeError):
    """Writing to the run store failed during a run; the run was stopped."""
