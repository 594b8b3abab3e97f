"""GEPA's step, once: the core both GEPA workloads share.

One evolution step: select a parent from the pool (per-instance Pareto fronts
by default), take the next epoch-shuffled training minibatch, choose the
component(s) to change (round-robin per parent, or all), run the parent on the
minibatch (``rollout``), propose new text (``propose``), run the child on the
same minibatch and keep it only if it beats the parent (``gate``), score it on
the whole validation set (``validate``) and hand it to the pool (admission).

What is shared lives here: parent selection, minibatches, component choice,
the gate, duplicate claims, validation (complete, or released early in
discriminative order with the rest pending: speculative validation), human
steps, resume, and the typed capabilities of :mod:`flashevolve_nb.engine.workload`.
What differs is the *evaluator*: how a candidate is run on examples and how
a proposal is written. :class:`~flashevolve_nb.workloads.gepa.GepaWorkload`
asks a task model and a reflection model (the LLM task);
:class:`~flashevolve_nb.compat.workload.AdapterWorkload` calls a ``gepa``
adapter in threads. A subclass implements the evaluator methods marked
below; the hooks (``_on_...``, ``_before_...``) default to nothing.
"""

from __future__ import annotations

import asyncio
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from flashevolve_nb.engine import (
    Artifact,
    Origin,
    ParentSelector,
    Pool,
    PoolEntry,
    StageContext,
    StageSpec,
    WorkItem,
)
from flashevolve_nb.engine.budget import HardCap
from flashevolve_nb.engine.duplicates import Duplicates
from flashevolve_nb.engine.events import GateResult, ProposalFailed, ProposalMade, ValidationDone
from flashevolve_nb.engine.partial import Partial, release_partial
from flashevolve_nb.engine.speculation import PendingValidation, speculation_of, stage_alpha
from flashevolve_nb.engine.validation_order import DiscriminativeOrder
from flashevolve_nb.engine.workload import SeedEntry
from flashevolve_nb.workloads.gepa.sampler import EpochShuffledSampler

__all__ = ["GepaCore", "GepaStep", "Proposal"]

StageFn = Callable[[WorkItem, StageContext], Coroutine[Any, Any, Sequence[WorkItem]]]
EvalParts = tuple[list[Coroutine[Any, Any, Any]], list[int]]
"""Evaluation split into parts that can finish one by one, with the examples each covers."""


@dataclass(frozen=True, slots=True)
class GepaStep:
    """The payload of a GEPA work item; grows as the step moves through the stages."""

    parent_id: str
    components: tuple[str, ...]
    minibatch: tuple[str, ...]
    examples: tuple[Any, ...] = ()
    """The minibatch's training examples, fetched once."""
    parent_eval: Any = None
    """The evaluator's evaluation of the parent on the minibatch (has ``scores``)."""
    child_eval: Any = None
    val_scores: tuple[float, ...] = ()
    validated_id: str = ""
    """The artifact ``val_scores`` belong to (admission checks it is the item's)."""
    parent_rest: asyncio.Task[list[Any]] | None = None
    """Rollout released early: the rest of the parent's minibatch parts (the gate folds
    them in)."""
    val_pending: PendingValidation | None = None
    """Validation released early: the scores so far and the task finishing the rest."""
    human: Artifact | None = None
    """A person's artifact: the propose stage adopts it instead of proposing."""

    @property
    def component(self) -> str:
        """The (first) component this step changes."""
        return self.components[0]

    @property
    def parent_evals(self) -> tuple[Any, ...]:
        """The parent's per-example evaluations on the minibatch (input, output, score,
        feedback: what the reflection reads), once the rollout is in; () before, or when
        the evaluator keeps them in another shape (a gepa adapter's batch)."""
        evals = getattr(self.parent_eval, "evals", ())
        return tuple(evals) if isinstance(evals, tuple | list) else ()


@dataclass(frozen=True)
class Proposal:
    """What an evaluator proposes: new texts, or why there are none."""

    texts: Mapping[str, str] = field(default_factory=dict)
    failure: str = ""
    raw: str = ""
    """The proposer's answer, for a failed proposal's excerpt."""
    meta: Mapping[str, Any] = field(default_factory=dict)


class GepaCore(ABC):
    """GEPA's step over an evaluator (the abstract methods); see the module docstring."""

    validation_stage = "validate"
    """Where a patched (repaired) artifact re-enters: it is validated before admission."""
    default_decision_points: tuple[str, ...] = ("validate", "admit")
    """Stale proposals meet the policy after the gate (before validation) and before
    admission: the first saves validation work, the second sees the newest pool."""
    partial_stages: tuple[str, ...] = ("validate",)
    """Stages that can hand their output on early (an alpha below 1)."""

    def __init__(
        self,
        *,
        components: Sequence[str],
        train_keys: Sequence[str],
        val_size: int,
        minibatch_size: int,
        selector: ParentSelector | None,
        seed: int,
        skip_perfect_score: bool = True,
        perfect_score: float = 1.0,
        acceptance: Literal["strict_improvement", "improvement_or_equal"] = "strict_improvement",
        module_selector: Literal["round_robin", "all"] = "round_robin",
        workers: Mapping[str, int] | None = None,
    ) -> None:
        self._components = list(components)
        self._selector = selector
        self._sampler = EpochShuffledSampler(
            list(train_keys), minibatch_size, random.Random(f"{seed}:minibatch")
        )
        self._val_order = DiscriminativeOrder(val_size, pass_score=perfect_score)
        self._duplicates = Duplicates()
        # Round-robin component choice, per parent artifact (as in gepa).
        self._next_component: dict[str, int] = {}
        self._skip_perfect = skip_perfect_score
        self._perfect = perfect_score
        self._acceptance = acceptance
        self._module_selector = module_selector
        self._workers = dict(workers or {})
        self._val_size = val_size
        self.step_cost = 2 * min(minibatch_size, len(train_keys)) + val_size
        """The most metric calls one step can spend: minibatch twice, validation set once
        (what a step reserves under a hard metric cap)."""
        self.stop_reason = ""
        self._exhausted = ""
        """Why the hard metric cap cannot pay for another step, once a step found out."""

    # ---- the evaluator (a subclass implements these) ---------------------------
    @abstractmethod
    def _examples(self, minibatch: Sequence[str]) -> tuple[Any, ...]:
        """The training examples of ``minibatch``."""

    @abstractmethod
    async def _seed_scores(self, ctx: StageContext, artifact: Artifact) -> Sequence[float]:
        """The seed's validation scores (counted as metric calls)."""

    @abstractmethod
    async def _evaluate_minibatch(
        self, ctx: StageContext, item: WorkItem, artifact: Artifact, *, parent: bool
    ) -> Any:
        """``artifact`` on the step's minibatch (the parent's rollout, or the child at the
        gate): an evaluation with ``scores``."""

    @abstractmethod
    async def _validation_scores(self, ctx: StageContext, item: WorkItem) -> tuple[float, ...]:
        """``item.artifact`` on the whole validation set, in instance order."""

    @abstractmethod
    def _validation_parts(
        self, ctx: StageContext, item: WorkItem, order: Sequence[int]
    ) -> EvalParts:
        """The validation of ``item.artifact`` over instances in ``order``, as parts."""

    @abstractmethod
    def _scores_of(self, part: Any) -> Sequence[float]:
        """The scores of one finished evaluation part, in example order."""

    @abstractmethod
    async def _propose_texts(self, item: WorkItem, ctx: StageContext) -> Proposal:
        """New texts for ``item.payload.components`` of the parent ``item.artifact``."""

    @abstractmethod
    def _proposal_note(self, changes: Sequence[str]) -> str:
        """The note of a proposed artifact that changed ``changes``."""

    def _describe(self, stage: str) -> str:
        return ""

    # Rollout released early (only for evaluators that list "rollout" in partial_stages).
    def _minibatch_parts(self, ctx: StageContext, item: WorkItem) -> EvalParts:
        raise NotImplementedError(f"{type(self).__name__} cannot release its rollout early")

    def _combine(self, parts: Sequence[Any]) -> Any:
        raise NotImplementedError(f"{type(self).__name__} cannot release its rollout early")

    # ---- hooks (default: nothing) --------------------------------------------------
    def _should_stop(self) -> str:
        """Why no new step may start, or ''."""
        return ""

    def _select(self, pool: Pool, rng: random.Random) -> PoolEntry:
        assert self._selector is not None
        return self._selector.select(pool, rng)

    def _on_step_begun(self, step: int, entry: PoolEntry, payload: GepaStep) -> None:
        return None

    def _rollout_skip(self, item: WorkItem, ev: Any, ctx: StageContext) -> str:
        """A reason (beyond a perfect parent) not to propose from this rollout, or '' (a
        reason given ends the step: say why with ``ctx.end_step``)."""
        return ""

    def _on_rollout_skipped(self, item: WorkItem, ev: Any, reason: str) -> None:
        return None

    def _on_gate(self, item: WorkItem, before: float, after: float, passed: bool) -> None:
        return None

    def _on_validated(self, ctx: StageContext, item: WorkItem, scores: Sequence[float]) -> None:
        return None

    def _on_stage_error(self, step: int, exc: BaseException) -> None:
        return None

    def _metric_cap(self, ctx: StageContext) -> HardCap | None:
        """The hard metric cap the step reserves against (None: the run's default budget)."""
        return ctx.metric_cap

    # ---- the metric budget in hard-cap mode (engine.budget.HardCap) ---------------------
    async def _before_rollout(self, item: WorkItem, ctx: StageContext) -> bool:
        """Reserve the step's worst case before it evaluates anything (waits for budget)."""
        cap = self._metric_cap(ctx)
        if cap is None or await cap.reserve(item.step, self.step_cost):
            return True
        self._exhausted = (
            f"max_metric_calls={cap.limit} reached: what is left cannot pay for another "
            f"step ({self.step_cost} calls at most)"
        )
        ctx.end_step(
            f"budget: max_metric_calls={cap.limit} cannot pay for this step "
            f"({self.step_cost} calls at most)"
        )
        return False

    async def _afford(self, ctx: StageContext, step: int, n: int) -> bool:
        """Whether ``step`` may spend ``n`` more metric calls (waiting for budget if need be)."""
        cap = self._metric_cap(ctx)
        if cap is None or await cap.ensure(step, n):
            return True
        ctx.end_step(f"budget: max_metric_calls={cap.limit} cannot pay for {n} more calls")
        return False

    async def _before_gate(self, item: WorkItem, ctx: StageContext) -> bool:
        p: GepaStep = item.payload
        return await self._afford(ctx, item.step, len(p.minibatch))

    async def _before_validation(self, item: WorkItem, ctx: StageContext) -> bool:
        return await self._afford(ctx, item.step, self._val_size)

    # ---- Workload protocol -----------------------------------------------------------
    def stages(self) -> Sequence[StageSpec]:
        w = self._workers
        mc = frozenset({"metric_calls"})
        return (
            StageSpec("rollout", self._guard(self._rollout), w.get("rollout", 8), mc,
                      self._describe("rollout")),
            StageSpec("propose", self._guard(self._propose), w.get("propose", 8),
                      frozenset({"proposals"}), self._describe("propose")),
            StageSpec("gate", self._guard(self._gate), w.get("gate", 8), mc,
                      self._describe("gate")),
            StageSpec("validate", self._guard(self._validate), w.get("validate", 8), mc,
                      self._describe("validate")),
        )  # fmt: skip

    async def seed(self, ctx: StageContext) -> Sequence[SeedEntry]:
        artifact = Artifact(
            id=ctx.new_id("a"), components=self.seed_candidate, origin=Origin.SEED,
            created_at=ctx.now(), note="seed candidate",
        )  # fmt: skip
        scores = list(await self._seed_scores(ctx, artifact))
        self._val_order.observe(scores)
        ctx.emit(
            ValidationDone(
                t=ctx.now(), step=0, artifact_id=artifact.id,
                score=sum(scores) / len(scores), instances=len(scores),
            )
        )  # fmt: skip
        return [(artifact, scores)]

    @property
    @abstractmethod
    def seed_candidate(self) -> Mapping[str, str]: ...

    def begin_step(
        self, step: int, item_id: str, pool: Pool, rng: random.Random, now: float
    ) -> WorkItem | None:
        reason = self._should_stop() or self._exhausted
        if reason:
            self.stop_reason = reason
            return None
        entry = self._select(pool, rng)
        item = self.begin_step_from(step, item_id, entry.artifact, pool, rng, now)
        self._on_step_begun(step, entry, item.payload)
        return item

    def begin_step_from(
        self, step: int, item_id: str, parent: Artifact, pool: Pool, rng: random.Random, now: float
    ) -> WorkItem:
        """A step from a given parent: a resumed run re-derives a step cut off by a crash."""
        if self._module_selector == "all":
            components = tuple(self._components)
        else:
            k = self._next_component.get(parent.id)
            if k is None:
                # A child starts where its parent's rotation was when it was proposed (as
                # in gepa); kept on the artifact too, so a resumed run knows it.
                k = int(parent.meta.get("component_cursor", 0))
            components = (self._components[k % len(self._components)],)
            self._next_component[parent.id] = k + 1
        return self._item(step, item_id, parent, components, pool.version, now)

    def restore_progress(self, pool: Pool, steps: int) -> None:
        """A resumed run has begun ``steps`` steps: move the minibatch sampler past them,
        so the run goes on with new minibatches instead of repeating the first ones."""
        for _ in range(steps):
            self._sampler.next_batch()

    def admission(self, item: WorkItem) -> Sequence[float]:
        p: GepaStep = item.payload
        if p.validated_id != item.artifact.id:
            raise ValueError(
                f"artifact {item.artifact.id!r} reached admission with the validation scores "
                f"of {p.validated_id or 'nothing'!r}; it must be validated itself first"
            )
        return p.val_scores

    def pending_validation(self, item: WorkItem) -> PendingValidation | None:
        """The validation still running for ``item`` at admission (None: it is complete)."""
        payload = item.payload
        return payload.val_pending if isinstance(payload, GepaStep) else None

    def validation_order(self) -> tuple[int, ...]:
        """Validation instance indices, most discriminative first (used when released early)."""
        return self._val_order.order()

    # ---- human steps (engine.workload.HumanSteps) -----------------------------------
    def begin_human_step(
        self, step: int, item_id: str, artifact: Artifact, pool: Pool, rng: random.Random,
        now: float,
    ) -> WorkItem:  # fmt: skip
        """A step whose proposal is a person's ``artifact``: the parent is rolled out on a
        fresh minibatch, the propose stage adopts ``artifact``, and gate and validation
        judge it as they judge any proposal."""
        parent = pool.entry(artifact.parents[0]).artifact
        if set(artifact) != set(parent):
            raise ValueError(
                f"a human artifact has the components of its parent {list(parent)} "
                f"(got {list(artifact)})"
            )
        changed = tuple(k for k in artifact if artifact[k] != parent[k])
        components = changed or tuple(self._components[:1])
        item = self._item(step, item_id, parent, components, pool.version, now)
        return item.evolve(payload=replace(item.payload, human=artifact))

    def with_human_artifact(self, item: WorkItem, artifact: Artifact) -> WorkItem:
        """Before the proposal, ``artifact`` becomes the step's proposal; after it, the
        person's artifact takes the proposal's place at the gate or validation."""
        p: GepaStep = item.payload
        if item.artifact.id == p.parent_id:
            return item.evolve(payload=replace(p, human=artifact))
        return item.evolve(artifact=artifact)

    # ---- stages --------------------------------------------------------------------
    def _guard(self, fn: StageFn) -> StageFn:
        """Tell the evaluator what a stage raised (``gepa``'s ``on_error`` wants it)."""

        async def stage(item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
            try:
                return await fn(item, ctx)
            except Exception as exc:
                self._on_stage_error(item.step, exc)
                raise

        return stage

    async def _rollout(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: GepaStep = item.payload
        if not await self._before_rollout(item, ctx):
            return []
        alpha = stage_alpha(ctx)
        if alpha < 1:
            return await self._rollout_partial(item, ctx, alpha)
        ev = await self._evaluate_minibatch(ctx, item, item.artifact, parent=True)
        if self._skip(item, ev, ctx):
            return []
        return [item.evolve(payload=replace(p, parent_eval=ev))]

    def _perfect_on(self, scores: Sequence[float]) -> bool:
        return all(s >= self._perfect for s in scores)

    def _skip(self, item: WorkItem, ev: Any, ctx: StageContext) -> bool:
        p: GepaStep = item.payload
        reason = self._rollout_skip(item, ev, ctx)
        # A person asked for this proposal to be judged: never skip it as perfect.
        if not reason and p.human is None and self._skip_perfect and self._perfect_on(ev.scores):
            reason = "all_scores_perfect"
            ctx.end_step("skipped: the parent is already perfect on this minibatch")
        if reason:
            self._on_rollout_skipped(item, ev, reason)
            return True
        return False

    async def _rollout_partial(
        self, item: WorkItem, ctx: StageContext, alpha: float
    ) -> Sequence[WorkItem]:
        p: GepaStep = item.payload
        calls, _ = self._minibatch_parts(ctx, item)
        partial = await release_partial(ctx, calls, alpha, item_id=item.id)
        done = self._combine([partial.done[i] for i in sorted(partial.done)])
        if partial.complete:
            if self._skip(item, done, ctx):
                return []
            return [item.evolve(payload=replace(p, parent_eval=done))]
        if p.human is None and self._skip_perfect and self._perfect_on(done.scores):
            # Only the whole minibatch can show the parent is perfect on it: wait for it.
            whole = self._combine(await partial.all())
            if self._skip(item, whole, ctx):
                return []
            return [item.evolve(payload=replace(p, parent_eval=whole))]
        return [item.evolve(payload=replace(p, parent_eval=done, parent_rest=partial.rest))]

    async def _propose(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: GepaStep = item.payload
        parent = item.artifact
        if p.human is not None:
            # The person's artifact is the proposal: no proposer call, no proposal budget.
            return [self._adopt(item, p.human, ctx, ",".join(p.components))]
        proposal = await self._propose_texts(item, ctx)
        failure = proposal.failure
        changes = {k: v for k, v in proposal.texts.items() if v != parent[k]}
        if not failure and not changes:
            failure = "unchanged: the proposed text equals the current one"
        if failure:
            ctx.emit(
                ProposalFailed(
                    t=ctx.now(), step=item.step, parent_id=parent.id,
                    component=",".join(p.components), reason=failure,
                    answer_excerpt=proposal.raw[-400:],
                )
            )  # fmt: skip
            ctx.end_step(f"proposal failed: {failure}")
            return []
        child = parent.derive(
            ctx.new_id("a"), changes, origin=Origin.PROPOSAL, base_version=item.base_version,
            created_at=ctx.now(), note=self._proposal_note(list(changes)),
            meta={"component_cursor": self._next_component.get(parent.id, 0), **proposal.meta},
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

    async def _gate(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: GepaStep = item.payload
        if p.parent_rest is not None:
            # Fold in the rollout's long tail: the gate compares whole-minibatch sums.
            whole = self._combine(await _fold_in(p.parent_rest))
            p = replace(p, parent_eval=whole, parent_rest=None)
            item = item.evolve(payload=p)
        if not await self._before_gate(item, ctx):
            return []
        ev = await self._evaluate_minibatch(ctx, item, item.artifact, parent=False)
        before, after = sum(p.parent_eval.scores), sum(ev.scores)
        passed = after > before or (self._acceptance == "improvement_or_equal" and after >= before)
        ctx.emit(
            GateResult(
                t=ctx.now(), step=item.step, artifact_id=item.artifact.id,
                parent_id=p.parent_id, parent_score=before, child_score=after, passed=passed,
            )
        )  # fmt: skip
        self._on_gate(item, before, after, passed)
        if not passed:
            ctx.end_step(f"gated out: child {after:g} <= parent {before:g} on the minibatch")
            return []
        return [item.evolve(payload=replace(p, child_eval=ev))]

    async def _validate(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: GepaStep = item.payload
        if p.val_pending is not None:
            # A patched artifact is validated afresh: the stale one's scores are moot.
            p.val_pending.full.cancel()
            p = replace(p, val_pending=None)
            item = item.evolve(payload=p)
        duplicate = self._duplicates.claim(ctx.pool, item.artifact)
        if duplicate:
            ctx.end_step(duplicate)
            return []
        try:
            if not await self._before_validation(item, ctx):
                self._duplicates.release(item.artifact)
                return []
            alpha = stage_alpha(ctx)
            if alpha < 1:
                return await self._validate_partial(item, ctx, alpha)
            scores = tuple(await self._validation_scores(ctx, item))
        except BaseException:
            self._duplicates.release(item.artifact)
            raise
        self._validated(ctx, item, scores)
        return [item.evolve(payload=replace(p, val_scores=scores, validated_id=item.artifact.id))]

    def _validated(self, ctx: StageContext, item: WorkItem, scores: Sequence[float]) -> None:
        self._val_order.observe(scores)
        self._on_validated(ctx, item, scores)
        ctx.emit(
            ValidationDone(
                t=ctx.now(), step=item.step, artifact_id=item.artifact.id,
                score=sum(scores) / len(scores), instances=len(scores),
            )
        )  # fmt: skip

    async def _validate_partial(
        self, item: WorkItem, ctx: StageContext, alpha: float
    ) -> Sequence[WorkItem]:
        """Validation in discriminative order, released once ``alpha`` of it is in."""
        p: GepaStep = item.payload
        order = self._val_order.order()
        calls, sizes = self._validation_parts(ctx, item, order)
        partial = await release_partial(ctx, calls, alpha, item_id=item.id)
        if partial.complete:
            scores = await self._finish_validation(ctx, item, order, partial)
            done = replace(p, val_scores=scores, validated_id=item.artifact.id)
            return [item.evolve(payload=done)]
        full = speculation_of(ctx).spawn_tail(
            item.step,
            self._finish_validation(ctx, item, order, partial),
            name="flashevolve-validation",
        )
        starts = [sum(sizes[:k]) for k in range(len(sizes))]
        measured: dict[int, float] = {}
        for k, part in partial.done.items():
            for j, score in enumerate(self._scores_of(part)):
                measured[order[starts[k] + j]] = score
        pending = PendingValidation(item.artifact.id, measured, full)
        return [item.evolve(payload=replace(p, val_pending=pending, validated_id=item.artifact.id))]

    async def _finish_validation(
        self, ctx: StageContext, item: WorkItem, order: Sequence[int], partial: Partial[Any]
    ) -> tuple[float, ...]:
        parts = await partial.all()
        in_order = [s for part in parts for s in self._scores_of(part)]
        scores = [0.0] * len(order)
        for k, i in enumerate(order):
            scores[i] = in_order[k]
        self._validated(ctx, item, scores)
        return tuple(scores)

    # ---- helpers ----------------------------------------------------------------------
    def _item(
        self, step: int, item_id: str, parent: Artifact, components: tuple[str, ...],
        version: int, now: float,
    ) -> WorkItem:  # fmt: skip
        minibatch = tuple(self._sampler.next_batch())
        payload = GepaStep(parent.id, components, minibatch, self._examples(minibatch))
        return WorkItem(
            id=item_id, step=step, base_version=version, artifact=parent, payload=payload,
            created_at=now,
        )  # fmt: skip


async def _fold_in(rest: asyncio.Task[list[Any]]) -> list[Any]:
    """Await a tail; if the tail (not this stage) was cancelled, that is an error here."""
    try:
        return await rest
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if rest.cancelled() and (task is None or not task.cancelling()):
            raise RuntimeError("the rollout's remaining requests were cancelled") from None
        raise
