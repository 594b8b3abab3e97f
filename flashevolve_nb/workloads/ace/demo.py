"""The ACE demo: playbook evolution on the simulated rulebook task, fully offline.

The ACE twin of :func:`flashevolve_nb.demo.build_demo`: the same
:class:`~flashevolve_nb.demo.DemoConfig` (mode, profile, seed, minutes,
time scale, depth, workers, split sizes, policy, controller, budgets) builds
a simulator, the rulebook task, an :class:`AceWorkload` and a pipeline.
GEPA-only fields (``minibatch_size`` aside) are ignored; ACE's stages release
no partial output, so ``alpha`` and speculative validation do not apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flashevolve_nb.clock import Clock
from flashevolve_nb.demo import DemoConfig
from flashevolve_nb.engine import Pipeline, RunResult
from flashevolve_nb.engine.bus import EventBus
from flashevolve_nb.llm.protocol import LLM
from flashevolve_nb.sim import RulebookTask, Simulator
from flashevolve_nb.workloads.ace.simulated import AceSimulatedLLM, seed_playbook
from flashevolve_nb.workloads.ace.workload import AceConfig, AceWorkload

__all__ = ["AceDemo", "build_ace_demo"]

ROLES = ("generator", "reflector", "curator")


@dataclass(frozen=True)
class AceDemo:
    """A built, not yet started, ACE demo: the pipeline and the parts it was made of."""

    config: DemoConfig
    pipeline: Pipeline
    simulator: Simulator
    task: RulebookTask
    workload: AceWorkload

    async def run(self) -> RunResult:
        return await self.pipeline.run()


def build_ace_demo(
    config: DemoConfig,
    *,
    clock: Clock | None = None,
    bus: EventBus | None = None,
    llms: LLM | Mapping[str, LLM] | None = None,
    ace: AceConfig | None = None,
) -> AceDemo:
    """Build (not start) the ACE demo: simulator, rulebook task, ACE workload, pipeline.

    ``llms``: models to use instead of the in-process simulator, one for every
    role or one per role (``generator``, ``reflector``, ``curator``; a missing
    role uses ``generator``'s), e.g. an ``OpenAIBackend``. ``ace`` replaces the
    ACE settings taken from ``config`` (minibatch size, request concurrency,
    workers).
    """
    clock = clock or Clock(config.time_scale)
    sim = Simulator(profile=config.profile, seed=config.seed, clock=clock)

    def lm(role: str) -> LLM:
        if llms is None:
            return AceSimulatedLLM(sim, role)
        if isinstance(llms, Mapping):
            chosen = llms.get(role, llms.get("generator"))
            if chosen is None:
                raise ValueError(f"llms names no model for {role!r} and none for 'generator'")
            return chosen
        return llms

    task = RulebookTask(
        seed=config.seed, n_train=config.n_train, n_val=config.n_val, n_test=config.n_test
    )
    workers = dict.fromkeys(("generate", "reflect", "curate"), config.workers)
    workers["evaluate"] = config.validate_workers or config.workers
    settings = ace or AceConfig(
        minibatch_size=config.minibatch_size,
        request_concurrency=config.request_concurrency,
        workers=workers,
    )
    workload = AceWorkload(
        task,
        task.train,
        task.val,
        seed_playbook(),
        generator_lm=lm("generator"),
        reflector_lm=lm("reflector"),
        curator_lm=lm("curator"),
        config=settings,
        seed=config.seed,
    )
    pipeline = Pipeline(
        workload,
        # No stage of this workload releases early: no speculation.
        config.pipeline_config(speculate=False),
        clock=clock,
        bus=bus,
    )
    return AceDemo(config, pipeline, sim, task, workload)
