"""The contract between the engine and an evolution algorithm.

The engine schedules; the workload knows what the stages mean. The engine
calls ``seed`` once, ``begin_step`` at the head whenever a slot is free, runs
the workload's stages in order, and asks ``admission`` for the validation
scores of an item that reached the tail.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from flashevolve_nb.engine.artifact import Artifact
from flashevolve_nb.engine.items import WorkItem
from flashevolve_nb.engine.stage import StageSpec

if TYPE_CHECKING:
    from flashevolve_nb.engine.context import StageContext
    from flashevolve_nb.engine.pool import Pool

__all__ = ["HumanSteps", "SeedEntry", "Workload"]

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


class HumanSteps(Protocol):
    """Optional, for workloads that let a person's artifact join a run.

    ``Pipeline.submit`` and ``Pipeline.replace_item`` use these when the
    workload has them; a workload without them refuses human proposals (and
    a replaced item just carries the new artifact).
    """

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

    def with_human_artifact(self, item: WorkItem, artifact: Artifact) -> WorkItem:
        """``item`` (waiting in a queue) carrying a person's ``artifact`` instead."""
        ...
