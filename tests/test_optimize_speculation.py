"""``flashevolve_nb.optimize`` with speculative completion (one GEPA core, issue 17).

The adapter path shares GEPA's step with the LLM-task workload, so an
``optimize()`` run can release its validation early and admit on the prefix,
as the demo does; the metric budget stays a hard cap (the engine budget's
hard-cap mode, one count).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

gepa = pytest.importorskip("gepa")

from gepa.adapters.default_adapter.default_adapter import DefaultAdapter  # noqa: E402

import flashevolve_nb  # noqa: E402
from flashevolve_nb.compat import SimulatedModels, prepare  # noqa: E402
from flashevolve_nb.compat.simulated import RulebookData, rulebook_for_gepa  # noqa: E402
from flashevolve_nb.engine.budget import HardCap  # noqa: E402
from flashevolve_nb.engine.events import (  # noqa: E402
    PartialRelease,
    SpeculationConfirmed,
    SpeculationRolledBack,
    SpeculativeAdmitted,
)
from flashevolve_nb.engine.speculation import SpeculationConfig  # noqa: E402
from flashevolve_nb.engine.workload import (  # noqa: E402
    DecisionPoints,
    HumanSteps,
    ModelRoles,
    PartialStages,
    PendingValidations,
    ResumableProgress,
    StepsFromParent,
    ValidationStage,
    partial_stages_of,
)
from flashevolve_nb.workloads.gepa.core import GepaCore  # noqa: E402


@pytest.fixture
def data() -> RulebookData:
    return rulebook_for_gepa(seed=0, n_train=24, n_val=12, n_test=4)


@pytest.fixture
def models() -> Iterator[SimulatedModels]:
    with SimulatedModels(profile="vllm", seed=0, time_scale=3000.0) as m:
        yield m


def test_optimize_speculates_on_validation_and_keeps_the_hard_cap(
    data: RulebookData, models: SimulatedModels
) -> None:
    result = flashevolve_nb.optimize(
        seed_candidate=data.seed_candidate,
        trainset=data.train,
        valset=data.val,
        adapter=DefaultAdapter(model=models.task_lm, evaluator=data.evaluator),
        reflection_lm=models.reflection_lm,
        max_metric_calls=300,
        seed=0,
        split_batches=6,
        speculation=0.5,
    )
    assert result.run is not None
    kinds = Counter(type(e).__name__ for e in result.run.events)
    assert kinds[PartialRelease.__name__] > 0, "validation never released early"
    assert kinds[SpeculativeAdmitted.__name__] > 0
    settled = kinds[SpeculationConfirmed.__name__] + kinds[SpeculationRolledBack.__name__]
    assert settled == kinds[SpeculativeAdmitted.__name__]
    # One count: what the model answered is what the budget counted, never above the cap.
    assert 0 < result.total_metric_calls <= 300
    assert models.calls["task"] == result.total_metric_calls
    # Every candidate in gepa's state has its full validation scores.
    for subs, mean in zip(result.val_subscores, result.val_aggregate_scores, strict=True):
        assert len(subs) == 12 and mean == pytest.approx(sum(subs.values()) / 12)


def test_speculation_options_reach_the_pipeline_and_the_budget_is_the_runs(
    data: RulebookData, models: SimulatedModels
) -> None:
    opt = prepare(
        seed_candidate=data.seed_candidate,
        trainset=data.train,
        valset=data.val,
        adapter=DefaultAdapter(model=models.task_lm, evaluator=data.evaluator),
        reflection_lm=models.reflection_lm,
        max_metric_calls=100,
        speculation=SpeculationConfig(alpha={"validate": 0.25}, validation=True),
    )
    try:
        wl = opt.workload
        assert isinstance(wl, GepaCore)
        # One core: the adapter workload has the typed capabilities the LLM one has.
        for capability in (
            DecisionPoints, StepsFromParent, ValidationStage, PartialStages,
            PendingValidations, ModelRoles, ResumableProgress, HumanSteps,
        ):  # fmt: skip
            assert isinstance(wl, capability), capability.__name__
        assert partial_stages_of(wl) == ("validate",)
        assert opt.pipeline.speculation.alpha("validate") == 0.25
        assert opt.pipeline.speculation.validation
        assert isinstance(opt.workload.budget, HardCap)
        assert opt.workload.budget is opt.pipeline.budget.hard_cap
        assert opt.workload.budget.tracker is opt.pipeline.budget
        with pytest.raises(ValueError, match="rollout"):
            opt.pipeline.speculation.set_alpha("rollout", 0.5)
    finally:
        opt.close()
    with pytest.raises(TypeError, match="speculation"):
        prepare(
            seed_candidate=data.seed_candidate, trainset=data.train, valset=data.val,
            adapter=DefaultAdapter(model=models.task_lm, evaluator=data.evaluator),
            reflection_lm=models.reflection_lm, max_metric_calls=100,
            speculation="fast",  # type: ignore[arg-type]
        )  # fmt: skip


# ---- the LLM-task evaluator under the same hard cap ---------------------------------
@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_llm_task_workload_keeps_a_hard_metric_cap_with_speculation() -> None:
    from flashevolve_nb.demo import DemoConfig, build_demo
    from flashevolve_nb.engine import Budget, Pipeline, PipelineConfig
    from flashevolve_nb.engine.events import StepFinished

    demo = build_demo(DemoConfig(mode="async", minutes=60, time_scale=1.0, n_train=30, n_val=20))
    pipeline = Pipeline(
        demo.pipeline.workload,
        PipelineConfig(
            depth=8,
            budget=Budget(max_metric_calls=200, hard_metric_cap=True),
            speculation=SpeculationConfig(alpha=0.5, validation=True),
        ),
        clock=demo.pipeline.clock,
    )
    result = await pipeline.run()
    assert 0 < pipeline.budget.metric_calls <= 200
    assert pipeline.budget.hard_cap.reserved == 0, "every step gave back what it held"
    assert any(isinstance(e, SpeculativeAdmitted) for e in result.events)
    outcomes = {e.outcome.split(":")[0] for e in result.events if isinstance(e, StepFinished)}
    assert "admitted" in outcomes or "admitted (speculation confirmed)" in outcomes
