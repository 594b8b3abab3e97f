"""The ACE workload end to end on the simulator, on a virtual loop clock."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine import (
    Artifact,
    Origin,
    Pipeline,
    PipelineConfig,
    StageContext,
    WorkItem,
)
from flashevolve_nb.engine.events import (
    Admitted,
    ItemFailed,
    PolicyDecision,
    ProposalFailed,
    ProposalMade,
    StepFinished,
    ValidationDone,
)
from flashevolve_nb.engine.workload import (
    DecisionPoints,
    ModelRoles,
    Rebasing,
    ResumableProgress,
    StepsFromParent,
    ValidationStage,
)
from flashevolve_nb.llm.protocol import LLM, Completion, Message
from flashevolve_nb.sim import Simulator
from flashevolve_nb.workloads.ace import AceStep, AceWorkload, Add, Delta, Playbook, Tag
from flashevolve_nb.workloads.ace.demo import build_ace_demo
from flashevolve_nb.workloads.ace.playbook import normalise
from flashevolve_nb.workloads.ace.prompts import CURATOR_MARKER
from flashevolve_nb.workloads.ace.simulated import AceSimulatedLLM

SMALL: dict[str, Any] = {"n_train": 30, "n_val": 20, "n_test": 20, "time_scale": 1.0}

pytestmark = [pytest.mark.asyncio, pytest.mark.looptime]


def rows(events: Sequence[Any]) -> list[tuple[Any, ...]]:
    def norm(v: Any) -> Any:
        return round(v, 6) if isinstance(v, float) else v

    return [tuple((k, norm(v)) for k, v in sorted(e.to_row().items())) for e in events]


async def test_the_ace_workload_meets_its_capabilities() -> None:
    workload = build_ace_demo(DemoConfig(**SMALL)).workload
    for capability in (
        Rebasing, ValidationStage, DecisionPoints, StepsFromParent, ModelRoles, ResumableProgress
    ):  # fmt: skip
        assert isinstance(workload, capability)
    assert workload.llm_for("curator") is workload.curator_lm
    with pytest.raises(KeyError, match="roles: generator, reflector, curator"):
        workload.llm_for("judge")


async def test_an_async_ace_run_admits_improving_playbooks() -> None:
    demo = build_ace_demo(DemoConfig(minutes=20, **SMALL))
    result = await demo.run()
    s = result.stats
    assert result.finish_reason == "max_sim_seconds=1200 reached"
    assert s.proposals > 10 and s.accepted > 2
    assert s.best_score > s.seed_score + 0.3
    events = result.events
    validated = {e.artifact_id: e.score for e in events if isinstance(e, ValidationDone)}
    admitted = [e for e in events if isinstance(e, Admitted)]
    assert [e.version for e in admitted] == list(range(1, len(admitted) + 1))
    scores: dict[str, float] = {}
    for e in admitted:
        scores[e.artifact_id] = e.score
        art = demo.pipeline.pool.entry(e.artifact_id).artifact
        pb = Playbook.parse(art["playbook"])  # every admitted playbook parses
        assert len({normalise(b.content) for b in pb}) == len(pb)
        if e.origin == "seed":
            continue
        assert e.artifact_id in validated
        # Admitted only when it beat its parent on the validation set.
        assert e.score > scores[art.parents[0]]
        # New bullets got their ids when the delta was applied, from the run's counter.
        assert set(art.meta["ace"]["added"]) <= set(pb.ids())
    made = [e for e in events if isinstance(e, ProposalMade)]
    assert len(made) == s.proposals
    kinds = Counter(e.outcome.split(":")[0] for e in events if isinstance(e, StepFinished))
    assert kinds["admitted"] == s.accepted and kinds["not better"] > 0
    assert set(kinds) <= {
        "admitted", "not better", "proposal failed", "no change", "skipped", "cancelled",
        "duplicate",
    }  # fmt: skip


async def test_same_seed_same_run_other_seed_other_run() -> None:
    async def run(seed: int) -> list[tuple[Any, ...]]:
        demo = build_ace_demo(DemoConfig(minutes=8, seed=seed, policy="rebase", **SMALL))
        return rows((await demo.run()).events)

    first = await run(3)
    assert first == await run(3)
    assert first != await run(4)


async def test_the_rebase_policy_rebases_stale_deltas_onto_the_best_playbook() -> None:
    demo = build_ace_demo(DemoConfig(minutes=20, policy="rebase", depth=24, **SMALL))
    result = await demo.run()
    decisions = [e for e in result.events if isinstance(e, PolicyDecision)]
    assert decisions and {d.policy for d in decisions} == {"rebase"}
    patched = [d for d in decisions if d.decision == "patch"]
    assert patched and all(d.reason.startswith("rebased onto ") for d in patched)
    for d in patched:
        assert d.replacement is not None and d.replacement.origin == "repair"
        assert d.replacement.meta["ace"]["rebased_from"] == d.artifact_id
    counts = demo.workload.rebase_counts
    assert counts.rebased == len(patched)
    assert counts.duplicates > 0  # stale deltas re-proposed bullets added meanwhile
    # Rebased playbooks reach the pool, and every admitted one is free of duplicates.
    origins = Counter(e.origin for e in result.events if isinstance(e, Admitted))
    assert origins["repair"] > 0
    assert result.stats.best_score > result.stats.seed_score + 0.3


async def test_rebase_re_applies_a_stale_delta_with_its_tags_and_duplicates() -> None:
    demo = build_ace_demo(DemoConfig(**SMALL))
    pipeline, workload = demo.pipeline, demo.workload
    pool = pipeline.pool
    n = len(workload.instance_ids())
    seed_pb = Playbook.parse("## formatting\n[b-1] helpful=0 harmful=0 :: Use ISO dates.\n")
    seed = pipeline.new_id("a")
    seed_art = Artifact(seed, {"playbook": seed_pb.render()})
    pool.admit(seed_art, [0.1] * n, 0.0)
    newer = seed_art.derive(
        "a-new",
        {"playbook": seed_pb.render() + "[b-2] helpful=0 harmful=0 :: End with DONE.\n"},
        origin=Origin.PROPOSAL,
        base_version=1,
        created_at=0.0,
    )
    pool.admit(newer, [0.5] * n, 0.0)
    stale_child = seed_art.derive(
        "a-stale",
        {"playbook": "## formatting\n"},
        origin=Origin.PROPOSAL,
        base_version=1,
        created_at=0.0,
    )
    delta = Delta(
        (Add("formatting", "end with done"), Add("formatting", "No commas.")),
        (Tag("b-1", "helpful"),),
    )
    item = WorkItem("i1", 1, 1, stale_child, AceStep(seed, ("train-000",), delta=delta))
    ctx = StageContext(pipeline, "policy:admit", 1, "k")
    decision = workload.rebase(item, 1, ctx)
    assert decision.action == "patch" and decision.replacement is not None
    new = decision.replacement
    assert new.base_version == pool.version and new.artifact.parents == ("a-new",)
    pb = Playbook.parse(new.artifact["playbook"])
    assert [b.content for b in pb] == ["Use ISO dates.", "End with DONE.", "No commas."]
    assert pb.get("b-1").helpful == 1  # type: ignore[union-attr]
    assert "1 duplicate(s) skipped" in decision.reason
    assert new.payload.parent_id == "a-new" and new.payload.rebased_from == "a-stale"
    # Its parent still the best: nothing to rebase onto.
    fresh = item.evolve(payload=AceStep("a-new", ("train-000",), delta=delta))
    assert workload.rebase(fresh, 1, ctx).action == "accept"
    # Everything already there: nothing left.
    dup = item.evolve(
        payload=AceStep(seed, ("train-000",), delta=Delta((Add("x", "Use ISO dates"),)))
    )
    assert workload.rebase(dup, 1, ctx).action == "discard"


class _BrokenCurator:
    """The simulated curator, except that every other answer is prose instead of JSON."""

    def __init__(self, inner: AceSimulatedLLM) -> None:
        self.inner = inner
        self.calls = 0

    @property
    def name(self) -> str:
        return "broken curator"

    @property
    def simulated(self) -> bool:
        return True

    async def chat(self, messages: Sequence[Message], **params: Any) -> Completion:
        completion = await self.inner.chat(messages, **params)
        assert CURATOR_MARKER in messages[-1]["content"]
        self.calls += 1
        if self.calls % 2:
            return Completion("I think we should add a bullet.", completion.usage,
                              completion.latency, "stop", completion.model)  # fmt: skip
        return completion


async def test_a_malformed_curator_answer_fails_its_step_with_a_reason_not_the_run() -> None:
    sim = Simulator(seed=0)
    llms: dict[str, LLM] = {
        "generator": AceSimulatedLLM(sim, "generator"),
        "reflector": AceSimulatedLLM(sim, "reflector"),
        "curator": _BrokenCurator(AceSimulatedLLM(sim, "curator")),
    }
    demo = build_ace_demo(DemoConfig(minutes=15, **SMALL), llms=llms)
    result = await demo.run()
    failed = [e for e in result.events if isinstance(e, ProposalFailed)]
    assert failed and all(e.component == "playbook" for e in failed)
    broken = llms["curator"]
    assert isinstance(broken, _BrokenCurator) and broken.calls > 4
    prose = [e for e in failed if e.reason == "no JSON object in the answer"]
    assert len(prose) >= (broken.calls + 1) // 2  # (the simulated curator errs now and then too)
    assert {e.answer_excerpt for e in prose} >= {"I think we should add a bullet."}
    outcomes = [e.outcome for e in result.events if isinstance(e, StepFinished)]
    assert "proposal failed: no JSON object in the answer" in outcomes
    assert not any(isinstance(e, ItemFailed) for e in result.events)
    assert result.finish_reason == "max_sim_seconds=900 reached"
    assert result.stats.accepted > 0


async def test_the_rebase_policy_refuses_a_workload_that_cannot_rebase() -> None:
    demo = build_demo(
        DemoConfig(minutes=10, policy="rebase", staleness_lab=True, alpha=1.0, **SMALL)
    )
    result = await demo.run()
    failed = [e for e in result.events if isinstance(e, ItemFailed)]
    assert failed
    assert all("needs a workload that can rebase" in e.error for e in failed)
    assert result.finish_reason == "max_sim_seconds=600 reached"


async def test_a_pipeline_takes_the_ace_workload_in_sync_mode_too() -> None:
    sim = Simulator(seed=0)
    demo = build_ace_demo(DemoConfig(**SMALL))
    w = AceWorkload(
        demo.task, demo.task.train, demo.task.val, "## guidelines\n",
        AceSimulatedLLM(sim, "generator"),
    )  # fmt: skip
    p = Pipeline(w, PipelineConfig(mode="sync"))
    assert [s.name for s in p.stages] == ["generate", "reflect", "curate", "evaluate"]
    assert p.decision_points == frozenset({"evaluate", "admit"})


async def test_set_policy_rebase_switches_a_running_ace_run_to_rebasing() -> None:
    demo = build_ace_demo(DemoConfig(minutes=12, policy="accept", depth=24, **SMALL))
    pipeline = demo.pipeline

    async def switch() -> None:
        await asyncio.sleep(300)  # simulated seconds (time_scale 1, virtual loop clock)
        pipeline.set_policy("rebase")

    switcher = asyncio.create_task(switch())
    result = await pipeline.run()
    await switcher
    decisions = [e for e in result.events if isinstance(e, PolicyDecision)]
    early = {d.policy for d in decisions if d.t < 300}
    late = {d.policy for d in decisions if d.t > 300}
    assert early == {"accept"} and late == {"rebase"}
    assert demo.workload.rebase_counts.rebased > 0


async def test_a_resumed_ace_run_moves_past_earlier_steps_and_ids() -> None:
    demo = build_ace_demo(DemoConfig(**SMALL))
    workload, pool = demo.workload, demo.pipeline.pool
    n = len(workload.instance_ids())
    stored = Artifact("a9", {"playbook": "## formatting\n[b-41] helpful=0 harmful=0 :: x.\n"})
    pool.admit(stored, [0.0] * n, 0.0)
    fresh = build_ace_demo(DemoConfig(**SMALL)).workload
    first_batches = [fresh.begin_step_from(k, f"i{k}", stored, pool, random.Random(0), 0.0)
                     for k in range(3)]  # fmt: skip
    workload.restore_progress(pool, 2)
    item = workload.begin_step_from(3, "i3", stored, pool, random.Random(0), 0.0)
    assert item.payload.minibatch == first_batches[2].payload.minibatch
    delta = Delta((Add("formatting", "New advice."),))
    ctx = StageContext(demo.pipeline, "policy:admit", 1, "k")
    stale = WorkItem("i1", 1, 0, stored, AceStep("gone", ("train-000",), delta=delta))
    decision = workload.rebase(stale, 1, ctx)
    assert decision.replacement is not None
    assert Playbook.parse(decision.replacement.artifact["playbook"]).ids() == ("b-41", "b-42")
