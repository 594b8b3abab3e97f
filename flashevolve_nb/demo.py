"""The demo evolution: GEPA on the simulated rulebook task, fully offline.

This wires the parts a first-time user needs (simulator, task, workload,
pipeline) behind one call, so the CLI, the notebooks and the tests all run
exactly the same demo.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal

from flashevolve_nb.clock import Clock
from flashevolve_nb.engine import Budget, Pipeline, PipelineConfig, RunResult
from flashevolve_nb.engine.bus import EventBus
from flashevolve_nb.sim import RulebookTask, Simulator
from flashevolve_nb.workloads.gepa import GepaConfig, GepaWorkload

__all__ = ["Demo", "DemoConfig", "HeldOut", "build_demo"]


@dataclass(frozen=True)
class DemoConfig:
    """Everything that defines a demo run; the same config and seed give the same run."""

    mode: Literal["async", "sync"] = "async"
    profile: str = "vllm"
    seed: int = 0
    minutes: float = 30.0
    """Budget on the simulated clock."""
    time_scale: float = 120.0
    """Simulated seconds per real second."""
    depth: int = 16
    workers: int = 8
    """Workers per stage (async mode)."""
    minibatch_size: int = 3
    request_concurrency: int = 10
    max_metric_calls: int | None = None
    n_train: int = 60
    n_val: int = 40
    n_test: int = 100
    candidate_selection: str = "pareto"
    gepa: GepaConfig | None = field(default=None, repr=False)
    """A full GEPA configuration; when given it replaces ``minibatch_size``,
    ``request_concurrency``, ``candidate_selection`` and ``workers``."""

    def __post_init__(self) -> None:
        if self.minutes <= 0:
            raise ValueError(f"minutes must be > 0 (got {self.minutes})")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1 (got {self.workers})")


@dataclass(frozen=True)
class HeldOut:
    """Mean scores on the task's held-out test split (never seen during the run)."""

    seed: float
    best: float


@dataclass(frozen=True)
class Demo:
    """A built, not yet started, demo: the pipeline and the parts it was made of."""

    config: DemoConfig
    pipeline: Pipeline
    simulator: Simulator
    task: RulebookTask
    workload: GepaWorkload

    async def run(self) -> RunResult:
        return await self.pipeline.run()

    async def held_out(self, result: RunResult) -> HeldOut:
        """Score the seed and the best artifact on the test split, outside the budget."""
        seed = next(e.artifact for e in result.pool.entries if e.artifact.origin == "seed")
        seed_evals, best_evals = await asyncio.gather(
            self.workload.evaluate(seed, self.task.test),
            self.workload.evaluate(result.best, self.task.test),
        )
        return HeldOut(
            seed=sum(e.score for e in seed_evals) / len(seed_evals),
            best=sum(e.score for e in best_evals) / len(best_evals),
        )


def build_demo(
    config: DemoConfig, *, clock: Clock | None = None, bus: EventBus | None = None
) -> Demo:
    """Build (not start) the demo: simulator, task, GEPA workload, pipeline."""
    clock = clock or Clock(config.time_scale)
    sim = Simulator(profile=config.profile, seed=config.seed, clock=clock)
    task = RulebookTask(
        seed=config.seed, n_train=config.n_train, n_val=config.n_val, n_test=config.n_test
    )
    stage_names = ("rollout", "propose", "gate", "validate")
    gepa = config.gepa or GepaConfig(
        minibatch_size=config.minibatch_size,
        request_concurrency=config.request_concurrency,
        candidate_selection=config.candidate_selection,
        workers=dict.fromkeys(stage_names, config.workers),
    )
    workload = GepaWorkload(
        task,
        task.train,
        task.val,
        task.seed_candidate(),
        task_lm=sim.llm("task"),
        reflection_lm=sim.llm("reflection"),
        config=gepa,
        seed=config.seed,
    )
    pipeline = Pipeline(
        workload,
        PipelineConfig(
            mode=config.mode,
            depth=config.depth,
            seed=config.seed,
            budget=Budget(
                max_sim_seconds=config.minutes * 60.0, max_metric_calls=config.max_metric_calls
            ),
        ),
        clock=clock,
        bus=bus,
    )
    return Demo(config, pipeline, sim, task, workload)
