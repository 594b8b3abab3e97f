"""The asynchronous evolution engine: no Jupyter, no LLM vendor, no one workload.

Values: :class:`Artifact`, :class:`WorkItem`, events, snapshots (immutable).
Owners of mutable state: :class:`Pool` (admitted artifacts) and
:class:`Pipeline` (queues, workers, the run).
"""

from __future__ import annotations

from flashevolve_nb.engine.artifact import Artifact, Origin
from flashevolve_nb.engine.budget import Budget, BudgetTracker
from flashevolve_nb.engine.bus import EventBus, Recorder, events_frame
from flashevolve_nb.engine.context import StageContext
from flashevolve_nb.engine.items import WorkItem
from flashevolve_nb.engine.pipeline import (
    ADMIT,
    Pipeline,
    PipelineConfig,
    PipelineSnapshot,
    RunFailed,
)
from flashevolve_nb.engine.pool import Direction, Pool, PoolEntry, PoolSnapshot
from flashevolve_nb.engine.result import RunResult
from flashevolve_nb.engine.selection import (
    CurrentBest,
    EpsilonGreedy,
    ParentSelector,
    ParetoSelector,
    make_selector,
)
from flashevolve_nb.engine.stage import StageSnapshot, StageSpec
from flashevolve_nb.engine.staleness import AcceptPolicy, Decision, StalenessPolicy, make_policy
from flashevolve_nb.engine.stats import RunStats
from flashevolve_nb.engine.workload import (
    DecisionPoints,
    HumanSteps,
    ModelRoles,
    Objectives,
    PartialStages,
    PendingValidations,
    Rebasing,
    ResumableProgress,
    SeedEntry,
    StepsFromParent,
    ValidationStage,
    Workload,
)

__all__ = [
    "ADMIT",
    "AcceptPolicy",
    "Artifact",
    "Budget",
    "BudgetTracker",
    "CurrentBest",
    "Decision",
    "DecisionPoints",
    "Direction",
    "EpsilonGreedy",
    "EventBus",
    "HumanSteps",
    "ModelRoles",
    "Objectives",
    "Origin",
    "ParentSelector",
    "ParetoSelector",
    "PartialStages",
    "PendingValidations",
    "Pipeline",
    "PipelineConfig",
    "PipelineSnapshot",
    "Pool",
    "PoolEntry",
    "PoolSnapshot",
    "Rebasing",
    "Recorder",
    "ResumableProgress",
    "RunFailed",
    "RunResult",
    "RunStats",
    "SeedEntry",
    "StageContext",
    "StageSnapshot",
    "StageSpec",
    "StalenessPolicy",
    "StepsFromParent",
    "ValidationStage",
    "WorkItem",
    "Workload",
    "events_frame",
    "make_policy",
    "make_selector",
]
