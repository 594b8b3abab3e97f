"""Typed events: one frozen dataclass per kind of state change.

Every event carries ``t``, the run clock's simulated seconds. Events are the
only way the outside (recorder, progress bar, dashboard, run store) learns what
happened, so each one holds what a reader needs without looking anything up.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from flashevolve_nb.engine.artifact import Artifact

__all__ = [
    "Admitted",
    "BreakerClosed",
    "BreakerHalfOpen",
    "BreakerOpened",
    "BudgetExhausted",
    "ControllerAction",
    "Event",
    "FrontierChanged",
    "GateResult",
    "HumanSubmitted",
    "ItemDropped",
    "ItemFailed",
    "ItemFinished",
    "ItemQueued",
    "ItemStarted",
    "LLMCallFinished",
    "LLMCallStarted",
    "LLMRetry",
    "PartialFoldIn",
    "PartialRelease",
    "PolicyDecision",
    "ProposalFailed",
    "ProposalMade",
    "QueueEdited",
    "RunFinished",
    "RunResumed",
    "RunStarted",
    "SpeculationConfirmed",
    "SpeculationRolledBack",
    "SpeculativeAdmitted",
    "StageControl",
    "StageStalled",
    "StaleDetected",
    "StepFinished",
    "StepRestarted",
    "StepStarted",
    "ValidationDone",
    "WorkerLost",
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
class LLMRetry(Event):
    """A backend retries call ``call_id`` after a failed attempt (rate limit, 5xx, timeout...)."""

    kind: ClassVar[str] = "llm_retry"
    call_id: int
    role: str
    stage: str
    step: int
    backend: str
    endpoint: str
    attempt: int
    """The attempt that failed, from 1."""
    cause: str
    status: int | None
    """The HTTP status, or None when no response came."""
    delay: float
    """Wall seconds before the next attempt."""


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
    """``accept``, ``patch``, ``discard`` or ``defer`` (held by the policy for later)."""
    reason: str
    tokens: int = 0
    history_ids: tuple[str, ...] = ()
    """The artifacts admitted since the item's base version: what the decision saw."""
    request: str = ""
    """For LLM decisions: the prompt sent (the whole of it)."""
    answer: str = ""
    """For LLM decisions: the model's answer, verbatim (data, never markup)."""
    artifact: Artifact | None = None
    """The stale artifact the decision was about."""
    replacement: Artifact | None = None
    """For ``patch``: the repaired artifact that goes on instead."""


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


@dataclass(frozen=True, slots=True, kw_only=True)
class HumanSubmitted(Event):
    """A person's artifact entered the run as a new evolution step (``Pipeline.submit``)."""

    kind: ClassVar[str] = "human_submitted"
    step: int
    item_id: str
    artifact_id: str
    parent_id: str
    components: tuple[str, ...]
    """The components whose text differs from the parent's."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueEdited(Event):
    """A person dropped a queued item or replaced its artifact."""

    kind: ClassVar[str] = "queue_edited"
    stage: str
    item_id: str
    step: int
    action: str
    """``drop`` or ``replace``."""
    artifact_id: str
    """The artifact the item now carries (``replace``) or carried (``drop``)."""
    replaced_id: str = ""
    """For ``replace``: the artifact that was swapped out."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PartialRelease(Event):
    """A stage handed its output on after ``released`` of its ``total`` requests finished.

    The other requests keep running; a :class:`PartialFoldIn` follows when they are in.
    """

    kind: ClassVar[str] = "partial_release"
    stage: str
    step: int
    item_id: str
    released: int
    total: int
    alpha: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PartialFoldIn(Event):
    """The rest of a partially released stage's requests are in (or were cancelled)."""

    kind: ClassVar[str] = "partial_fold_in"
    stage: str
    step: int
    item_id: str
    finished: int
    total: int
    cancelled: bool = False
    """True when the step ended first and the unfinished requests were cancelled."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeculativeAdmitted(Event):
    """A candidate entered the pool on a validation prefix, before its full evaluation.

    It can be selected as a parent at once; ``SpeculationConfirmed`` or
    ``SpeculationRolledBack`` settles it. Not an ``Admitted`` (not counted as accepted).
    """

    kind: ClassVar[str] = "speculative_admitted"
    step: int
    artifact_id: str
    parents: tuple[str, ...]
    version: int
    prefix_score: float
    """Mean score on the ``measured`` instances that had finished."""
    bar: float
    """What the prefix score had to beat: the parent's mean on the same instances."""
    measured: int
    instances: int
    provisional_score: float
    """Mean of the provisional scores (the parent's scores stand in for unmeasured instances)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeculationConfirmed(Event):
    """A speculative admission's full evaluation cleared the bar: it stays, with its full scores."""

    kind: ClassVar[str] = "speculation_confirmed"
    step: int
    artifact_id: str
    version: int
    prefix_score: float
    score: float
    parent_score: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeculationRolledBack(Event):
    """A speculative admission was withdrawn; the pool version went up to ``version``.

    Work derived from it is now stale, so the staleness policy decides about it
    at its next decision point. ``derived`` lists the queued items built on it.
    """

    kind: ClassVar[str] = "speculation_rolled_back"
    step: int
    artifact_id: str
    version: int
    prefix_score: float
    score: float | None
    """The full validation mean (None when it never came: the run ended, or it failed)."""
    parent_score: float
    reason: str
    derived: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerAction(Event):
    """The adaptive controller changed a setting (or was changed): what, from, to, and why."""

    kind: ClassVar[str] = "controller_action"
    action: str
    """``workers``, ``depth``, ``backoff``, ``tune``, ``enable`` or ``disable``."""
    stage: str
    """The stage for ``workers``; ``*`` otherwise."""
    before: str
    after: str
    reason: str
    source: str = "controller"


# ---- fault tolerance and resumption (run store, circuit breaker) --------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResumed(Event):
    """This run continues a stored one (``session`` counts from 1, the first process)."""

    kind: ClassVar[str] = "run_resumed"
    session: int
    version: int
    """The pool version restored."""
    entries: int
    """Artifacts in the restored pool."""
    metric_calls: int
    proposals: int
    """Budget already spent by the earlier sessions."""
    redo_steps: tuple[int, ...] = ()
    """Steps in flight when the earlier process ended: they are started again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRestarted(Event):
    """Step ``step`` re-derives ``previous_step``, which a process end cut off."""

    kind: ClassVar[str] = "step_restarted"
    step: int
    previous_step: int
    parent_id: str
    same_parent: bool
    """False when the workload could not start from the old parent and selected anew."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerLost(Event):
    """A stage worker ended without being asked to (it is not replaced)."""

    kind: ClassVar[str] = "worker_lost"
    stage: str
    error: str
    traceback: str
    workers_left: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StageStalled(Event):
    """A stage that should have workers has none left: the run ends instead of hanging."""

    kind: ClassVar[str] = "stage_stalled"
    stage: str
    queued: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerOpened(Event):
    """A backend failed ``failures`` times in a row: calls to it wait (or fail fast)
    for ``cooldown`` seconds, then one probe call tests it."""

    kind: ClassVar[str] = "breaker_opened"
    breaker: str
    failures: int
    error: str
    cooldown: float
    reopened: bool = False
    """True when a probe call failed (the backend is still down)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerHalfOpen(Event):
    """The cool-down is over: the next call is a probe of the backend."""

    kind: ClassVar[str] = "breaker_half_open"
    breaker: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerClosed(Event):
    """A probe succeeded: calls flow again. ``downtime`` is on the run clock."""

    kind: ClassVar[str] = "breaker_closed"
    breaker: str
    downtime: float
