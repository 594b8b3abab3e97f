"""The Meta-Harness workload end to end on the simulator, on a virtual loop clock.

Harnesses run in real sandboxed processes; the sandbox is inline, so the virtual
clock stands still while they run and a run is the same under its seed.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from flashevolve_nb.demo import DemoConfig
from flashevolve_nb.engine import Artifact, Pipeline, PipelineConfig
from flashevolve_nb.engine.events import (
    Admitted,
    ItemFailed,
    ProposalFailed,
    ProposalMade,
    StepFinished,
    ValidationDone,
)
from flashevolve_nb.engine.workload import (
    ModelRoles,
    Objectives,
    ResumableProgress,
    StepsFromParent,
    ValidationStage,
)
from flashevolve_nb.llm.protocol import LLM, Completion, Message
from flashevolve_nb.sim import Simulator
from flashevolve_nb.workloads.meta_harness import TOKENS, Knobs, read_knobs, render
from flashevolve_nb.workloads.meta_harness.demo import build_meta_harness_demo
from flashevolve_nb.workloads.meta_harness.prompts import PROPOSER_MARKER
from flashevolve_nb.workloads.meta_harness.sandbox import Sandbox, SandboxLimits
from flashevolve_nb.workloads.meta_harness.simulated import MetaHarnessSimulatedLLM

SMALL: dict[str, Any] = {
    "n_train": 32, "n_val": 10, "n_test": 5, "time_scale": 1.0, "depth": 4, "workers": 2,
    "controller": "fixed",
}  # fmt: skip

pytestmark = [pytest.mark.asyncio, pytest.mark.looptime]


def rows(events: Sequence[Any]) -> list[tuple[Any, ...]]:
    def norm(v: Any) -> Any:
        return round(v, 6) if isinstance(v, float) else v

    return [tuple((k, norm(v)) for k, v in sorted(e.to_row().items())) for e in events]


async def test_the_workload_meets_its_capabilities(tmp_path: Path) -> None:
    workload = build_meta_harness_demo(DemoConfig(**SMALL), history_dir=tmp_path).workload
    for capability in (Objectives, ValidationStage, StepsFromParent, ModelRoles,
                       ResumableProgress):  # fmt: skip
        assert isinstance(workload, capability)
    assert workload.objectives == {TOKENS: "min"}
    assert workload.llm_for("proposer") is workload.proposer_lm
    with pytest.raises(KeyError, match="roles: task, proposer"):
        workload.llm_for("judge")
    p = Pipeline(workload, PipelineConfig(mode="sync"))
    assert [s.name for s in p.stages] == ["propose", "evaluate"]
    assert p.pool.objectives == {TOKENS: "min"}


async def test_an_async_run_improves_on_the_seed_and_keeps_a_token_frontier(
    tmp_path: Path,
) -> None:
    demo = build_meta_harness_demo(DemoConfig(minutes=12, **SMALL), history_dir=tmp_path)
    result = await demo.run()
    s = result.stats
    assert result.finish_reason == "max_sim_seconds=720 reached"
    assert s.best_score >= s.seed_score + 0.3
    pool = demo.pipeline.pool
    admitted = [e for e in result.events if isinstance(e, Admitted)]
    assert len(admitted) == len(pool) > 5
    # Every admitted harness carries its measured context tokens.
    assert all(TOKENS in e.objectives and e.objectives[TOKENS] > 0 for e in pool)
    front = pool.objective_front()
    assert pool.best().artifact.id in front and len(front) >= 3
    # Along the front, more accuracy costs more context.
    points = sorted((pool.entry(i).objectives[TOKENS], pool.entry(i).score) for i in front)
    assert [score for _, score in points] == sorted(score for _, score in points)
    # The history holds every candidate that reached evaluation, in full.
    folders = demo.workload.history.folders()
    status = Counter(json.loads((f / "scores.json").read_text())["status"] for f in folders)
    assert status["evaluated"] == len(pool)
    assert status["failed"] == sum(demo.workload.failures.values())
    seed = folders[0]
    assert (seed / "harness.py").read_text() == render(Knobs())
    traces = [json.loads(x) for x in (seed / "traces.jsonl").read_text().splitlines()]
    assert [t["task"] for t in traces] == list(demo.workload.instance_ids())
    assert all(t["messages"] and t["feedback"] for t in traces)
    # Every admitted program was validated, and the proposals are the ones counted.
    validated = {e.artifact_id for e in result.events if isinstance(e, ValidationDone)}
    assert {e.artifact_id for e in admitted} <= validated
    assert len([e for e in result.events if isinstance(e, ProposalMade)]) == s.proposals
    assert not any(isinstance(e, ItemFailed) for e in result.events)


async def test_same_seed_same_run_other_seed_other_run(tmp_path: Path) -> None:
    async def run(seed: int, where: str) -> tuple[list[tuple[Any, ...]], list[str]]:
        demo = build_meta_harness_demo(
            DemoConfig(minutes=5, seed=seed, **SMALL), history_dir=tmp_path / where
        )
        events = rows((await demo.run()).events)
        return events, [f.name for f in demo.workload.history.folders()]

    first = await run(3, "a")
    assert first == await run(3, "b")
    assert first != await run(4, "c")


HOSTILE = {
    "hang": "while True:\n    pass",
    "memory": "hoard = bytearray(4 * 1024**3)",
    "network": "import socket\nsocket.socket().connect(('127.0.0.1', 9))",
    "escape": "open('../../escaped-by-harness.txt', 'w').write('x')",
}


MALFORMED = {
    "I would show more examples; the rest stays.": "no fenced code block in the answer",
    "Here:\n```python\nRETRIEVE = 3\n": "the code block is never closed",
}


class _HostileProposer:
    """The simulated proposer, except that its first answers are malformed, then hostile."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.malformed = list(MALFORMED)
        self.hostile = list(HOSTILE.values())

    @property
    def name(self) -> str:
        return "hostile proposer"

    @property
    def simulated(self) -> bool:
        return True

    async def chat(self, messages: Sequence[Message], **params: Any) -> Completion:
        completion = await self.inner.chat(messages, **params)
        assert PROPOSER_MARKER in messages[-1]["content"]
        if self.malformed:
            return Completion(self.malformed.pop(0), completion.usage, completion.latency,
                              "stop", completion.model)  # fmt: skip
        if not self.hostile:
            return completion
        body = "\n".join("    " + line for line in self.hostile.pop(0).splitlines())
        code = render(Knobs(format_hint=True)).replace(
            "def build_context(task, memory):\n", f"def build_context(task, memory):\n{body}\n"
        )
        return Completion(f"Try this.\n```python\n{code}```\n", completion.usage,
                          completion.latency, "stop", completion.model)  # fmt: skip


async def test_malformed_answers_and_hostile_harnesses_fail_alone_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    sim = Simulator(seed=0)
    llms: dict[str, LLM] = {
        "task": MetaHarnessSimulatedLLM(sim, "task"),
        "proposer": _HostileProposer(MetaHarnessSimulatedLLM(sim, "proposer")),
    }
    sandbox = Sandbox(SandboxLimits(time_limit=1.0, memory_mb=256), inline=True)
    demo = build_meta_harness_demo(
        DemoConfig(minutes=8, **SMALL), llms=llms, sandbox=sandbox, history_dir=tmp_path / "h"
    )
    result = await demo.run()
    outcomes = [e.outcome for e in result.events if isinstance(e, StepFinished)]
    proposals = [e for e in result.events if isinstance(e, ProposalFailed)]
    assert [e.reason for e in proposals[:2]] == list(MALFORMED.values())
    assert proposals[0].answer_excerpt == next(iter(MALFORMED))
    assert all(e.component == "harness" for e in proposals)
    assert "proposal failed: no fenced code block in the answer" in outcomes
    failed = [o for o in outcomes if o.startswith("candidate failed: ")]
    assert len(failed) >= len(HOSTILE)
    joined = "\n".join(failed)
    assert "candidate failed: timeout: still running after 1 s" in joined
    assert "candidate failed: memory: exceeded 256 MiB in build_context (MemoryError)" in joined
    assert "sandbox: socket.__new__ is not allowed" in joined
    assert "outside the working directory" in joined
    assert not (tmp_path / "escaped-by-harness.txt").exists()
    assert not any(isinstance(e, ItemFailed) for e in result.events)
    assert result.finish_reason == "max_sim_seconds=480 reached"
    assert result.stats.best_score > result.stats.seed_score  # the good ones kept coming
    hostile = [f for f in demo.workload.history.folders()
               if json.loads((f / "scores.json").read_text())["status"] == "failed"]  # fmt: skip
    assert len(hostile) >= len(HOSTILE)  # recorded for the proposer to learn from


async def test_a_resumed_workload_takes_the_objectives_from_the_stored_pool(
    tmp_path: Path,
) -> None:
    demo = build_meta_harness_demo(DemoConfig(**SMALL), history_dir=tmp_path)
    pool = demo.pipeline.pool
    stored = Artifact("a7", {"harness": render(Knobs(retrieve=2))})
    pool.admit(stored, [0.5] * len(pool.instance_ids), 0.0, objectives={TOKENS: 80.0})
    fresh = build_meta_harness_demo(DemoConfig(**SMALL), history_dir=tmp_path).workload
    assert fresh.objectives_of(stored) == {}
    fresh.restore_progress(pool, 3)
    assert fresh.objectives_of(stored) == {TOKENS: 80.0}
    item = fresh.begin_step_from(4, "i4", stored, pool, random.Random(0), 0.0)
    assert item.payload.parent_id == "a7" and read_knobs(item.artifact["harness"]) == Knobs(
        retrieve=2
    )


async def test_a_stored_run_keeps_its_objectives_and_resumes_with_them(tmp_path: Path) -> None:
    from flashevolve_nb import store

    history = tmp_path / "history"
    first = build_meta_harness_demo(DemoConfig(minutes=3, **SMALL), history_dir=history)
    store.attach(first.pipeline, tmp_path / "run", resume=False)
    await first.run()
    stored = {e.artifact.id: dict(e.objectives) for e in first.pipeline.pool}
    assert stored and all(TOKENS in v for v in stored.values())
    run = store.open_run(tmp_path / "run")
    assert {e.artifact.id: dict(e.objectives) for e in run.pool.entries} == stored
    again = build_meta_harness_demo(DemoConfig(minutes=5, **SMALL), history_dir=history)
    store.attach(again.pipeline, tmp_path / "run", resume=True)
    await again.run()
    pool = again.pipeline.pool
    assert {i: dict(pool.entry(i).objectives) for i in stored} == stored
    assert len(pool) > len(stored) and all(TOKENS in e.objectives for e in pool)
    assert pool.objective_front() and pool.best().artifact.id in pool.objective_front()
    # The history continued in the same directory, numbering on.
    names = [f.name for f in again.workload.history.folders()]
    assert names == sorted(names) and len(names) > len(stored)
