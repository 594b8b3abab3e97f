"""Meta-Harness as a FlashEvolve workload: evolving the program around the model.

The artifact is a harness program (:mod:`.harness`: its interface) that
decides what to store, retrieve and show the task model; the proposer reads
the run's history directory of every earlier candidate's code, scores and
traces (:mod:`.history`) through its prompt and parser (:mod:`.prompts`);
each candidate runs in a confined process (:mod:`.sandbox`, bootstrap
:mod:`.runner`); the loop is in :mod:`.workload`, a harness family with knobs
in :mod:`.template`, the offline task and models in :mod:`.simulated`, and
the ready-made demo in :mod:`.demo` (``build_meta_harness_demo``).
"""

from __future__ import annotations

from flashevolve_nb.workloads.meta_harness.harness import COMPONENT, INTERFACE
from flashevolve_nb.workloads.meta_harness.history import CandidateRecord, HistoryDir
from flashevolve_nb.workloads.meta_harness.prompts import ParsedProposal, parse_proposal
from flashevolve_nb.workloads.meta_harness.sandbox import (
    Isolation,
    Sandbox,
    SandboxLimits,
    SandboxResult,
)
from flashevolve_nb.workloads.meta_harness.template import Knobs, read_knobs, render
from flashevolve_nb.workloads.meta_harness.workload import (
    TOKENS,
    MetaHarnessConfig,
    MetaHarnessStep,
    MetaHarnessTask,
    MetaHarnessWorkload,
)

__all__ = [
    "COMPONENT",
    "INTERFACE",
    "TOKENS",
    "CandidateRecord",
    "HistoryDir",
    "Isolation",
    "Knobs",
    "MetaHarnessConfig",
    "MetaHarnessStep",
    "MetaHarnessTask",
    "MetaHarnessWorkload",
    "ParsedProposal",
    "Sandbox",
    "SandboxLimits",
    "SandboxResult",
    "parse_proposal",
    "read_knobs",
    "render",
]
