"""A ``gepa`` adapter as a workload: GEPA's stages over someone else's system.

The stages are those of :class:`~flashevolve_nb.workloads.gepa.GepaWorkload`
(``rollout``, ``propose``, ``gate``, ``validate``), with the same parent
selection, epoch-shuffled minibatches, round-robin component choice, gate and
events; what changes is who does the work. The adapter runs the candidate
(``evaluate`` / ``batch_evaluate``) and builds the reflective dataset
(``make_reflective_dataset``); the proposal comes from
:class:`~flashevolve_nb.compat.reflection.Reflector`; the adapter's
synchronous methods run in threads (:class:`~flashevolve_nb.compat.calls.AdapterCalls`).

Per-example failures are the adapter's to score, as ``gepa`` documents: it
returns a failure score, never raises. When an adapter method does raise, the
step fails (an ``ItemFailed`` event, ``on_error`` for callbacks) and the run
goes on; only a failing seed evaluation ends the run, having nothing to
start from.

Metric calls are counted as ``gepa`` counts them (one per example evaluated,
or the batch's ``num_metric_calls``) and ``max_metric_calls`` is a hard cap
(see :mod:`~flashevolve_nb.compat.budget`). The run's ``gepa``-shaped state,
callbacks and ``run_dir`` follow the pool through the event bus, which the
workload joins in :meth:`AdapterWorkload.attach`.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from flashevolve_nb.compat.budget import MetricBudget
from flashevolve_nb.compat.callbacks import CallbackBridge
from flashevolve_nb.compat.calls import AdapterCalls, AdapterContractError, Evaluated
from flashevolve_nb.compat.data import IdSpace
from flashevolve_nb.compat.reflection import Reflector
from flashevolve_nb.compat.result import OptimizeResult
from flashevolve_nb.compat.rundir import RunDir
from flashevolve_nb.compat.state import GepaStateView
from flashevolve_nb.engine import (
    Artifact,
    Origin,
    ParentSelector,
    Pool,
    PoolEntry,
    StageContext,
    StageSpec,
    WorkItem,
    make_selector,
)
from flashevolve_nb.engine.duplicates import Duplicates
from flashevolve_nb.engine.events import (
    Admitted,
    Event,
    GateResult,
    ItemFailed,
    ProposalFailed,
    ProposalMade,
    RunFinished,
    StepFinished,
    StepStarted,
    ValidationDone,
)
from flashevolve_nb.engine.workload import SeedEntry
from flashevolve_nb.llm.protocol import LLM
from flashevolve_nb.workloads.gepa.sampler import EpochShuffledSampler

if TYPE_CHECKING:
    from flashevolve_nb.engine.pipeline import Pipeline

__all__ = ["AdapterConfig", "AdapterStep", "AdapterWorkload"]

log = logging.getLogger(__name__)

StageFn = Callable[[WorkItem, StageContext], Any]


@dataclass(frozen=True)
class AdapterConfig:
    """GEPA's knobs, named as in ``gepa.optimize``."""

    minibatch_size: int = 3
    candidate_selection: str | Any = "pareto"
    """``pareto``, ``current_best``, ``epsilon_greedy[:EPS]``, or a ``gepa`` candidate selector
    object (``select_candidate_idx(state)``), which reads the run's ``GepaStateView``."""
    module_selector: Literal["round_robin", "all"] = "round_robin"
    skip_perfect_score: bool = True
    perfect_score: float = 1.0
    acceptance: Literal["strict_improvement", "improvement_or_equal"] = "strict_improvement"
    workers: Mapping[str, int] = field(
        default_factory=lambda: {"rollout": 8, "propose": 8, "gate": 8, "validate": 8}
    )

    def __post_init__(self) -> None:
        if self.minibatch_size < 1:
            raise ValueError(f"minibatch size must be >= 1 (got {self.minibatch_size})")
        if self.module_selector not in ("round_robin", "all"):
            raise ValueError(
                f"module_selector must be 'round_robin' or 'all' (got {self.module_selector!r})"
            )
        if self.acceptance not in ("strict_improvement", "improvement_or_equal"):
            raise ValueError(
                "acceptance_criterion must be 'strict_improvement' or 'improvement_or_equal' "
                f"(got {self.acceptance!r})"
            )
        selection = self.candidate_selection
        if isinstance(selection, str):
            make_selector(selection)
        elif not callable(getattr(selection, "select_candidate_idx", None)):
            raise TypeError(
                "candidate_selection_strategy is a name ('pareto', 'current_best', "
                "'epsilon_greedy') or an object with select_candidate_idx(state); got "
                f"{type(selection).__name__}"
            )


@dataclass(frozen=True, slots=True)
class AdapterStep:
    """The payload of one step's work item; grows as the step moves through the stages."""

    parent_id: str
    components: tuple[str, ...]
    minibatch: tuple[str, ...]
    examples: tuple[Any, ...]
    parent_eval: Evaluated | None = None
    child_eval: Evaluated | None = None
    val_scores: tuple[float, ...] = ()
    validated_id: str = ""
    human: Artifact | None = None
    """A person's artifact: the propose stage adopts it instead of proposing."""


class AdapterWorkload:
    """GEPA's loop over a ``gepa`` adapter; see the module docstring."""

    default_decision_points: tuple[str, ...] = ("validate", "admit")
    validation_stage = "validate"

    def __init__(
        self,
        adapter: Any,
        trainset: IdSpace,
        valset: IdSpace,
        seed_candidate: Mapping[str, str],
        *,
        calls: AdapterCalls,
        reflector: Reflector,
        config: AdapterConfig | None = None,
        budget: MetricBudget | None = None,
        callbacks: CallbackBridge | None = None,
        stoppers: Sequence[Callable[[Any], bool]] = (),
        run_dir: RunDir | None = None,
        seed: int = 0,
        raise_on_exception: bool = False,
    ) -> None:
        if not seed_candidate:
            raise ValueError("seed_candidate must contain at least one component text")
        bad = [k for k, v in seed_candidate.items() if not isinstance(v, str)]
        if bad:
            raise TypeError(f"seed_candidate maps names to texts; not text: {bad}")
        self.adapter = adapter
        self.train = trainset
        self.val = valset
        self.seed_candidate = dict(seed_candidate)
        self.calls = calls
        self.reflector = reflector
        self.config = config or AdapterConfig()
        self.budget = budget or MetricBudget(None)
        self.callbacks = callbacks or CallbackBridge()
        self.stoppers = list(stoppers)
        self.run_dir = run_dir
        self.seed_value = seed
        self.raise_on_exception = raise_on_exception
        self.state = GepaStateView(seed_candidate, valset.ids)
        self.step_cost = 2 * min(self.config.minibatch_size, len(trainset)) + len(valset)
        """The most metric calls one step can spend: minibatch twice, validation set once."""
        self.stop_reason = ""
        self.fatal: BaseException | None = None
        """The first step failure, when ``raise_on_exception`` stops the run on it."""
        self.pipeline: Pipeline | None = None
        selection = self.config.candidate_selection
        self._selector: ParentSelector | None = (
            make_selector(selection) if isinstance(selection, str) else None
        )
        self._sampler = EpochShuffledSampler(
            trainset.keys, self.config.minibatch_size, random.Random(f"{seed}:minibatch")
        )
        self._components = list(self.seed_candidate)
        self._next_component: dict[str, int] = {}
        self._val_examples: tuple[Any, ...] | None = None
        self._started: set[int] = set()
        self._gate: dict[int, tuple[float, float]] = {}
        self._errors: dict[int, BaseException] = {}
        self._discovered: dict[str, int] = {}
        self._duplicates = Duplicates()
        self._ended = False

    # ---- Workload protocol -------------------------------------------------
    @property
    def name(self) -> str:
        return f"gepa-adapter:{type(self.adapter).__name__}"

    @property
    def backend_name(self) -> str:
        llm = self.reflector.llm
        proposer = llm.name if llm is not None else self.reflector.source
        return f"adapter {type(self.adapter).__name__}; proposals by {proposer}"

    def stages(self) -> Sequence[StageSpec]:
        w = self.config.workers
        mc = frozenset({"metric_calls"})
        return (
            StageSpec("rollout", self._guard(self._rollout), w.get("rollout", 8), mc,
                      "adapter.evaluate: the parent on a training minibatch, with traces"),
            StageSpec("propose", self._guard(self._propose), w.get("propose", 8),
                      frozenset({"proposals"}),
                      "adapter.make_reflective_dataset, then a new text per component"),
            StageSpec("gate", self._guard(self._gate_stage), w.get("gate", 8), mc,
                      "adapter.evaluate: the child on the same minibatch; keep it if it wins"),
            StageSpec("validate", self._guard(self._validate), w.get("validate", 8), mc,
                      "adapter.evaluate: the child on the whole validation set"),
        )  # fmt: skip

    def instance_ids(self) -> Sequence[str]:
        return self.val.keys

    def llm_for(self, role: str) -> LLM:
        """The reflection model, which also serves ``repair`` (staleness policies)."""
        if role not in ("reflection", "repair"):
            raise KeyError(
                f"no model for role {role!r}: the adapter runs the task itself; "
                "roles: reflection, repair"
            )
        if self.reflector.llm is None:
            raise LookupError(
                f"this run has no reflection model (proposals come from {self.reflector.source})"
                "; give the staleness policy its own model, e.g. make_policy('reflective', "
                "llm=...)"
            )
        return self.reflector.llm

    async def seed(self, ctx: StageContext) -> Sequence[SeedEntry]:
        self.callbacks.notify(
            "on_optimization_start",
            seed_candidate=dict(self.seed_candidate),
            trainset_size=len(self.train),
            valset_size=len(self.val),
            config={
                "perfect_score": self.config.perfect_score,
                "seed": self.seed_value,
                "track_best_outputs": False,
            },
        )
        artifact = Artifact(
            id=ctx.new_id("a"), components=self.seed_candidate, origin=Origin.SEED,
            created_at=ctx.now(), note="seed candidate",
        )  # fmt: skip
        # As in gepa: the seed is scored with evaluate(capture_traces=False), never batched.
        ev = await self.calls.evaluate(
            ctx, artifact.components, self._validation_examples(), capture_traces=False,
            batched=False, spent=lambda n: self._count(ctx, 0, n),
        )  # fmt: skip
        self._discovered[artifact.id] = 0
        ctx.emit(
            ValidationDone(
                t=ctx.now(), step=0, artifact_id=artifact.id,
                score=sum(ev.scores) / len(ev.scores), instances=len(ev.scores),
            )
        )  # fmt: skip
        return [(artifact, ev.scores)]

    def begin_step(
        self, step: int, item_id: str, pool: Pool, rng: random.Random, now: float
    ) -> WorkItem | None:
        reason = self._should_stop()
        if reason:
            self.stop_reason = reason
            return None
        entry = self._select(pool, rng)
        parent = entry.artifact
        if self.config.module_selector == "all":
            components = tuple(self._components)
        else:
            k = self._next_component.get(parent.id, 0)
            components = (self._components[k % len(self._components)],)
            self._next_component[parent.id] = k + 1
        minibatch = tuple(self._sampler.next_batch())
        self._iteration_start(step)
        self.callbacks.notify(
            "on_candidate_selected",
            iteration=step,
            candidate_idx=self.state.index_of(parent.id),
            candidate=dict(parent.components),
            score=entry.score,
        )
        self.callbacks.notify(
            "on_minibatch_sampled",
            iteration=step,
            minibatch_ids=self.train.data_ids(minibatch),
            trainset_size=len(self.train),
        )
        return self._item(step, item_id, parent, components, minibatch, pool.version, now)

    def admission(self, item: WorkItem) -> Sequence[float]:
        p: AdapterStep = item.payload
        if p.validated_id != item.artifact.id:
            raise ValueError(
                f"artifact {item.artifact.id!r} reached admission with the validation scores "
                f"of {p.validated_id or 'nothing'!r}; it must be validated itself first"
            )
        return p.val_scores

    # ---- human steps (engine.workload.HumanSteps) ----------------------------
    def begin_human_step(
        self, step: int, item_id: str, artifact: Artifact, pool: Pool, rng: random.Random,
        now: float,
    ) -> WorkItem:  # fmt: skip
        """A person's ``artifact`` as the proposal of a step: the parent is rolled out on a
        fresh minibatch, then the gate and validation judge the artifact like any proposal."""
        parent = pool.entry(artifact.parents[0]).artifact
        if set(artifact) != set(parent):
            raise ValueError(
                f"a human artifact has the components of its parent {list(parent)} "
                f"(got {list(artifact)})"
            )
        changed = tuple(k for k in artifact if artifact[k] != parent[k]) or tuple(parent)
        minibatch = tuple(self._sampler.next_batch())
        item = self._item(step, item_id, parent, changed, minibatch, pool.version, now)
        return item.evolve(payload=replace(item.payload, human=artifact))

    def with_human_artifact(self, item: WorkItem, artifact: Artifact) -> WorkItem:
        p: AdapterStep = item.payload
        if item.artifact.id == p.parent_id:
            return item.evolve(payload=replace(p, human=artifact))
        return item.evolve(artifact=artifact)

    # ---- the run around the pipeline ------------------------------------------
    def attach(self, pipeline: Pipeline) -> None:
        """Follow ``pipeline``'s events: the gepa-shaped state, callbacks, budget, run_dir."""
        if self.pipeline is not None:
            raise RuntimeError("this workload already belongs to a pipeline")
        self.pipeline = pipeline
        pipeline.bus.subscribe(self._observe)

    def result(self, *, finish_reason: str = "", wall_seconds: float = 0.0) -> OptimizeResult:
        run = self.pipeline.result() if self.pipeline is not None else None
        return OptimizeResult.from_state(
            self.state,
            seed=self.seed_value,
            run_dir=str(self.run_dir.path) if self.run_dir else None,
            finish_reason=finish_reason or self.stop_reason or (run.finish_reason if run else ""),
            wall_seconds=wall_seconds,
            run=run,
        )

    # ---- stages ----------------------------------------------------------------
    def _guard(self, fn: StageFn) -> StageFn:
        """Remember what a stage raised, so ``on_error`` gets the exception itself."""

        async def stage(item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
            try:
                out: Sequence[WorkItem] = await fn(item, ctx)
                return out
            except Exception as exc:
                self._errors[item.step] = exc
                raise

        return stage

    async def _rollout(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: AdapterStep = item.payload
        if not await self.budget.reserve(item.step, self.step_cost):
            ctx.end_step(
                f"budget: max_metric_calls={self.budget.limit} cannot pay for this step "
                f"({self.step_cost} calls at most)"
            )
            return []
        idx = self.state.index_of(p.parent_id)
        ev = await self._evaluate_notified(
            ctx, item.step, item.artifact, p.examples, candidate_idx=idx,
            parent_ids=self._parents_of(idx),
        )  # fmt: skip
        skip = ""
        if not ev.trajectories:
            skip = "no_trajectories"
            ctx.end_step("skipped: the adapter gave no trajectories for capture_traces=True")
        elif (
            p.human is None
            and self.config.skip_perfect_score
            and all(s >= self.config.perfect_score for s in ev.scores)
        ):
            skip = "all_scores_perfect"
            ctx.end_step("skipped: the parent is already perfect on this minibatch")
        if skip:
            self.callbacks.notify(
                "on_evaluation_skipped", iteration=item.step, candidate_idx=idx, reason=skip,
                scores=list(ev.scores), is_seed_candidate=idx == 0,
            )  # fmt: skip
            return []
        return [item.evolve(payload=replace(p, parent_eval=ev))]

    async def _propose(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: AdapterStep = item.payload
        parent = item.artifact
        if p.human is not None:
            return [self._adopt(item, p.human, ctx, ",".join(p.components))]
        assert p.parent_eval is not None
        components = list(p.components)
        dataset = await self.calls.run(
            self.adapter.make_reflective_dataset, dict(parent.components),
            p.parent_eval.batch, components,
        )  # fmt: skip
        concrete = _concrete_dataset(dataset)
        idx = self.state.index_of(parent.id)
        self.callbacks.notify(
            "on_reflective_dataset_built", iteration=item.step, candidate_idx=idx,
            components=components, dataset=concrete,
        )  # fmt: skip
        self.callbacks.notify(
            "on_proposal_start", iteration=item.step, parent_candidate=dict(parent.components),
            components=components, reflective_dataset=concrete,
        )  # fmt: skip
        proposal = await self.reflector.propose(ctx, parent.components, dataset, components)
        failure = proposal.failure
        if not failure and not proposal.new_texts:
            failure = f"{self.reflector.source} proposed no new text"
        unknown = sorted(set(proposal.new_texts) - set(parent))
        if unknown:
            raise AdapterContractError(
                f"{self.reflector.source} proposed text for unknown component(s) {unknown}; "
                f"the candidate has {list(parent)}"
            )
        if not failure:
            self.callbacks.notify(
                "on_proposal_end", iteration=item.step,
                new_instructions=dict(proposal.new_texts), prompts=dict(proposal.prompts),
                raw_lm_outputs=dict(proposal.raw_outputs),
            )  # fmt: skip
        changes = {k: v for k, v in proposal.new_texts.items() if v != parent[k]}
        if not failure and not changes:
            failure = "unchanged: the proposed text equals the current one"
        if failure:
            raw = "\n".join(proposal.raw_outputs.values())
            ctx.emit(
                ProposalFailed(
                    t=ctx.now(), step=item.step, parent_id=parent.id,
                    component=",".join(components), reason=failure, answer_excerpt=raw[-400:],
                )
            )  # fmt: skip
            ctx.end_step(f"proposal failed: {failure}")
            return []
        child = parent.derive(
            ctx.new_id("a"), changes, origin=Origin.PROPOSAL, base_version=item.base_version,
            created_at=ctx.now(), note=f"{self.reflector.source} for {', '.join(changes)}",
        )  # fmt: skip
        ctx.count_proposal()
        return [self._adopt(item, child, ctx, ",".join(changes))]

    def _adopt(self, item: WorkItem, child: Artifact, ctx: StageContext, what: str) -> WorkItem:
        self._next_component[child.id] = self._next_component.get(item.artifact.id, 0)
        ctx.emit(
            ProposalMade(
                t=ctx.now(), step=item.step, artifact_id=child.id, parent_id=item.artifact.id,
                component=what,
            )
        )  # fmt: skip
        return item.evolve(artifact=child, payload=replace(item.payload, human=None))

    async def _gate_stage(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: AdapterStep = item.payload
        assert p.parent_eval is not None
        idx = self.state.index_of(p.parent_id)
        if not await self._afford(ctx, item.step, len(p.examples)):
            return []
        ev = await self._evaluate_notified(
            ctx, item.step, item.artifact, p.examples, candidate_idx=None,
            parent_ids=[idx] if idx is not None else [],
        )  # fmt: skip
        before, after = sum(p.parent_eval.scores), sum(ev.scores)
        passed = after > before or (
            self.config.acceptance == "improvement_or_equal" and after >= before
        )
        self._gate[item.step] = (before, after)
        ctx.emit(
            GateResult(
                t=ctx.now(), step=item.step, artifact_id=item.artifact.id,
                parent_id=p.parent_id, parent_score=before, child_score=after, passed=passed,
            )
        )  # fmt: skip
        if not passed:
            self.callbacks.notify(
                "on_candidate_rejected", iteration=item.step, old_score=before, new_score=after,
                reason=f"New subsample score {after} not better than old score {before}",
            )  # fmt: skip
            ctx.end_step(f"gated out: child {after:g} <= parent {before:g} on the minibatch")
            return []
        return [item.evolve(payload=replace(p, child_eval=ev))]

    async def _validate(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: AdapterStep = item.payload
        duplicate = self._duplicates.claim(ctx.pool, item.artifact)
        if duplicate:
            ctx.end_step(duplicate)
            return []
        try:
            if not await self._afford(ctx, item.step, len(self.val)):
                self._duplicates.release(item.artifact)
                return []
            ev = await self.calls.evaluate(
                ctx, item.artifact.components, self._validation_examples(),
                capture_traces=False, spent=lambda n: self._count(ctx, item.step, n),
            )  # fmt: skip
        except BaseException:
            self._duplicates.release(item.artifact)
            raise
        # gepa's num_metric_calls_by_discovery: what was spent before this validation
        self._discovered[item.artifact.id] = self.budget.spent - ev.metric_calls
        ctx.emit(
            ValidationDone(
                t=ctx.now(), step=item.step, artifact_id=item.artifact.id,
                score=sum(ev.scores) / len(ev.scores), instances=len(ev.scores),
            )
        )  # fmt: skip
        done = replace(p, val_scores=ev.scores, validated_id=item.artifact.id)
        return [item.evolve(payload=done)]

    # ---- helpers ---------------------------------------------------------------
    def _item(
        self, step: int, item_id: str, parent: Artifact, components: tuple[str, ...],
        minibatch: tuple[str, ...], version: int, now: float,
    ) -> WorkItem:  # fmt: skip
        examples = tuple(self.train.fetch(minibatch))
        payload = AdapterStep(parent.id, components, minibatch, examples)
        return WorkItem(
            id=item_id, step=step, base_version=version, artifact=parent, payload=payload,
            created_at=now,
        )  # fmt: skip

    def _validation_examples(self) -> tuple[Any, ...]:
        if self._val_examples is None:
            self._val_examples = tuple(self.val.fetch(self.val.keys))
        return self._val_examples

    def _select(self, pool: Pool, rng: random.Random) -> PoolEntry:
        if self._selector is not None:
            return self._selector.select(pool, rng)
        chooser: Any = self.config.candidate_selection
        idx = chooser.select_candidate_idx(self.state)
        return pool.entry(self.state.artifact_id(int(idx)))

    def _parents_of(self, idx: int | None) -> list[int]:
        if idx is None:
            return []
        return [i for i in self.state.parent_program_for_candidate[idx] if i is not None]

    async def _evaluate_notified(
        self, ctx: StageContext, step: int, artifact: Artifact, examples: Sequence[Any], *,
        candidate_idx: int | None, parent_ids: list[int],
    ) -> Evaluated:  # fmt: skip
        """A minibatch evaluation with traces, between gepa's evaluation start and end events."""
        is_seed = candidate_idx == 0
        self.callbacks.notify(
            "on_evaluation_start", iteration=step, candidate_idx=candidate_idx,
            batch_size=len(examples), capture_traces=True, parent_ids=parent_ids,
            inputs=list(examples), is_seed_candidate=is_seed,
        )  # fmt: skip
        ev = await self.calls.evaluate(
            ctx, artifact.components, examples, capture_traces=True,
            spent=lambda n: self._count(ctx, step, n),
        )  # fmt: skip
        self.callbacks.notify(
            "on_evaluation_end", iteration=step, candidate_idx=candidate_idx,
            scores=list(ev.scores), has_trajectories=bool(ev.trajectories),
            parent_ids=parent_ids, outputs=list(ev.outputs),
            trajectories=list(ev.trajectories) if ev.trajectories is not None else None,
            objective_scores=list(ev.objective_scores) if ev.objective_scores else None,
            is_seed_candidate=is_seed,
        )  # fmt: skip
        return ev

    async def _afford(self, ctx: StageContext, step: int, n: int) -> bool:
        """Whether ``step`` may spend ``n`` more metric calls (waiting for budget if need be)."""
        if await self.budget.ensure(step, n):
            return True
        ctx.end_step(f"budget: max_metric_calls={self.budget.limit} cannot pay for {n} more calls")
        return False

    def _count(self, ctx: StageContext, step: int, n: int) -> None:
        ctx.count_metric_calls(n)
        self.budget.spend(step, n)
        self.state.total_num_evals = self.budget.spent
        limit = self.budget.limit
        self.callbacks.notify(
            "on_budget_updated", iteration=step, metric_calls_used=self.budget.spent,
            metric_calls_delta=n,
            metric_calls_remaining=max(0, limit - self.budget.spent) if limit else None,
        )  # fmt: skip

    def _should_stop(self) -> str:
        """Why no new step may start (a stop condition, the stop file, the budget), or ''."""
        if self.run_dir is not None and self.run_dir.stop_requested():
            return f"stop file {self.run_dir.stop_file} found"
        for stopper in self.stoppers:
            try:
                stop = stopper(self.state)
            except Exception as exc:
                # A broken stop condition must not let a run go on unbounded.
                return f"stop condition {stopper!r} raised {exc!r}"
            if stop:
                return f"stop condition {stopper!r} met"
        if not self.budget.can_ever_pay(self.step_cost):
            return (
                f"max_metric_calls={self.budget.limit} reached: what is left cannot pay for "
                f"another step ({self.step_cost} calls at most)"
            )
        return ""

    def _iteration_start(self, step: int) -> None:
        self._started.add(step)
        self.state.i = max(self.state.i, step - 1)
        self.callbacks.notify(
            "on_iteration_start", iteration=step, state=self.state,
            trainset_loader=self.train.loader,
        )  # fmt: skip

    # ---- following the run's events -----------------------------------------------
    def _observe(self, event: Event) -> None:
        if isinstance(event, Admitted):
            self._admitted(event)
        elif isinstance(event, StepStarted):
            if event.step not in self._started:
                self._iteration_start(event.step)
        elif isinstance(event, ItemFailed):
            self._failed(event)
        elif isinstance(event, StepFinished):
            self._step_finished(event)
        elif isinstance(event, RunFinished):
            self._run_finished(event)

    def _admitted(self, e: Admitted) -> None:
        assert self.pipeline is not None
        entry = self.pipeline.pool.entry(e.artifact_id)
        artifact = entry.artifact
        discovered = self._discovered.pop(e.artifact_id, self.budget.spent)
        idx, front, displaced = self.state.add(
            e.artifact_id, artifact.components, artifact.parents, entry.scores, discovered
        )
        self.state.num_full_ds_evals += 1
        parents = self._parents_of(idx)
        scores = dict(zip(self.val.ids, entry.scores, strict=True))
        if e.step > 0:
            self.callbacks.notify(
                "on_pareto_front_updated", iteration=e.step, new_front=front,
                displaced_candidates=displaced,
            )  # fmt: skip
        self.callbacks.notify(
            "on_valset_evaluated", iteration=e.step, candidate_idx=idx,
            candidate=dict(artifact.components), scores_by_val_id=scores,
            average_score=entry.score, num_examples_evaluated=len(scores),
            total_valset_size=len(self.val), parent_ids=parents,
            is_best_program=e.step == 0 or e.is_best, outputs_by_val_id=None,
        )  # fmt: skip
        if e.step > 0:
            self.callbacks.notify(
                "on_candidate_accepted", iteration=e.step, new_candidate_idx=idx,
                new_score=self._gate.get(e.step, (0.0, entry.score))[1], parent_ids=parents,
            )  # fmt: skip
        self._save(e.step)

    def _failed(self, e: ItemFailed) -> None:
        exc = self._errors.pop(e.step, None) or RuntimeError(f"{e.stage}: {e.error}")
        self.callbacks.notify(
            "on_error", iteration=e.step, exception=exc,
            will_continue=not self.raise_on_exception,
        )  # fmt: skip
        if self.raise_on_exception and self.fatal is None:
            self.fatal = exc
            if self.pipeline is not None:
                self.pipeline.stop("cancel", reason=f"failed: step {e.step} raised {e.error}")

    def _step_finished(self, e: StepFinished) -> None:
        self.budget.release(e.step)
        self._errors.pop(e.step, None)
        self._started.discard(e.step)
        gate = self._gate.pop(e.step, None)
        if e.outcome.startswith("discarded") and gate is not None:
            self.callbacks.notify(
                "on_candidate_rejected", iteration=e.step, old_score=gate[0],
                new_score=gate[1], reason=e.outcome,
            )  # fmt: skip
        self.callbacks.notify(
            "on_iteration_end", iteration=e.step, state=self.state,
            proposal_accepted=e.outcome == "admitted",
        )  # fmt: skip

    def _run_finished(self, e: RunFinished) -> None:
        if self._ended:
            return
        self._ended = True
        self._save(self.state.i + 1)
        self.callbacks.notify(
            "on_optimization_end",
            best_candidate_idx=_best_idx(self.state),
            total_iterations=self.state.i + 1,
            total_metric_calls=self.state.total_num_evals,
            final_state=self.state,
        )

    def _save(self, iteration: int) -> None:
        if self.run_dir is None or not self.state.program_candidates:
            return
        path = str(self.run_dir.path)
        try:
            self.run_dir.save(
                OptimizeResult.from_state(self.state, seed=self.seed_value, run_dir=path)
            )
        except OSError as exc:
            # The run and its in-memory result go on; only the copy on disk is behind.
            log.warning("could not write run_dir %s: %r", path, exc)
            return
        self.callbacks.notify("on_state_saved", iteration=iteration, run_dir=path)


def _best_idx(state: GepaStateView) -> int:
    scores = state.program_full_scores_val_set
    return max(range(len(scores)), key=lambda i: scores[i]) if scores else 0


def _concrete_dataset(dataset: object) -> dict[str, list[dict[str, Any]]]:
    """The reflective dataset as plain dicts (what gepa hands callbacks), checked on the way."""
    if not isinstance(dataset, Mapping):
        raise AdapterContractError(
            f"adapter.make_reflective_dataset returned {type(dataset).__name__}; it must "
            "return a dict of component name -> list of records (dicts)"
        )
    out: dict[str, list[dict[str, Any]]] = {}
    for name, records in dataset.items():
        if isinstance(records, str | bytes) or not isinstance(records, Sequence):
            raise AdapterContractError(
                f"make_reflective_dataset()[{name!r}] is {type(records).__name__}; it must be a "
                "list of records (dicts)"
            )
        rows: list[dict[str, Any]] = []
        for r in records:
            if isinstance(r, Mapping):
                rows.append(dict(r))
            elif dataclasses.is_dataclass(r) and not isinstance(r, type):
                rows.append(dataclasses.asdict(r))
            else:
                raise AdapterContractError(
                    f"make_reflective_dataset()[{name!r}] holds a {type(r).__name__}; records "
                    "must be dicts"
                )
        out[name] = rows
    return out
