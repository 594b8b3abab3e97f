"""ACE (agentic context engineering) as a FlashEvolve workload.

The artifact is a playbook of sectioned bullets (:mod:`.playbook`); a step's
change is a delta of tags and operations (:mod:`.delta`), applied with ids
allocated at apply time and rebased onto the newest playbook when stale
(:mod:`.rebase`); the roles' prompts and parsers are in :mod:`.prompts`, the
loop in :mod:`.workload`, the offline task and models in :mod:`.simulated`,
and the ready-made demo in :mod:`.demo` (``build_ace_demo``).
"""

from __future__ import annotations

from flashevolve_nb.workloads.ace.delta import (
    Add,
    Applied,
    Delete,
    Delta,
    Merge,
    Operation,
    Tag,
    Update,
    apply_delta,
)
from flashevolve_nb.workloads.ace.playbook import Bullet, Playbook, PlaybookFormatError
from flashevolve_nb.workloads.ace.rebase import BulletIds, RebaseCounts
from flashevolve_nb.workloads.ace.workload import AceConfig, AceStep, AceTask, AceWorkload

__all__ = [
    "AceConfig",
    "AceStep",
    "AceTask",
    "AceWorkload",
    "Add",
    "Applied",
    "Bullet",
    "BulletIds",
    "Delete",
    "Delta",
    "Merge",
    "Operation",
    "Playbook",
    "PlaybookFormatError",
    "RebaseCounts",
    "Tag",
    "Update",
    "apply_delta",
]
