"""The contract between the engine and an evolution algorithm.

The engine schedules; the workload knows what the stages mean. The engine
calls ``seed`` once, ``begin_step`` at the head whenever a slot is free, runs
the workload's stages in order, and asks ``admission`` for the validation
scores of an item that reached the tail. That much is :class:`Workload`.

Everything else is an optional *capability*: a small protocol a workload
meets by having the member, tested with ``isinstance`` (they are
``runtime_checkable``) or read through the typed helpers below, so that mypy
checks every use. A workload without a capability gets the default named
here.

- :class:`DecisionPoints` (``default_decision_points``): where the staleness
  policy is asked when the run's config names no points. Default: just before
  admission (``"admit"``).
- :class:`StepsFromParent` (``begin_step_from``): begin a step from a given
  parent. A resumed run re-derives a step a process end cut off from the
  same parent; without it such a step begins afresh (``begin_step``).
- :class:`ValidationStage` (``validation_stage``): the stage that scores a
  candidate on the validation set. A patched (repaired, rebased) item
  re-enters there (default: the last stage); speculative validation needs
  it; a metric-call budget must pay for the seed's sweep when there is one.
- :class:`PartialStages` (``partial_stages``): stages that can hand their
  output on early (an alpha below 1); a plain number for alpha applies to
  them. Without it an alpha < 1 needs a per-stage mapping.
- :class:`PendingValidations` (``pending_validation``): the validation still
  running for an item at admission (released early); the engine folds it in
  and may admit the candidate speculatively. Without it every item reaches
  admission with complete scores.
- :class:`ModelRoles` (``llm_for``): the model serving a role (``"task"``,
  ``"repair"``...), for policies that call one. Without it such a policy
  needs its model given explicitly.
- :class:`ResumableProgress` (``restore_progress``): a resumed run tells the
  workload how many steps earlier sessions began, so it moves its own state
  (a minibatch sampler...) past them.
- :class:`HumanSteps` (``begin_human_step``, ``with_human_artifact``): a
  person's artifact joins the run; without them human proposals are refused.
- :class:`Rebasing` (``rebase``): the workload can re-apply a stale item's
  change onto the newest artifact; the ``rebase`` staleness policy asks it.
- :class:`Objectives` (``objectives``, ``objectives_of``): objectives beyond
  the validation scores (context tokens...), which the pool's frontier and
  parent selection weigh. Without it the pool knows only the scores.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from flashevolve_nb.engine.artifact import Artifact
from flashevolve_nb.engine.items import WorkItem
from flashevolve_nb.engine.stage import StageSpec

if TYPE_CHECKING:
    from flashevolve_nb.engine.context import StageContext
    from flashevolve_nb.engine.pool import Direction, Pool
    from flashevolve_nb.engine.speculation import PendingValidation
    from flashevolve_nb.engine.staleness import Decision
    from flashevolve_nb.llm.protocol import LLM

__all__ = [
    "DecisionPoints",
    "HumanProposals",
    "HumanReplacements",
    "HumanSteps",
    "ModelRoles",
    "Objectives",
    "PartialStages",
    "PendingValidations",
    "Rebasing",
    "ResumableProgress",
    "SeedEntry",
    "StepsFromParent",
    "ValidationStage",
    "Workload",
    "decision_points_of",
    "objective_directions_of",
    "objectives_for",
    "partial_stages_of",
    "validation_stage_of",
]

SeedEntry = tuple[Artifact, Sequence[float]]


class Workload(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def backend_name(self) -> str:
        """What answers the LLM calls (``"simulated vllm"`` ...), for the record."""
        ...

    def stages(self) -> Sequence[StageSpec]: ...

    def instance_ids(self) -> Sequence[str]:
        """Validation instance ids: the pool keeps one score per id."""
        ...

    async def seed(self, ctx: StageContext) -> Sequence[SeedEntry]:
        """The starting artifacts with their validation scores."""
        ...

    def begin_step(
        self, step: int, item_id: str, pool: Pool, rng: random.Random, now: float
    ) -> WorkItem | None:
        """The first item of a new evolution step, or None when there is nothing to do."""
        ...

    def admission(self, item: WorkItem) -> Sequence[float]:
        """Validation scores (one per instance id) of ``item.artifact``, to admit it."""
        ...


@runtime_checkable
class DecisionPoints(Protocol):
    @property
    def default_decision_points(self) -> Sequence[str]:
        """Stage names (or ``"admit"``) where a stale item meets the policy by default."""
        ...


@runtime_checkable
class StepsFromParent(Protocol):
    def begin_step_from(
        self, step: int, item_id: str, parent: Artifact, pool: Pool, rng: random.Random, now: float
    ) -> WorkItem | None:
        """The first item of a step derived from ``parent`` (an admitted artifact)."""
        ...


@runtime_checkable
class ValidationStage(Protocol):
    @property
    def validation_stage(self) -> str | None:
        """The stage that scores a candidate on the validation set (None: there is none)."""
        ...


@runtime_checkable
class PartialStages(Protocol):
    @property
    def partial_stages(self) -> Sequence[str] | None:
        """Stages that can release partial output (an alpha below 1)."""
        ...


@runtime_checkable
class PendingValidations(Protocol):
    def pending_validation(self, item: WorkItem) -> PendingValidation | None:
        """The validation still running for ``item`` at admission (None: it is complete)."""
        ...


@runtime_checkable
class ModelRoles(Protocol):
    def llm_for(self, role: str) -> LLM:
        """The model serving ``role``; raises ``KeyError`` for a role it has none for."""
        ...


@runtime_checkable
class ResumableProgress(Protocol):
    def restore_progress(self, pool: Pool, steps: int) -> None:
        """A resumed run has begun ``steps`` steps in earlier sessions; ``pool`` is restored."""
        ...


@runtime_checkable
class HumanProposals(Protocol):
    """A workload that can begin a step whose proposal is a person's artifact."""

    def begin_human_step(
        self,
        step: int,
        item_id: str,
        artifact: Artifact,
        pool: Pool,
        rng: random.Random,
        now: float,
    ) -> WorkItem:
        """The first item of a step whose proposal is ``artifact`` (its parent is
        ``artifact.parents[0]``, an admitted artifact); it must still meet the
        workload's gate and validation like any proposal."""
        ...


@runtime_checkable
class HumanReplacements(Protocol):
    """A workload that knows how a queued item carries a person's artifact instead."""

    def with_human_artifact(self, item: WorkItem, artifact: Artifact) -> WorkItem:
        """``item`` (waiting in a queue) carrying a person's ``artifact`` instead."""
        ...


@runtime_checkable
class HumanSteps(HumanProposals, HumanReplacements, Protocol):
    """Optional, for workloads that let a person's artifact join a run.

    ``Pipeline.submit`` uses ``begin_human_step`` and ``Pipeline.replace_item``
    uses ``with_human_artifact`` when the workload has them; a workload without
    the first refuses human proposals, and without the second a replaced item
    just carries the new artifact.
    """


@runtime_checkable
class Rebasing(Protocol):
    """A workload whose proposals are changes that can be re-applied to a newer artifact.

    The ``rebase`` staleness policy hands a stale item over; the workload
    re-applies the item's change onto the pool's newest artifact and answers
    ``patch`` (the rebased item, anchored to the current pool version, which
    is validated before admission), ``accept`` (nothing newer to rebase onto)
    or ``discard`` (nothing of the change is left).
    """

    def rebase(self, item: WorkItem, staleness: int, ctx: StageContext) -> Decision: ...


@runtime_checkable
class Objectives(Protocol):
    """A workload whose candidates are judged on more than their validation scores.

    The pipeline declares ``objectives`` to its pool and asks ``objectives_of``
    for the values of every artifact it admits (seeds included); the pool keeps
    the front of mean score against them and parent selection weighs it.
    """

    @property
    def objectives(self) -> Mapping[str, Direction]:
        """Objective names with their direction (``{"context_tokens": "min"}``)."""
        ...

    def objectives_of(self, artifact: Artifact) -> Mapping[str, float]:
        """The measured values of ``artifact``, which is about to be admitted."""
        ...


def objective_directions_of(workload: Workload) -> dict[str, Direction]:
    """The workload's extra objectives with their directions; empty when it has none."""
    return dict(workload.objectives) if isinstance(workload, Objectives) else {}


def objectives_for(workload: Workload, artifact: Artifact) -> dict[str, float]:
    """The objective values of ``artifact`` to admit it with; empty for a workload without."""
    return dict(workload.objectives_of(artifact)) if isinstance(workload, Objectives) else {}


def decision_points_of(workload: Workload, default: Sequence[str]) -> tuple[str, ...]:
    """The workload's default decision points, else ``default``."""
    if isinstance(workload, DecisionPoints):
        return tuple(workload.default_decision_points)
    return tuple(default)


def validation_stage_of(workload: Workload) -> str | None:
    """The workload's validation stage, None when it names none."""
    return workload.validation_stage if isinstance(workload, ValidationStage) else None


def partial_stages_of(workload: Workload) -> tuple[str, ...] | None:
    """The stages that can release partial output, None when the workload names none."""
    if not isinstance(workload, PartialStages):
        return None
    partial = workload.partial_stages
    return tuple(partial) if partial is not None else None
