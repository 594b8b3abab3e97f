"""The GEPA workload end to end on the simulator, on a virtual loop clock."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from flashevolve_nb.clock import Clock
from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine import Pipeline, PipelineConfig, Pool
from flashevolve_nb.engine.budget import Budget, BudgetTracker
from flashevolve_nb.engine.events import (
    Admitted,
    GateResult,
    ProposalFailed,
    ProposalMade,
    StepFinished,
    StepStarted,
    ValidationDone,
)
from flashevolve_nb.llm.protocol import LLM, Completion, LLMError, Message
from flashevolve_nb.sim import RulebookTask, Simulator
from flashevolve_nb.workloads.gepa import EpochShuffledSampler, GepaConfig, GepaWorkload

SMALL = {"n_train": 30, "n_val": 20, "n_test": 20}


def rows(events: Sequence[Any]) -> list[tuple[Any, ...]]:
    # Times are rounded: two runs on one loop start at different loop times,
    # and (now - origin) differs in the last float bits.
    def norm(v: Any) -> Any:
        return round(v, 6) if isinstance(v, float) else v

    return [tuple((k, norm(v)) for k, v in sorted(e.to_row().items())) for e in events]


@pytest.mark.asyncio
@pytest.mark.looptime
@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_end_to_end_run_improves_on_the_seed(mode: str) -> None:
    pipeline = build_demo(DemoConfig(mode=mode, minutes=20, time_scale=1.0, **SMALL)).pipeline
    result = await pipeline.run()
    s = result.stats
    assert result.finish_reason == "max_sim_seconds=1200 reached"
    assert s.proposals > 0 and s.accepted > 0
    assert s.best_score > s.seed_score
    events = result.events
    # Every admitted child passed its gate and was validated before admission.
    passed = {e.artifact_id for e in events if isinstance(e, GateResult) and e.passed}
    validated = {e.artifact_id for e in events if isinstance(e, ValidationDone)}
    admitted = [e for e in events if isinstance(e, Admitted)]
    for e in admitted[1:]:
        assert e.artifact_id in passed and e.artifact_id in validated
    assert [e.version for e in admitted] == list(range(1, len(admitted) + 1))
    for g in (e for e in events if isinstance(e, GateResult)):
        assert g.passed == (g.child_score > g.parent_score)
    # Every step says how it ended.
    outcomes = [e.outcome for e in events if isinstance(e, StepFinished)]
    kinds = {o.split(":")[0] for o in outcomes}
    assert "admitted" in kinds and "gated out" in kinds
    assert kinds <= {
        "admitted", "gated out", "proposal failed", "skipped", "cancelled", "duplicate"
    }  # fmt: skip
    if mode == "sync":
        live = 0
        for e in events:
            live += isinstance(e, StepStarted) - isinstance(e, StepFinished)
            assert live <= 1
        assert s.inflight_peak <= 10


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_same_seed_same_events_other_seed_other_events() -> None:
    async def run(seed: int) -> list[tuple[Any, ...]]:
        cfg = DemoConfig(seed=seed, minutes=8, time_scale=1.0, **SMALL)
        pipeline = build_demo(cfg).pipeline
        return rows((await pipeline.run()).events)

    first, second, other = await run(3), await run(3), await run(4)
    assert len(first) > 200
    assert first == second
    assert first != other


class Wrapped:
    """An LLM that passes calls to a simulated one; subclasses spoil some of them."""

    name = "wrapped"
    simulated = True

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.calls = 0
        self.answered = 0

    async def chat(self, messages: Sequence[Message], **params: Any) -> Completion:
        self.calls += 1
        completion = await self.spoil(self.calls, messages, params)
        self.answered += 1  # calls cancelled at the deadline never answer
        return completion

    async def spoil(self, n: int, messages: Sequence[Message], params: Any) -> Completion:
        return await self.inner.chat(messages, **params)


class Sloppy(Wrapped):
    """Two reflection answers in three are unusable: no fence, or cut off."""

    async def spoil(self, n: int, messages: Sequence[Message], params: Any) -> Completion:
        c = await self.inner.chat(messages, **params)
        if n % 3 == 1:
            return Completion("Looks good to me, keep it.", c.usage, c.latency, "stop")
        if n % 3 == 2:
            return Completion(c.text[: len(c.text) // 2], c.usage, c.latency, "length")
        return c


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_malformed_reflections_are_recorded_and_never_adopted() -> None:
    clock = Clock(1.0)
    sim = Simulator(profile="vllm", seed=0, clock=clock)
    task = RulebookTask(seed=0, **SMALL)
    sloppy = Sloppy(sim.llm("reflection"))
    workload = GepaWorkload(
        task, task.train, task.val, task.seed_candidate(), sim.llm("task"), sloppy,
        GepaConfig(skip_perfect_score=False),
    )  # fmt: skip
    from flashevolve_nb.engine import Budget

    pipeline = Pipeline(workload, PipelineConfig(budget=Budget(max_sim_seconds=900)), clock=clock)
    result = await pipeline.run()
    failed = [e for e in result.events if isinstance(e, ProposalFailed)]
    reasons = Counter(e.reason.split(":")[0] for e in failed)
    assert reasons["malformed"] > 0 and reasons["truncated"] > 0
    assert any("no fenced block" in e.reason for e in failed)
    assert any(e.answer_excerpt == "Looks good to me, keep it." for e in failed)
    made = [e for e in result.events if isinstance(e, ProposalMade)]
    assert len(failed) >= sloppy.answered // 2
    assert len(made) + len(failed) == sloppy.answered
    # The run went on: good answers were still proposed and admitted.
    assert result.stats.accepted > 0
    assert result.stats.proposals_failed == len(failed)
    for entry in result.pool.entries:
        assert "Looks good to me" not in entry.artifact["system_prompt"]


def test_components_are_chosen_round_robin_per_parent() -> None:
    sim = Simulator(profile="vllm", seed=0)
    task = RulebookTask(seed=0, **SMALL)
    seed = {"system_prompt": "You are helpful.", "format_rules": "Be clear."}
    wl = GepaWorkload(task, task.train, task.val, seed, sim.llm("task"))
    pool = Pool(wl.instance_ids())
    from flashevolve_nb.engine import Artifact

    pool.admit(Artifact(id="s", components=seed), [0.5] * len(task.val), now=0)
    rng = random.Random(0)
    comps = [wl.begin_step(k, f"i{k}", pool, rng, 0.0).payload.component for k in range(5)]  # type: ignore[union-attr]
    assert comps == ["system_prompt", "format_rules"] * 2 + ["system_prompt"]


def test_epoch_shuffled_minibatches_cover_every_example_each_epoch() -> None:
    ids = [f"t{i}" for i in range(9)]
    sampler = EpochShuffledSampler(ids, 3, random.Random(0))
    epoch1 = [i for _ in range(3) for i in sampler.next_batch()]
    epoch2 = [i for _ in range(3) for i in sampler.next_batch()]
    assert sorted(epoch1) == sorted(epoch2) == sorted(ids)
    assert epoch1 != epoch2
    odd = EpochShuffledSampler(ids[:4], 3, random.Random(0))
    for _ in range(10):
        batch = odd.next_batch()
        assert len(batch) == len(set(batch)) == 3


def test_gepa_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="minibatch_size"):
        GepaConfig(minibatch_size=0)
    with pytest.raises(ValueError, match="candidate selection"):
        GepaConfig(candidate_selection="best-ish")
    sim = Simulator(profile="vllm", seed=0)
    task = RulebookTask(seed=0, **SMALL)
    with pytest.raises(ValueError, match="valset"):
        GepaWorkload(task, task.train, [], task.seed_candidate(), sim.llm("task"))


class Flaky(Wrapped):
    """Every fifth task call fails like an overloaded server."""

    async def spoil(self, n: int, messages: Sequence[Message], params: Any) -> Completion:
        if n % 5 == 0:
            raise LLMError("503 service unavailable (after retries)")
        return await self.inner.chat(messages, **params)


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_failed_task_calls_score_zero_and_the_run_goes_on() -> None:
    from flashevolve_nb.engine import Budget
    from flashevolve_nb.engine.events import LLMCallFinished

    clock = Clock(1.0)
    sim = Simulator(profile="vllm", seed=0, clock=clock)
    task = RulebookTask(seed=0, **SMALL)
    workload = GepaWorkload(
        task, task.train, task.val, task.seed_candidate(), Flaky(sim.llm("task")),
        sim.llm("reflection"),
    )  # fmt: skip
    pipeline = Pipeline(workload, PipelineConfig(budget=Budget(max_sim_seconds=600)), clock=clock)
    result = await pipeline.run()
    errors = [
        e for e in result.events
        if isinstance(e, LLMCallFinished) and e.finish_reason == "error"
    ]  # fmt: skip
    assert errors, "no failed call recorded"
    assert {(e.role, e.error) for e in errors} == {
        ("task", "LLMError: 503 service unavailable (after retries)")
    }
    assert result.stats.llm_errors == len(errors)
    assert result.stats.accepted > 0
    assert result.stats.items_failed == 0


@pytest.mark.asyncio
@pytest.mark.looptime
@pytest.mark.parametrize("generations", [8, None])
async def test_a_metric_call_budget_is_overshot_by_one_stage_run_at_most(
    generations: int | None,
) -> None:
    # A deep, wide async pipeline: without reservations every item in flight when the
    # budget runs out would finish and spend (tens of validations of 20 calls each).
    config = DemoConfig(minutes=600, time_scale=1.0, depth=32, max_metric_calls=300, **SMALL)
    demo = build_demo(config)
    demo.pipeline.config = replace(demo.pipeline.config, call_budget_generations=generations)
    result = await demo.pipeline.run()
    assert result.finish_reason == "max_metric_calls=300 reached"
    spent = demo.pipeline.budget.metric_calls
    assert 300 <= spent <= 300 + SMALL["n_val"]
    assert demo.pipeline.budget.reserved == 0  # every reservation was spent or given back
    assert result.stats.accepted > 0
    live = peak = 0
    for e in result.events:
        live += isinstance(e, StepStarted) - isinstance(e, StepFinished)
        peak = max(peak, live)
    if generations is None:
        assert peak > 4  # the pipeline's depth, only bounded by the committed budget
    else:
        # (300 - 20 seed calls) / (about 20 calls per step x 8) leaves one or two steps
        assert peak <= 2


def test_reservations_count_as_committed_until_spent_or_released() -> None:
    tracker = BudgetTracker(Budget(max_metric_calls=10))
    a = tracker.reserve(6)
    b = tracker.reserve(4)
    assert tracker.committed("metric_calls") and not tracker.exhausted("metric_calls")
    a.spend(2)
    a.release()  # the stage ended early: 4 unspent calls go back
    assert (tracker.metric_calls, tracker.reserved) == (2, 4)
    assert not tracker.committed("metric_calls")
    b.spend(5)  # a stage may spend past what it reserved; only its reservation is settled
    assert (tracker.metric_calls, tracker.reserved) == (7, 0)
    b.release()
    assert tracker.reserved == 0
    with pytest.raises(ValueError, match="cannot reserve"):
        tracker.reserve(-1)


def test_a_resumed_run_prices_its_steps_from_the_earlier_sessions() -> None:
    config = DemoConfig(minutes=600, time_scale=1.0, depth=16, max_metric_calls=4000, **SMALL)
    pipeline = build_demo(config).pipeline
    seed = Pool(pipeline.workload.instance_ids())
    pipeline.restore(
        seed.snapshot().entries, version=0, next_step=11, ids={}, call_id=0,
        metric_calls=400, proposals=10, t=60.0, wall_seconds=1.0,
    )  # fmt: skip
    # 400 calls over 10 steps: 40 a step, so (4000 - 400) / (40 x 16) = 5 steps in flight.
    assert pipeline.step_limit() == 5


def test_steps_are_priced_at_least_at_the_seeds_validation() -> None:
    config = DemoConfig(minutes=600, time_scale=1.0, depth=16, max_metric_calls=1000,
                        n_train=30, n_val=20, n_test=20)  # fmt: skip
    pipeline = build_demo(config).pipeline
    # Seeding cost 20 calls, then five steps were gated out at 6 calls each. Priced at
    # their mean (6), (1000 - 50) / (6 x 16) = 9 steps would start at once off the seed;
    # a step that passes its gate costs a validation more, so at least 20 it is.
    pipeline._calls_before_steps = 20
    pipeline._steps_done = 5
    pipeline.budget.restore(metric_calls=50, proposals=5, wall_seconds=0.0)
    assert pipeline.step_limit() == 2  # (1000 - 50) / (20 x 16)
    pipeline._steps_done = 1  # one accepted step: 30 calls, above the floor
    assert pipeline.step_limit() == 1  # (1000 - 50) / (30 x 16)
