"""A small workload for testing the engine's scheduling without any LLM.

Three stages that each take a fixed simulated time; the tests make stages
fail, drop items or count budget through the hooks below.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from flashevolve_nb.engine import (
    Artifact,
    Origin,
    Pool,
    StageContext,
    StageSpec,
    WorkItem,
)
from flashevolve_nb.engine.workload import SeedEntry


@dataclass
class ToyWorkload:
    durations: dict[str, float] = field(default_factory=lambda: {"a": 1.0, "b": 2.0, "c": 3.0})
    workers: int = 2
    fail_when: Callable[[str, WorkItem], bool] = lambda stage, item: False
    drop_when: Callable[[str, WorkItem], bool] = lambda stage, item: False
    max_steps: int | None = None
    log: list[tuple[str, int, float, float]] = field(default_factory=list)
    n_instances: int = 3

    name: str = "toy"
    backend_name: str = "none"

    def stages(self) -> Sequence[StageSpec]:
        return [
            StageSpec(
                s,
                self._make(s),
                self.workers,
                frozenset({"metric_calls", "proposals"} if i == 0 else {"metric_calls"}),
            )
            for i, s in enumerate(self.durations)
        ]

    def _make(self, stage: str):  # type: ignore[no-untyped-def]
        async def fn(item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
            t0 = ctx.now()
            await asyncio.sleep(self.durations[stage])
            ctx.count_metric_calls(1)
            self.log.append((stage, item.step, t0, ctx.now()))
            if self.fail_when(stage, item):
                raise RuntimeError(f"boom in {stage} at step {item.step}")
            if self.drop_when(stage, item):
                return []
            if stage == next(iter(self.durations)):
                child = item.artifact.derive(
                    ctx.new_id("a"),
                    {"text": f"step {item.step}"},
                    origin=Origin.PROPOSAL,
                    base_version=item.base_version,
                    created_at=ctx.now(),
                )
                ctx.count_proposal()
                return [item.evolve(artifact=child)]
            return [item]

        return fn

    def instance_ids(self) -> Sequence[str]:
        return [f"v{i}" for i in range(self.n_instances)]

    async def seed(self, ctx: StageContext) -> Sequence[SeedEntry]:
        art = Artifact(id=ctx.new_id("a"), components={"text": "seed"}, origin=Origin.SEED)
        return [(art, [0.0] * self.n_instances)]

    def begin_step(
        self, step: int, item_id: str, pool: Pool, rng: random.Random, now: float
    ) -> WorkItem | None:
        if self.max_steps is not None and step > self.max_steps:
            return None
        parent = pool.best().artifact
        return WorkItem(item_id, step, pool.version, parent, created_at=now)

    def admission(self, item: WorkItem) -> Sequence[float]:
        # Later steps score higher so that the best moves.
        return [item.step / 100.0] * self.n_instances
