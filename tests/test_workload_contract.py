"""The typed workload contract: optional capabilities are protocols the engine tests for."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path

from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine import Pipeline, PipelineConfig, Pool, StageContext, StageSpec, WorkItem
from flashevolve_nb.engine.workload import (
    DecisionPoints,
    HumanSteps,
    ModelRoles,
    PartialStages,
    PendingValidations,
    Rebasing,
    ResumableProgress,
    SeedEntry,
    StepsFromParent,
    ValidationStage,
    decision_points_of,
    partial_stages_of,
    validation_stage_of,
)

ENGINE = Path(__file__).resolve().parents[1] / "flashevolve_nb" / "engine"


class Bare:
    """A workload with nothing but the required members."""

    name = "bare"
    backend_name = "none"

    def stages(self) -> Sequence[StageSpec]:
        async def work(item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
            return []

        return (StageSpec("work", work, 1),)

    def instance_ids(self) -> Sequence[str]:
        return ["x"]

    async def seed(self, ctx: StageContext) -> Sequence[SeedEntry]:
        return []

    def begin_step(
        self, step: int, item_id: str, pool: Pool, rng: random.Random, now: float
    ) -> WorkItem | None:
        return None

    def admission(self, item: WorkItem) -> Sequence[float]:
        return ()


def test_gepa_meets_every_capability_it_has() -> None:
    workload = build_demo(DemoConfig(n_train=10, n_val=5, n_test=5)).workload
    for capability in (
        DecisionPoints, StepsFromParent, ValidationStage, PartialStages, PendingValidations,
        ModelRoles, ResumableProgress, HumanSteps,
    ):  # fmt: skip
        assert isinstance(workload, capability), capability.__name__
    assert not isinstance(workload, Rebasing)
    assert decision_points_of(workload, ("admit",)) == ("validate", "admit")
    assert validation_stage_of(workload) == "validate"
    assert partial_stages_of(workload) == ("rollout", "validate")


def test_a_bare_workload_gets_the_defaults() -> None:
    bare = Bare()
    for capability in (
        DecisionPoints, StepsFromParent, ValidationStage, PartialStages, PendingValidations,
        ModelRoles, ResumableProgress, HumanSteps, Rebasing,
    ):  # fmt: skip
        assert not isinstance(bare, capability), capability.__name__
    assert decision_points_of(bare, ("admit",)) == ("admit",)
    assert validation_stage_of(bare) is None and partial_stages_of(bare) is None
    pipeline = Pipeline(bare, PipelineConfig())
    assert pipeline.decision_points == frozenset({"admit"})


def test_the_engine_reads_no_workload_member_with_getattr() -> None:
    found = [
        f"{path.name}:{n}"
        for path in sorted(ENGINE.glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(r"getattr\([^,]*workload", line)
    ]
    assert found == []
