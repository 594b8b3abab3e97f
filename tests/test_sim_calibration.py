"""Calibration: GEPA's synchronous schedule on the simulated vLLM server shows Figure 2's shape.

A minimal synchronous GEPA loop, written here directly against ``SimulatedLLM``
(not the engine): per step, roll out the parent on 3 training instances,
reflect once, gate the child on the same 3, then validate it on the whole
validation set with at most 10 requests at a time (GEPA's thread pool of 10).
Steps run strictly one after another, on a virtual clock.

Targets from the paper (SIMULATOR.md): validation takes >= 70% of the time,
about 10 requests in flight (we accept 5-12), task outputs ~700 tokens on
average with p99 >= 4,000.

Why two set sizes: with 40 validation instances and 10 workers a validation
pass is only 4 "rounds" of requests plus its slowest request, against about 3
rounds for rollout + propose + gate, so validation alone cannot reach 70% with
any honest length distribution (we measured ~60% for several shapes). The
paper's ~96 s per evaluation at ~10 streams of ~80 tokens/s is ~100+ requests
of ~700 tokens, so the Figure 2 shape is asserted at a paper-like validation
set of 150; the default 40 is measured and held to what it can show.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from collections import defaultdict
from dataclasses import dataclass

import pytest

from flashevolve_nb.llm.protocol import Completion
from flashevolve_nb.sim import Instance, RulebookTask, Scored, Simulator
from flashevolve_nb.workloads.gepa.prompts import (
    ReflectionExample,
    parse_reflection_answer,
    reflection_prompt,
)

STEPS = 15
POOL = 10


@dataclass(frozen=True)
class Figures:
    n_val: int
    total: float
    stage_time: dict[str, float]
    mean_in_flight: float
    mean_tokens: float
    p99_tokens: int
    max_tokens: int
    n_outputs: int
    best_val: float

    def share(self, *stages: str) -> float:
        return sum(self.stage_time[s] for s in stages) / self.total

    def report(self) -> str:
        stages = ", ".join(
            f"{k} {v:.0f}s ({v / self.total:.0%})" for k, v in self.stage_time.items()
        )
        return (
            f"\n[simulated vllm, {self.n_val} val] {STEPS} sync GEPA steps in "
            f"{self.total:.0f} simulated s: {stages}; evaluate (gate+validate) "
            f"{self.share('gate', 'validate'):.0%}\n  mean in flight {self.mean_in_flight:.1f}; "
            f"task outputs n={self.n_outputs} mean {self.mean_tokens:.0f} p99 {self.p99_tokens} "
            f"max {self.max_tokens}; best val {self.best_val:.3f}"
        )


async def synchronous_gepa(n_val: int, seed: int = 0) -> Figures:
    task = RulebookTask(seed=seed, n_val=n_val)
    sim = Simulator("vllm", seed=seed)
    sim.clock.start()
    task_llm, reflection_llm = sim.llm("task"), sim.llm("reflection")
    rng = random.Random(seed)
    pool = asyncio.Semaphore(POOL)
    stage_time: defaultdict[str, float] = defaultdict(float)
    tokens: list[int] = []

    async def run(instance: Instance, candidate: dict[str, str]) -> tuple[Completion, Scored]:
        async with pool:
            completion = await task_llm.chat(task.messages(candidate, instance))
        tokens.append(completion.usage.completion_tokens)
        return completion, task.score(instance, completion.text)

    async def stage(
        name: str, instances: tuple[Instance, ...], candidate: dict[str, str]
    ) -> list[tuple[Completion, Scored]]:
        start = sim.clock.now()
        results = await asyncio.gather(*(run(i, candidate) for i in instances))
        stage_time[name] += sim.clock.now() - start
        return results

    parent, best_val = task.seed_candidate(), 0.0
    for _ in range(STEPS):
        batch = tuple(rng.sample(task.train, 3))
        rollout = await stage("rollout", batch, parent)
        examples = [
            ReflectionExample(i.input, c.text, s.score, s.feedback)
            for i, (c, s) in zip(batch, rollout, strict=True)
        ]
        prompt = reflection_prompt("system_prompt", parent["system_prompt"], examples)
        start = sim.clock.now()
        answer = await reflection_llm.chat([{"role": "user", "content": prompt}])
        stage_time["propose"] += sim.clock.now() - start
        parsed = parse_reflection_answer(answer.text, answer.finish_reason)
        child = {"system_prompt": parsed.text} if parsed.text is not None else parent
        gate = await stage("gate", batch, child)
        validation = await stage("validate", task.val, child)
        val_score = statistics.mean(s.score for _, s in validation)
        improved = sum(s.score for _, s in gate) > sum(s.score for _, s in rollout)
        if improved and val_score > best_val:
            parent, best_val = child, val_score

    ordered = sorted(tokens)
    return Figures(
        n_val=n_val,
        total=sum(stage_time.values()),
        stage_time=dict(stage_time),
        mean_in_flight=sim.server.stats().mean_in_flight,
        mean_tokens=statistics.mean(ordered),
        p99_tokens=ordered[int(0.99 * (len(ordered) - 1))],
        max_tokens=ordered[-1],
        n_outputs=len(ordered),
        best_val=best_val,
    )


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_synchronous_gepa_has_the_papers_shape() -> None:
    figures = await synchronous_gepa(n_val=150)
    print(figures.report())
    assert figures.share("validate") >= 0.70
    assert 5 <= figures.mean_in_flight <= 12
    assert 550 <= figures.mean_tokens <= 900
    assert figures.p99_tokens >= 4000
    assert figures.best_val > 0.3


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_synchronous_gepa_on_the_default_validation_set() -> None:
    figures = await synchronous_gepa(n_val=40)
    print(figures.report())
    assert figures.share("gate", "validate") >= 0.70
    assert figures.share("validate") >= 0.50
    assert 3.5 <= figures.mean_in_flight <= 12
    assert 550 <= figures.mean_tokens <= 900
    assert figures.p99_tokens >= 4000
