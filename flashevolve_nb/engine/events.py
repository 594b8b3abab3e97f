"""Typed events: one frozen dataclass per kind of state change.

Every event carries ``t``, the run clock's simulated seconds. Events are the
only way the outside (recorder, progress bar, dashboard, run store) learns what
happened, so each one holds what a reader needs without looking anything up.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

__all__ = [
    "Admitted",
    "BudgetExhausted",
    "Event",
    "FrontierChanged",
    "GateResult",
    "ItemDropped",
    "ItemFailed",
    "ItemFinished",
    "ItemQueued",
    "ItemStarted",
    "LLMCallFinished",
    "LLMCallStarted",
    "PolicyDecision",
    "ProposalFailed",
    "ProposalMade",
    "RunFinished",
    "RunStarted",
    "StageControl",
    "StaleDetected",
    "StepFinished",
    "StepStarted",
    "ValidationDone",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    kind: ClassVar[str] = "event"
    t: float

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            row[f.name] = getattr(self, f.name)
        return row


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    mode: str
    seed: int
    workload: str
    backend: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetExhausted(Event):
    kind: ClassVar[str] = "budget_exhausted"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StepStarted(Event):
    kind: ClassVar[str] = "step_started"
    step: int
    parent_id: str
    base_version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StepFinished(Event):
    kind: ClassVar[str] = "step_finished"
    step: int
    outcome: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemQueued(Event):
    kind: ClassVar[str] = "item_queued"
    stage: str
    item_id: str
    step: int
    depth: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemStarted(Event):
    kind: ClassVar[str] = "item_started"
    stage: str
    item_id: str
    step: int
    waited: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemFinished(Event):
    kind: ClassVar[str] = "item_finished"
    stage: str
    item_id: str
    step: int
    outputs: int
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemDropped(Event):
    kind: ClassVar[str] = "item_dropped"
    stage: str
    item_id: str
    step: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemFailed(Event):
    kind: ClassVar[str] = "item_failed"
    stage: str
    item_id: str
    step: int
    error: str
    traceback: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMCallStarted(Event):
    kind: ClassVar[str] = "llm_call_started"
    call_id: int
    role: str
    stage: str
    step: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMCallFinished(Event):
    """``finish_reason`` is the model's (``stop``, ``length``) or ``error`` / ``cancelled``."""

    kind: ClassVar[str] = "llm_call_finished"
    call_id: int
    role: str
    stage: str
    step: int
    ok: bool
    prompt_tokens: int
    completion_tokens: int
    latency: float
    finish_reason: str
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposalMade(Event):
    kind: ClassVar[str] = "proposal_made"
    step: int
    artifact_id: str
    parent_id: str
    component: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposalFailed(Event):
    kind: ClassVar[str] = "proposal_failed"
    step: int
    parent_id: str
    component: str
    reason: str
    answer_excerpt: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GateResult(Event):
    kind: ClassVar[str] = "gate_result"
    step: int
    artifact_id: str
    parent_id: str
    parent_score: float
    child_score: float
    passed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationDone(Event):
    kind: ClassVar[str] = "validation_done"
    step: int
    artifact_id: str
    score: float
    instances: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StaleDetected(Event):
    kind: ClassVar[str] = "stale_detected"
    step: int
    item_id: str
    artifact_id: str
    point: str
    base_version: int
    pool_version: int
    staleness: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyDecision(Event):
    kind: ClassVar[str] = "policy_decision"
    step: int
    item_id: str
    artifact_id: str
    point: str
    policy: str
    staleness: int
    decision: str
    reason: str
    tokens: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Admitted(Event):
    kind: ClassVar[str] = "admitted"
    step: int
    artifact_id: str
    parents: tuple[str, ...]
    origin: str
    version: int
    score: float
    is_best: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class FrontierChanged(Event):
    kind: ClassVar[str] = "frontier_changed"
    version: int
    front_size: int
    best_id: str
    best_score: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StageControl(Event):
    """A change of a stage's or the run's settings, by a person or a controller."""

    kind: ClassVar[str] = "stage_control"
    stage: str
    action: str
    value: str
    source: str = "user"
