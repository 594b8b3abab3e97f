"""A ``gepa`` adapter as a workload: GEPA's step over someone else's system.

The step is GEPA's one core (:class:`~flashevolve_nb.workloads.gepa.core.GepaCore`,
shared with :class:`~flashevolve_nb.workloads.gepa.GepaWorkload`): the same
stages, parent selection, epoch-shuffled minibatches, round-robin component
choice, gate, validation (speculative too), human steps and events. This
module is its adapter evaluator: who does the work. The adapter runs the candidate
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
or the batch's ``num_metric_calls``) and ``max_metric_calls`` is a hard cap:
the run's budget in its hard-cap mode (:class:`~flashevolve_nb.engine.budget.HardCap`).
With an alpha below 1 on ``validate`` the validation is released once that
fraction of its adapter calls is in (the examples ordered most discriminative
first), and with speculative validation a candidate can join the pool on it.
The run's ``gepa``-shaped state, callbacks and ``run_dir`` follow the pool
through the event bus, which the workload joins in :meth:`AdapterWorkload.attach`.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from flashevolve_nb.compat.callbacks import CallbackBridge
from flashevolve_nb.compat.calls import AdapterCalls, AdapterContractError, Evaluated
from flashevolve_nb.compat.data import IdSpace
from flashevolve_nb.compat.reflection import Reflector
from flashevolve_nb.compat.result import OptimizeResult
from flashevolve_nb.compat.rundir import RunDir
from flashevolve_nb.compat.state import GepaStateView
from flashevolve_nb.engine import (
    Artifact,
    ParentSelector,
    Pool,
    PoolEntry,
    StageContext,
    WorkItem,
    make_selector,
)
from flashevolve_nb.engine.budget import HardCap
from flashevolve_nb.engine.events import (
    Admitted,
    Event,
    ItemFailed,
    RunFinished,
    StepFinished,
    StepStarted,
)
from flashevolve_nb.llm.protocol import LLM
from flashevolve_nb.workloads.gepa.core import EvalParts, GepaCore, GepaStep, Proposal

if TYPE_CHECKING:
    from flashevolve_nb.engine.pipeline import Pipeline

__all__ = ["AdapterConfig", "AdapterStep", "AdapterWorkload"]

AdapterStep = GepaStep
"""The payload of one step (the core's :class:`GepaStep`; kept as a name)."""

log = logging.getLogger(__name__)


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


class AdapterWorkload(GepaCore):
    """GEPA's step over a ``gepa`` adapter; see the module docstring."""

    partial_stages: tuple[str, ...] = ("validate",)
    """Validation can be released early (an alpha below 1) and speculated on; the
    minibatch evaluations cannot (the adapter's traces need the whole batch)."""

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
        budget: HardCap | None = None,
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
        self._seed_candidate = dict(seed_candidate)
        self.calls = calls
        self.reflector = reflector
        self.config = config or AdapterConfig()
        self.budget = budget or HardCap(None)
        """The metric-call budget (hard cap); the run's own once :meth:`attach` ran."""
        self._count_on_run = True
        """Whether metric calls must also be counted on the run (the budget is not its own)."""
        self.callbacks = callbacks or CallbackBridge()
        self.stoppers = list(stoppers)
        self.run_dir = run_dir
        self.seed_value = seed
        self.raise_on_exception = raise_on_exception
        self.state = GepaStateView(seed_candidate, valset.ids)
        self.fatal: BaseException | None = None
        """The first step failure, when ``raise_on_exception`` stops the run on it."""
        self.pipeline: Pipeline | None = None
        selection = self.config.candidate_selection
        selector: ParentSelector | None = (
            make_selector(selection) if isinstance(selection, str) else None
        )
        super().__init__(
            components=list(self._seed_candidate),
            train_keys=trainset.keys,
            val_size=len(valset),
            minibatch_size=self.config.minibatch_size,
            selector=selector,
            seed=seed,
            skip_perfect_score=self.config.skip_perfect_score,
            perfect_score=self.config.perfect_score,
            acceptance=self.config.acceptance,
            module_selector=self.config.module_selector,
            workers=self.config.workers,
        )
        self._val_examples: tuple[Any, ...] | None = None
        self._started: set[int] = set()
        self._gate_scores: dict[int, tuple[float, float]] = {}
        self._errors: dict[int, BaseException] = {}
        self._discovered: dict[str, int] = {}
        self._ended = False

    # ---- Workload protocol -------------------------------------------------
    @property
    def seed_candidate(self) -> Mapping[str, str]:
        return self._seed_candidate

    @property
    def name(self) -> str:
        return f"gepa-adapter:{type(self.adapter).__name__}"

    @property
    def backend_name(self) -> str:
        llm = self.reflector.llm
        proposer = llm.name if llm is not None else self.reflector.source
        return f"adapter {type(self.adapter).__name__}; proposals by {proposer}"

    def _describe(self, stage: str) -> str:
        return {
            "rollout": "adapter.evaluate: the parent on a training minibatch, with traces",
            "propose": "adapter.make_reflective_dataset, then a new text per component",
            "gate": "adapter.evaluate: the child on the same minibatch; keep it if it wins",
            "validate": "adapter.evaluate: the child on the whole validation set",
        }[stage]

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

    # ---- the run around the pipeline ------------------------------------------
    def attach(self, pipeline: Pipeline) -> None:
        """Follow ``pipeline``'s events: the gepa-shaped state, callbacks, budget, run_dir.

        A pipeline whose budget is in hard-cap mode lends the workload its cap, so the
        run keeps one metric-call count."""
        if self.pipeline is not None:
            raise RuntimeError("this workload already belongs to a pipeline")
        self.pipeline = pipeline
        if pipeline.config.budget.hard_metric_cap:
            self.budget = pipeline.budget.hard_cap
            self._count_on_run = False
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

    # ---- the evaluator: the adapter --------------------------------------------
    def _examples(self, minibatch: Sequence[str]) -> tuple[Any, ...]:
        return tuple(self.train.fetch(minibatch))

    async def _seed_scores(self, ctx: StageContext, artifact: Artifact) -> Sequence[float]:
        self.callbacks.notify(
            "on_optimization_start",
            seed_candidate=dict(self._seed_candidate),
            trainset_size=len(self.train),
            valset_size=len(self.val),
            config={
                "perfect_score": self.config.perfect_score,
                "seed": self.seed_value,
                "track_best_outputs": False,
            },
        )
        # As in gepa: the seed is scored with evaluate(capture_traces=False), never batched.
        ev = await self.calls.evaluate(
            ctx, artifact.components, self._validation_examples(), capture_traces=False,
            batched=False, spent=lambda n: self._count(ctx, 0, n),
        )  # fmt: skip
        self._discovered[artifact.id] = 0
        return ev.scores

    async def _evaluate_minibatch(
        self, ctx: StageContext, item: WorkItem, artifact: Artifact, *, parent: bool
    ) -> Evaluated:
        p: GepaStep = item.payload
        idx = self.state.index_of(p.parent_id)
        if parent:
            candidate_idx, parent_ids = idx, self._parents_of(idx)
        else:
            candidate_idx, parent_ids = None, [idx] if idx is not None else []
        return await self._evaluate_notified(
            ctx, item.step, artifact, p.examples, candidate_idx=candidate_idx,
            parent_ids=parent_ids,
        )  # fmt: skip

    async def _validation_scores(self, ctx: StageContext, item: WorkItem) -> tuple[float, ...]:
        ev = await self.calls.evaluate(
            ctx, item.artifact.components, self._validation_examples(),
            capture_traces=False, spent=lambda n: self._count(ctx, item.step, n),
        )  # fmt: skip
        # gepa's num_metric_calls_by_discovery: what was spent before this validation
        self._discovered[item.artifact.id] = self.budget.spent - ev.metric_calls
        return ev.scores

    def _validation_parts(
        self, ctx: StageContext, item: WorkItem, order: Sequence[int]
    ) -> EvalParts:
        examples = self._validation_examples()
        step = item.step
        return self.calls.evaluation_parts(
            ctx, item.artifact.components, [examples[i] for i in order], capture_traces=False,
            spent=lambda n: self._count(ctx, step, n),
        )  # fmt: skip

    def _scores_of(self, part: Any) -> Sequence[float]:
        ev: Evaluated = part
        return ev.scores

    def _on_validated(self, ctx: StageContext, item: WorkItem, scores: Sequence[float]) -> None:
        # gepa's num_metric_calls_by_discovery, for a validation released early: what
        # was spent before it, at most (its parts count as they return).
        self._discovered.setdefault(item.artifact.id, self.budget.spent - len(scores))

    async def _propose_texts(self, item: WorkItem, ctx: StageContext) -> Proposal:
        p: GepaStep = item.payload
        parent = item.artifact
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
        raw = "\n".join(proposal.raw_outputs.values())
        if failure:
            return Proposal(failure=failure, raw=raw)
        return Proposal(dict(proposal.new_texts), raw=raw)

    def _proposal_note(self, changes: Sequence[str]) -> str:
        return f"{self.reflector.source} for {', '.join(changes)}"

    # ---- hooks of the step ---------------------------------------------------------
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

    def _select(self, pool: Pool, rng: random.Random) -> PoolEntry:
        if self._selector is not None:
            return self._selector.select(pool, rng)
        chooser: Any = self.config.candidate_selection
        idx = chooser.select_candidate_idx(self.state)
        return pool.entry(self.state.artifact_id(int(idx)))

    def _on_step_begun(self, step: int, entry: PoolEntry, payload: GepaStep) -> None:
        self._iteration_start(step)
        self.callbacks.notify(
            "on_candidate_selected",
            iteration=step,
            candidate_idx=self.state.index_of(entry.artifact.id),
            candidate=dict(entry.artifact.components),
            score=entry.score,
        )
        self.callbacks.notify(
            "on_minibatch_sampled",
            iteration=step,
            minibatch_ids=self.train.data_ids(payload.minibatch),
            trainset_size=len(self.train),
        )

    def _rollout_skip(self, item: WorkItem, ev: Any, ctx: StageContext) -> str:
        evaluated: Evaluated = ev
        if not evaluated.trajectories:
            ctx.end_step("skipped: the adapter gave no trajectories for capture_traces=True")
            return "no_trajectories"
        return ""

    def _on_rollout_skipped(self, item: WorkItem, ev: Any, reason: str) -> None:
        p: GepaStep = item.payload
        idx = self.state.index_of(p.parent_id)
        self.callbacks.notify(
            "on_evaluation_skipped", iteration=item.step, candidate_idx=idx, reason=reason,
            scores=list(ev.scores), is_seed_candidate=idx == 0,
        )  # fmt: skip

    def _on_gate(self, item: WorkItem, before: float, after: float, passed: bool) -> None:
        self._gate_scores[item.step] = (before, after)
        if not passed:
            self.callbacks.notify(
                "on_candidate_rejected", iteration=item.step, old_score=before, new_score=after,
                reason=f"New subsample score {after} not better than old score {before}",
            )  # fmt: skip

    def _metric_cap(self, ctx: StageContext) -> HardCap:
        """Its own budget: the run's hard cap once attached to a pipeline in hard-cap mode."""
        return self.budget

    def _on_stage_error(self, step: int, exc: BaseException) -> None:
        """Remember what a stage raised, so ``on_error`` gets the exception itself."""
        self._errors[step] = exc

    # ---- helpers ---------------------------------------------------------------
    def _validation_examples(self) -> tuple[Any, ...]:
        if self._val_examples is None:
            self._val_examples = tuple(self.val.fetch(self.val.keys))
        return self._val_examples

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

    def _count(self, ctx: StageContext, step: int, n: int) -> None:
        if self._count_on_run:
            ctx.count_metric_calls(n)
        self.budget.spend(step, n)
        self.state.total_num_evals = self.budget.spent
        limit = self.budget.limit
        self.callbacks.notify(
            "on_budget_updated", iteration=step, metric_calls_used=self.budget.spent,
            metric_calls_delta=n,
            metric_calls_remaining=max(0, limit - self.budget.spent) if limit else None,
        )  # fmt: skip

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
                new_score=self._gate_scores.get(e.step, (0.0, entry.score))[1], parent_ids=parents,
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
        gate = self._gate_scores.pop(e.step, None)
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
