"""The demo evolution: GEPA on the simulated rulebook task, fully offline.

This wires the parts a first-time user needs (simulator, task, workload,
pipeline) behind one call, so the CLI, the notebooks and the tests all run
exactly the same demo.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from flashevolve_nb.clock import Clock
from flashevolve_nb.engine import Budget, Pipeline, PipelineConfig, RunResult
from flashevolve_nb.engine.bus import EventBus
from flashevolve_nb.engine.controller import ControllerParams
from flashevolve_nb.engine.speculation import SpeculationConfig
from flashevolve_nb.llm.breaker import CircuitBreaker
from flashevolve_nb.llm.protocol import LLM, Completion, Message
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
    policy: str = "accept"
    """Staleness policy: accept, guarded[:DELTA], discard, reflective or meta."""
    validate_workers: int | None = None
    """Workers of the validation stage (default: ``workers``)."""
    staleness_lab: bool = False
    """Make staleness happen on purpose, for teaching: a deep pipeline (depth >= 32)
    with a slow validation stage (2 workers), so proposals arrive versions behind."""
    controller: Literal["fixed", "adaptive"] = "adaptive"
    """``adaptive`` (default, it measured best): the controller moves workers and sizes
    the pipeline as the run goes; ``fixed`` keeps ``workers`` and ``depth``. Async mode
    only (the synchronous run stays fixed), and the staleness lab stays fixed too, since
    the controller would undo its deliberately deep, slow pipeline."""
    controller_params: ControllerParams | None = field(default=None, repr=False)
    alpha: float | Mapping[str, float] = 0.5
    """Speculative completion: a stage hands its output on once this fraction of its
    requests is in (1: wait for all). A number applies to rollout and validate.
    Default 0.5, the best measured (benchmarks/bench_issue4.py)."""
    speculative_validation: bool = False
    """Admit a candidate whose validation prefix beats its parent's before the rest is in
    (needs ``alpha`` < 1 for validate). Async mode only."""
    max_proposals: int | None = None
    """Also stop after this many proposals."""
    breaker_failures: int | None = None
    """Wrap each model in a circuit breaker that opens after this many consecutive
    failed calls (None: no breaker)."""
    breaker_cooldown: float = 60.0
    """Simulated seconds an open breaker holds calls back before a probe."""
    gepa: GepaConfig | None = field(default=None, repr=False)
    """A full GEPA configuration; when given it replaces ``minibatch_size``,
    ``request_concurrency``, ``candidate_selection`` and ``workers``."""

    def __post_init__(self) -> None:
        _check_fields(self)
        if not 0 < self.minutes < float("inf"):  # also refuses NaN
            raise ValueError(f"minutes must be a finite number > 0 (got {self.minutes})")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1 (got {self.workers})")
        if self.validate_workers is not None and self.validate_workers < 1:
            raise ValueError(f"validate_workers must be >= 1 (got {self.validate_workers})")
        if self.controller not in ("fixed", "adaptive"):
            raise ValueError(f"controller must be 'fixed' or 'adaptive' (got {self.controller!r})")
        try:
            self.speculation()
        except ValueError as exc:
            raise ValueError(f"speculation: {exc}") from None
        from flashevolve_nb.engine.staleness import make_policy

        try:
            make_policy(self.policy)
        except ValueError as exc:
            raise ValueError(f"policy: {exc}") from None

    def speculation(self) -> SpeculationConfig:
        """The run's speculation settings (none in sync mode: that is GEPA's schedule)."""
        if self.mode == "sync":
            return SpeculationConfig()
        return SpeculationConfig(alpha=self.alpha, validation=self.speculative_validation)

    def pipeline_config(
        self, *, depth: int | None = None, speculate: bool = True, fixed: bool = False
    ) -> PipelineConfig:
        """The pipeline settings every workload's demo shares: mode, depth, seed, policy,
        controller and budget. ``speculate=False`` for a workload with no stage that can
        release early; ``fixed`` keeps the controller off (the staleness lab)."""
        return PipelineConfig(
            mode=self.mode,
            depth=self.depth if depth is None else depth,
            seed=self.seed,
            policy=self.policy,
            speculation=self.speculation() if speculate else SpeculationConfig(),
            controller=self.controller if self.mode == "async" and not fixed else "fixed",
            controller_params=self.controller_params or ControllerParams(),
            budget=Budget(
                max_sim_seconds=self.minutes * 60.0,
                max_metric_calls=self.max_metric_calls,
                max_proposals=self.max_proposals,
            ),
        )


def _check_fields(c: DemoConfig) -> None:
    """Fail at once, naming the field and a valid value, before anything is built."""
    from flashevolve_nb.engine.selection import make_selector
    from flashevolve_nb.sim.profiles import get_profile

    def bad(name: str, want: str, example: str) -> ValueError:
        value = getattr(c, name)
        return ValueError(
            f"DemoConfig.{name} must be {want} (got {type(value).__name__} {value!r}); "
            f"e.g. {name}={example}"
        )

    if c.mode not in ("async", "sync"):
        raise bad("mode", "'async' or 'sync'", "'async'")
    for name, minimum, example in (
        ("seed", None, "0"), ("depth", 1, "16"), ("workers", None, "8"),
        ("minibatch_size", 1, "3"), ("request_concurrency", 1, "10"),
        ("n_train", 1, "60"), ("n_val", 1, "40"), ("n_test", 1, "100"),
    ):  # fmt: skip
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(name, "an int", example)
        if minimum is not None and value < minimum:
            raise bad(name, f"an int >= {minimum}", example)
    for name, example in (
        ("max_metric_calls", "2000"), ("max_proposals", "500"), ("breaker_failures", "5"),
    ):  # fmt: skip
        value = getattr(c, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):  # fmt: skip
            raise bad(name, "an int >= 1 or None", example)
    for name, example in (("minutes", "30"), ("time_scale", "120"), ("breaker_cooldown", "60")):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad(name, "a number", example)
        if name != "minutes" and not value > 0:  # minutes: checked below, as it always was
            raise bad(name, "a number > 0", example)
    try:
        get_profile(c.profile)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"DemoConfig.profile: {exc}; e.g. profile='vllm'") from None
    try:
        make_selector(c.candidate_selection)
    except ValueError as exc:
        raise ValueError(f"DemoConfig.candidate_selection: {exc}") from None


@dataclass(frozen=True)
class HeldOut:
    """Mean scores on the task's held-out test split (never seen during the run).

    Each distinct prompt is scored once per demo, at temperature 0, and the score is
    kept, so the same prompt always gets the same held-out score (the seed's and the
    best's are equal when the best is the seed), whatever the run sampled before.
    """

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
    _test_scores: dict[tuple[tuple[str, str], ...], float] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    async def run(self) -> RunResult:
        return await self.pipeline.run()

    async def held_out(self, result: RunResult) -> HeldOut:
        """Score the seed and the best artifact on the test split, outside the budget.

        Deterministic per prompt: each distinct prompt is evaluated once (the first
        time it is asked for), at temperature 0, and its mean score kept, so a sampling
        model cannot give the same prompt two different held-out scores.
        """
        seed = next(e.artifact for e in result.pool.entries if e.artifact.origin == "seed")
        seed_score, best_score = await self.test_scores([seed, result.best])
        return HeldOut(seed=seed_score, best=best_score)

    async def test_scores(self, candidates: Sequence[Mapping[str, str]]) -> list[float]:
        """Mean test-split score of each candidate; one evaluation per distinct text, ever."""
        keys = [tuple(sorted((str(k), str(v)) for k, v in c.items())) for c in candidates]
        missing = {
            k: c for k, c in zip(keys, candidates, strict=True) if k not in self._test_scores
        }
        task_lm = self.workload.task_lm

        async def greedy(messages: Sequence[Message], **params: Any) -> Completion:
            # temperature 0: the answer to a conversation does not depend on how often it
            # was asked before (a test request can repeat a training one the run sampled)
            return await task_lm.chat(messages, **{**params, "temperature": 0})

        evals = await asyncio.gather(
            *(self.workload._run_task(c, self.task.test, greedy) for c in missing.values())
        )
        for k, ev in zip(missing, evals, strict=True):
            self._test_scores[k] = sum(e.score for e in ev) / len(ev)
        return [self._test_scores[k] for k in keys]


def build_demo(
    config: DemoConfig,
    *,
    clock: Clock | None = None,
    bus: EventBus | None = None,
    llms: LLM | Mapping[str, LLM] | None = None,
) -> Demo:
    """Build (not start) the demo: simulator, task, GEPA workload, pipeline.

    ``llms``: the models to use instead of the in-process simulator, one for
    every role or one per role (``task``, ``reflection``, ``repair``; a missing
    role uses ``task``'s), e.g. an ``OpenAIBackend`` pointed at
    ``flashevolve sim-server`` or at a vLLM server.
    """
    clock = clock or Clock(config.time_scale)
    sim = Simulator(profile=config.profile, seed=config.seed, clock=clock)

    breakers: list[CircuitBreaker] = []

    def lm(role: str) -> LLM:
        model = _model(role)
        if config.breaker_failures is None:
            return model
        breakers.append(
            CircuitBreaker(
                model,
                failures=config.breaker_failures,
                cooldown=config.breaker_cooldown,
                name=f"{role}: {model.name}",
            )
        )
        return breakers[-1]

    def _model(role: str) -> LLM:
        if llms is None:
            return sim.llm(role)
        if isinstance(llms, Mapping):
            chosen = llms.get(role, llms.get("task"))
            if chosen is None:
                raise ValueError(f"llms names no model for {role!r} and none for 'task'")
            return chosen
        return llms

    task = RulebookTask(
        seed=config.seed, n_train=config.n_train, n_val=config.n_val, n_test=config.n_test
    )
    stage_names = ("rollout", "propose", "gate", "validate")
    workers = dict.fromkeys(stage_names, config.workers)
    depth = config.depth
    if config.validate_workers is not None:
        workers["validate"] = config.validate_workers
    if config.staleness_lab:
        depth = max(depth, 32)
        workers["validate"] = min(workers["validate"], 2)
    gepa = config.gepa or GepaConfig(
        minibatch_size=config.minibatch_size,
        request_concurrency=config.request_concurrency,
        candidate_selection=config.candidate_selection,
        workers=workers,
    )
    workload = GepaWorkload(
        task,
        task.train,
        task.val,
        task.seed_candidate(),
        task_lm=lm("task"),
        reflection_lm=lm("reflection"),
        config=gepa,
        seed=config.seed,
        repair_lm=lm("repair"),
    )
    pipeline_config = config.pipeline_config(depth=depth, fixed=config.staleness_lab)
    if llms is None and config.controller_params is None:
        # The simulated server's sequence cap is known here: let the controller aim at it.
        profile = sim.profile
        cap = getattr(profile, "max_running", None) or getattr(profile, "max_concurrency", None)
        params = ControllerParams(server_cap=cap)
        pipeline_config = replace(pipeline_config, controller_params=params)
    pipeline = Pipeline(workload, pipeline_config, clock=clock, bus=bus)
    for breaker in breakers:
        breaker.attach(pipeline)
    return Demo(config, pipeline, sim, task, workload)
