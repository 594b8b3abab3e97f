"""The Meta-Harness demo: harness evolution on the simulated ticket task, fully offline.

The Meta-Harness twin of :func:`flashevolve_nb.demo.build_demo`: the same
:class:`~flashevolve_nb.demo.DemoConfig` (mode, profile, seed, minutes, time
scale, depth, workers, split sizes, policy, controller, budgets) builds a
simulator, the ticket task, a sandbox, a :class:`MetaHarnessWorkload` and a
pipeline. GEPA-only fields are ignored; the stages release no partial
output, so ``alpha`` and speculative validation do not apply.

On a virtual clock (``looptime``) the sandbox runs each harness on the
loop's own thread, so the clock stands still meanwhile and a run is the same
under its seed whatever the machine's speed; on a real clock it runs them in
worker threads, beside the model calls (see
:class:`~flashevolve_nb.workloads.meta_harness.sandbox.Sandbox`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flashevolve_nb.clock import Clock
from flashevolve_nb.demo import DemoConfig
from flashevolve_nb.engine import Pipeline, RunResult
from flashevolve_nb.engine.bus import EventBus
from flashevolve_nb.llm.protocol import LLM
from flashevolve_nb.sim import Simulator
from flashevolve_nb.workloads.meta_harness.sandbox import Sandbox, SandboxLimits
from flashevolve_nb.workloads.meta_harness.simulated import (
    MetaHarnessSimulatedLLM,
    TicketTask,
    seed_harness,
)
from flashevolve_nb.workloads.meta_harness.workload import MetaHarnessConfig, MetaHarnessWorkload

__all__ = ["MetaHarnessDemo", "build_meta_harness_demo"]


@dataclass(frozen=True)
class MetaHarnessDemo:
    """A built, not yet started, Meta-Harness demo: the pipeline and its parts."""

    config: DemoConfig
    pipeline: Pipeline
    simulator: Simulator
    task: TicketTask
    workload: MetaHarnessWorkload

    @property
    def history_dir(self) -> Path:
        """Where every candidate's code, scores and traces are written."""
        return self.workload.history.root

    async def run(self) -> RunResult:
        return await self.pipeline.run()


def build_meta_harness_demo(
    config: DemoConfig,
    *,
    clock: Clock | None = None,
    bus: EventBus | None = None,
    llms: LLM | Mapping[str, LLM] | None = None,
    meta_harness: MetaHarnessConfig | None = None,
    sandbox: Sandbox | None = None,
    history_dir: Path | str | None = None,
) -> MetaHarnessDemo:
    """Build (not start) the Meta-Harness demo: simulator, ticket task, workload, pipeline.

    ``llms``: models to use instead of the in-process simulator, one for both roles
    or one per role (``task``, ``proposer``; a missing role uses ``task``'s).
    ``meta_harness`` replaces the settings taken from ``config`` (workers, request
    concurrency, candidate selection). ``sandbox``: default, a sandbox with a 5-second
    limit. ``history_dir``: where the history goes (default: a new
    temporary directory).
    """
    clock = clock or Clock(config.time_scale)
    sim = Simulator(profile=config.profile, seed=config.seed, clock=clock)

    def lm(role: str) -> LLM:
        if llms is None:
            return MetaHarnessSimulatedLLM(sim, role)
        if isinstance(llms, Mapping):
            chosen = llms.get(role, llms.get("task"))
            if chosen is None:
                raise ValueError(f"llms names no model for {role!r} and none for 'task'")
            return chosen
        return llms

    task = TicketTask(
        seed=config.seed, n_train=config.n_train, n_val=config.n_val, n_test=config.n_test
    )
    settings = meta_harness or MetaHarnessConfig(
        candidate_selection=config.candidate_selection,
        request_concurrency=config.request_concurrency,
        workers={
            "propose": config.workers,
            "evaluate": config.validate_workers or config.workers,
        },
        history_dir=Path(history_dir) if history_dir is not None else None,
    )
    workload = MetaHarnessWorkload(
        task, task.train, task.val, seed_harness(),
        task_lm=lm("task"), proposer_lm=lm("proposer"), config=settings,
        sandbox=sandbox or Sandbox(SandboxLimits(time_limit=5.0)),
    )  # fmt: skip
    pipeline = Pipeline(
        workload,
        # No stage of this workload releases early: no speculation.
        config.pipeline_config(speculate=False),
        clock=clock,
        bus=bus,
    )
    return MetaHarnessDemo(config, pipeline, sim, task, workload)
