"""GEPA as a workload: rollout, reflective proposal, minibatch gate, validation.

One evolution step: select a parent from the pool's per-instance Pareto
fronts, take the next epoch-shuffled training minibatch, run the parent on it
(``rollout``), ask the reflection model for a new text of one component chosen
round-robin (``propose``), run the child on the same minibatch and keep it
only if its sum beats the parent's (``gate``), score it on the whole
validation set (``validate``), and hand it to the pool (admission).

Each stage sends all of its requests at once, at most ``request_concurrency``
at a time (``gepa``'s default adapter evaluates a batch on a thread pool of
10), and waits for all of them: so the synchronous schedule of this workload
is GEPA's, and the asynchronous one differs only in how steps overlap.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from flashevolve_nb.engine import (
    Artifact,
    Origin,
    ParentSelector,
    Pool,
    StageContext,
    StageSpec,
    WorkItem,
    make_selector,
)
from flashevolve_nb.engine.duplicates import Duplicates
from flashevolve_nb.engine.events import GateResult, ProposalFailed, ProposalMade, ValidationDone
from flashevolve_nb.engine.partial import Partial, release_partial
from flashevolve_nb.engine.speculation import PendingValidation, speculation_of, stage_alpha
from flashevolve_nb.engine.validation_order import DiscriminativeOrder
from flashevolve_nb.engine.workload import SeedEntry
from flashevolve_nb.llm.protocol import LLM, Completion, LLMError, Message
from flashevolve_nb.workloads.gepa.prompts import (
    ReflectionExample,
    parse_reflection_answer,
    reflection_prompt,
)
from flashevolve_nb.workloads.gepa.sampler import EpochShuffledSampler

__all__ = ["Evaluation", "GepaConfig", "GepaStep", "GepaWorkload", "Instance", "Scored", "Task"]

FEEDBACK_EXCERPT = 600
"""Characters of each reflection example kept in a proposal's ``meta["feedback"]``."""


class Instance(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def input(self) -> str: ...


class Scored(Protocol):
    @property
    def score(self) -> float: ...

    @property
    def feedback(self) -> str: ...


class Task(Protocol):
    """How to ask the task model about an instance and how to score its answer."""

    @property
    def name(self) -> str: ...

    def messages(self, components: Mapping[str, str], instance: Any) -> list[dict[str, str]]: ...

    def score(self, instance: Any, output: str) -> Scored: ...


@dataclass(frozen=True, slots=True)
class Evaluation:
    instance_id: str
    output: str
    score: float
    feedback: str


@dataclass(frozen=True, slots=True)
class GepaStep:
    """The payload of a GEPA work item; grows as the step moves through stages."""

    parent_id: str
    component: str
    minibatch: tuple[str, ...]
    parent_evals: tuple[Evaluation, ...] = ()
    child_evals: tuple[Evaluation, ...] = ()
    val_scores: tuple[float, ...] = ()
    parent_rest: asyncio.Task[list[Evaluation]] | None = None
    """Rollout released early: the rest of the parent's minibatch results (the gate folds
    them in)."""
    val_pending: PendingValidation | None = None
    """Validation released early: the scores so far and the task finishing the rest."""
    human: Artifact | None = None
    """A person's artifact: the propose stage adopts it instead of asking the reflection LM."""


@dataclass(frozen=True)
class GepaConfig:
    minibatch_size: int = 3
    candidate_selection: str = "pareto"
    """``pareto`` (GEPA's default), ``current_best`` or ``epsilon_greedy[:EPS]``."""
    request_concurrency: int = 10
    """LLM requests one stage of one step keeps in flight at most."""
    skip_perfect_score: bool = True
    """Like ``gepa``: no proposal from a minibatch the parent already solves perfectly."""
    perfect_score: float = 1.0
    task_max_tokens: int | None = None
    reflection_max_tokens: int | None = None
    task_params: Mapping[str, Any] = field(default_factory=dict)
    reflection_params: Mapping[str, Any] = field(default_factory=dict)
    workers: Mapping[str, int] = field(
        default_factory=lambda: {"rollout": 8, "propose": 8, "gate": 8, "validate": 8}
    )

    def __post_init__(self) -> None:
        if self.minibatch_size < 1:
            raise ValueError(f"GepaConfig.minibatch_size must be >= 1 (got {self.minibatch_size})")
        if self.request_concurrency < 1:
            raise ValueError(
                f"GepaConfig.request_concurrency must be >= 1 (got {self.request_concurrency})"
            )
        make_selector(self.candidate_selection)


class GepaWorkload:
    """GEPA's loop over any :class:`Task`, with a task and a reflection model."""

    def __init__(
        self,
        task: Task,
        trainset: Sequence[Any],
        valset: Sequence[Any],
        seed_candidate: Mapping[str, str],
        task_lm: LLM,
        reflection_lm: LLM | None = None,
        config: GepaConfig | None = None,
        *,
        seed: int = 0,
        repair_lm: LLM | None = None,
    ) -> None:
        if not trainset:
            raise ValueError("GEPA needs a non-empty trainset to draw minibatches from")
        if not valset:
            raise ValueError("GEPA needs a non-empty valset to score candidates on")
        if not seed_candidate:
            raise ValueError("the seed candidate needs at least one component")
        self.task = task
        self.config = config or GepaConfig()
        self.task_lm = task_lm
        self.reflection_lm = reflection_lm or task_lm
        # Repair is a reflection-like job: by default the same model serves it.
        self.repair_lm = repair_lm or self.reflection_lm
        self.seed_candidate = dict(seed_candidate)
        self._train = {inst.id: inst for inst in trainset}
        self._val = list(valset)
        self._val_order = DiscriminativeOrder(len(self._val), pass_score=self.config.perfect_score)
        self._duplicates = Duplicates()
        self._selector: ParentSelector = make_selector(self.config.candidate_selection)
        self._sampler = EpochShuffledSampler(
            list(self._train), self.config.minibatch_size, random.Random(f"{seed}:minibatch")
        )
        # Round-robin component choice, per parent artifact (as in gepa).
        self._next_component: dict[str, int] = {}
        self._components = list(self.seed_candidate)

    # ---- Workload protocol ----------------------------------------------
    validation_stage = "validate"
    partial_stages: tuple[str, ...] = ("rollout", "validate")
    """Stages that can hand their output on early (an alpha below 1): rollout (propose
    reflects on the examples that finished) and validate (speculative validation)."""
    """Where a repaired (patched) artifact re-enters: it is validated before admission."""

    default_decision_points: tuple[str, ...] = ("validate", "admit")
    """Stale proposals meet the policy after the gate (before validation) and before
    admission: the first saves validation work, the second sees the newest pool."""

    @property
    def name(self) -> str:
        return f"gepa:{self.task.name}"

    @property
    def backend_name(self) -> str:
        return self.task_lm.name

    def stages(self) -> Sequence[StageSpec]:
        w = self.config.workers
        mc = frozenset({"metric_calls"})
        return (
            StageSpec("rollout", self._rollout, w.get("rollout", 8), mc,
                      "run the parent on a training minibatch"),
            StageSpec("propose", self._propose, w.get("propose", 8), frozenset({"proposals"}),
                      "reflect on the feedback and write a new component text"),
            StageSpec("gate", self._gate, w.get("gate", 8), mc,
                      "run the child on the same minibatch; keep it if it beats the parent"),
            StageSpec("validate", self._validate, w.get("validate", 8), mc,
                      "score the child on the whole validation set"),
        )  # fmt: skip

    def instance_ids(self) -> Sequence[str]:
        return [inst.id for inst in self._val]

    def llm_for(self, role: str) -> LLM:
        """The model serving ``role``: ``task``, ``reflection`` or ``repair``."""
        if role == "task":
            return self.task_lm
        if role == "reflection":
            return self.reflection_lm
        if role == "repair":
            return self.repair_lm
        raise KeyError(f"no model for role {role!r}; roles: task, reflection, repair")

    async def seed(self, ctx: StageContext) -> Sequence[SeedEntry]:
        artifact = Artifact(
            id=ctx.new_id("a"), components=self.seed_candidate, origin=Origin.SEED,
            created_at=ctx.now(), note="seed candidate",
        )  # fmt: skip
        evals = await self._evaluate(ctx, artifact, self._val)
        scores = [e.score for e in evals]
        self._val_order.observe(scores)
        ctx.emit(
            ValidationDone(
                t=ctx.now(), step=0, artifact_id=artifact.id,
                score=sum(scores) / len(scores), instances=len(scores),
            )
        )  # fmt: skip
        return [(artifact, scores)]

    def begin_step(
        self, step: int, item_id: str, pool: Pool, rng: random.Random, now: float
    ) -> WorkItem | None:
        parent = self._selector.select(pool, rng).artifact
        return self.begin_step_from(step, item_id, parent, pool, rng, now)

    def begin_step_from(
        self, step: int, item_id: str, parent: Artifact, pool: Pool, rng: random.Random, now: float
    ) -> WorkItem:
        """A step from a given parent: a resumed run re-derives a step cut off by a crash."""
        k = self._next_component.get(parent.id)
        if k is None:
            # A child starts where its parent's rotation was when it was proposed (as in
            # gepa); kept on the artifact, so this map only ever holds actual parents.
            k = int(parent.meta.get("component_cursor", 0))
        component = self._components[k % len(self._components)]
        self._next_component[parent.id] = k + 1
        return WorkItem(
            id=item_id,
            step=step,
            base_version=pool.version,
            artifact=parent,
            payload=GepaStep(parent.id, component, tuple(self._sampler.next_batch())),
            created_at=now,
        )

    def restore_progress(self, pool: Pool, steps: int) -> None:
        """A resumed run has begun ``steps`` steps: move the minibatch sampler past them,
        so the run goes on with new minibatches instead of repeating the first ones."""
        for _ in range(steps):
            self._sampler.next_batch()

    def admission(self, item: WorkItem) -> Sequence[float]:
        payload: GepaStep = item.payload
        return payload.val_scores

    # ---- human steps (engine.workload.HumanSteps) ---------------------------
    def begin_human_step(
        self,
        step: int,
        item_id: str,
        artifact: Artifact,
        pool: Pool,
        rng: random.Random,
        now: float,
    ) -> WorkItem:
        """A step whose proposal is a person's ``artifact``: the parent is rolled out on a
        fresh minibatch, the propose stage adopts ``artifact``, and gate and validation
        judge it as they judge any proposal."""
        parent = pool.entry(artifact.parents[0]).artifact
        if set(artifact) != set(parent):
            raise ValueError(
                f"a human artifact has the components of its parent {list(parent)} "
                f"(got {list(artifact)})"
            )
        changed = [k for k in artifact if artifact[k] != parent[k]]
        component = changed[0] if changed else self._components[0]
        return WorkItem(
            id=item_id,
            step=step,
            base_version=pool.version,
            artifact=parent,
            payload=GepaStep(
                parent.id, component, tuple(self._sampler.next_batch()), human=artifact
            ),
            created_at=now,
        )

    def with_human_artifact(self, item: WorkItem, artifact: Artifact) -> WorkItem:
        """Before the proposal, ``artifact`` becomes the step's proposal; after it, the
        person's artifact takes the proposal's place at the gate or validation."""
        p: GepaStep = item.payload
        if item.artifact.id == p.parent_id:
            return item.evolve(payload=_replace(p, human=artifact))
        return item.evolve(artifact=artifact)

    # ---- stages ------------------------------------------------------------
    async def _rollout(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: GepaStep = item.payload
        alpha = stage_alpha(ctx)
        if alpha < 1:
            return await self._rollout_partial(item, ctx, alpha)
        evals = await self._evaluate(ctx, item.artifact, [self._train[i] for i in p.minibatch])
        # A person asked for this proposal to be judged: never skip it.
        if (
            p.human is None
            and self.config.skip_perfect_score
            and all(e.score >= self.config.perfect_score for e in evals)
        ):
            ctx.end_step("skipped: the parent is already perfect on this minibatch")
            return []
        return [item.evolve(payload=_replace(p, parent_evals=tuple(evals)))]

    async def _propose(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: GepaStep = item.payload
        parent = item.artifact
        if p.human is not None:
            return self._adopt_human(item, p.human, ctx)
        examples = [
            ReflectionExample(self._train[e.instance_id].input, e.output, e.score, e.feedback)
            for e in p.parent_evals
        ]
        prompt = reflection_prompt(p.component, parent[p.component], examples)
        params = dict(self.config.reflection_params)
        if self.config.reflection_max_tokens is not None:
            params["max_tokens"] = self.config.reflection_max_tokens
        completion = await ctx.chat(
            self.reflection_lm, [{"role": "user", "content": prompt}], role="reflection", **params
        )
        parsed = parse_reflection_answer(completion.text, completion.finish_reason)
        reason = parsed.reason
        if parsed.text is not None and parsed.text.strip() == parent[p.component].strip():
            reason = "unchanged: the proposed text equals the current one"
        if parsed.text is None or reason:
            ctx.emit(
                ProposalFailed(
                    t=ctx.now(), step=item.step, parent_id=parent.id, component=p.component,
                    reason=reason, answer_excerpt=completion.text[-400:],
                )
            )  # fmt: skip
            ctx.end_step(f"proposal failed: {reason}")
            return []
        child = parent.derive(
            ctx.new_id("a"),
            {p.component: parsed.text},
            origin=Origin.PROPOSAL,
            base_version=item.base_version,
            created_at=ctx.now(),
            note=f"reflective proposal for {p.component!r}",
            meta={
                "component_cursor": self._next_component.get(parent.id, 0),
                # What the reflection read, for a person asking why this text came about.
                "feedback": [
                    {
                        "input": x.input[:FEEDBACK_EXCERPT],
                        "output": x.output[:FEEDBACK_EXCERPT],
                        "score": x.score,
                        "feedback": x.feedback[:FEEDBACK_EXCERPT],
                    }
                    for x in examples
                ],
            },
        )
        ctx.count_proposal()
        ctx.emit(
            ProposalMade(
                t=ctx.now(), step=item.step, artifact_id=child.id, parent_id=parent.id,
                component=p.component,
            )
        )  # fmt: skip
        return [item.evolve(artifact=child)]

    def _adopt_human(
        self, item: WorkItem, child: Artifact, ctx: StageContext
    ) -> Sequence[WorkItem]:
        """The person's artifact is the proposal: no reflection call, no proposal budget spent."""
        p: GepaStep = item.payload
        self._next_component[child.id] = self._next_component.get(item.artifact.id, 0)
        ctx.emit(
            ProposalMade(
                t=ctx.now(), step=item.step, artifact_id=child.id, parent_id=item.artifact.id,
                component=p.component,
            )
        )  # fmt: skip
        return [item.evolve(artifact=child, payload=_replace(p, human=None))]

    async def _gate(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: GepaStep = item.payload
        if p.parent_rest is not None:
            # Fold in the rollout's long tail: the gate compares whole-minibatch sums.
            p = _replace(p, parent_evals=tuple(await _fold_in(p.parent_rest)), parent_rest=None)
            item = item.evolve(payload=p)
        evals = await self._evaluate(ctx, item.artifact, [self._train[i] for i in p.minibatch])
        parent_sum = sum(e.score for e in p.parent_evals)
        child_sum = sum(e.score for e in evals)
        passed = child_sum > parent_sum
        ctx.emit(
            GateResult(
                t=ctx.now(), step=item.step, artifact_id=item.artifact.id,
                parent_id=p.parent_id, parent_score=parent_sum, child_score=child_sum,
                passed=passed,
            )
        )  # fmt: skip
        if not passed:
            ctx.end_step(
                f"gated out: child {child_sum:g} <= parent {parent_sum:g} on the minibatch"
            )
            return []
        return [item.evolve(payload=_replace(p, child_evals=tuple(evals)))]

    async def _validate(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: GepaStep = item.payload
        if p.val_pending is not None:
            # A patched artifact is validated afresh: the stale one's scores are moot.
            p.val_pending.full.cancel()
            p = _replace(p, val_pending=None)
            item = item.evolve(payload=p)
        duplicate = self._duplicates.claim(ctx.pool, item.artifact)
        if duplicate:
            ctx.end_step(duplicate)
            return []
        alpha = stage_alpha(ctx)
        try:
            if alpha < 1:
                return await self._validate_partial(item, ctx, alpha)
            evals = await self._evaluate(ctx, item.artifact, self._val)
        except BaseException:
            self._duplicates.release(item.artifact)
            raise
        scores = tuple(e.score for e in evals)
        self._val_order.observe(scores)
        ctx.emit(
            ValidationDone(
                t=ctx.now(), step=item.step, artifact_id=item.artifact.id,
                score=sum(scores) / len(scores), instances=len(scores),
            )
        )  # fmt: skip
        return [item.evolve(payload=_replace(p, val_scores=scores))]

    # ---- speculative completion (engine.partial, engine.speculation) ----------
    def pending_validation(self, item: WorkItem) -> PendingValidation | None:
        """The validation still running for ``item`` at admission (None: it is complete)."""
        payload = item.payload
        return payload.val_pending if isinstance(payload, GepaStep) else None

    def validation_order(self) -> tuple[int, ...]:
        """Validation instance indices, most discriminative first (used when released early)."""
        return self._val_order.order()

    async def _rollout_partial(
        self, item: WorkItem, ctx: StageContext, alpha: float
    ) -> Sequence[WorkItem]:
        p: GepaStep = item.payload
        calls = self._eval_calls(ctx, item.artifact, [self._train[i] for i in p.minibatch])
        partial = await release_partial(ctx, calls, alpha, item_id=item.id)
        done = tuple(partial.done[i] for i in sorted(partial.done))
        perfect = self.config.perfect_score
        if (
            p.human is None
            and self.config.skip_perfect_score
            and all(e.score >= perfect for e in done)
        ):
            # Only the whole minibatch can show the parent is perfect on it: wait for it.
            evals = await partial.all()
            if all(e.score >= perfect for e in evals):
                ctx.end_step("skipped: the parent is already perfect on this minibatch")
                return []
            return [item.evolve(payload=_replace(p, parent_evals=tuple(evals)))]
        return [item.evolve(payload=_replace(p, parent_evals=done, parent_rest=partial.rest))]

    async def _validate_partial(
        self, item: WorkItem, ctx: StageContext, alpha: float
    ) -> Sequence[WorkItem]:
        """Validation in discriminative order, released once ``alpha`` of it is in."""
        p: GepaStep = item.payload
        order = self._val_order.order()
        calls = self._eval_calls(ctx, item.artifact, [self._val[i] for i in order])
        partial = await release_partial(ctx, calls, alpha, item_id=item.id)
        if partial.complete:
            scores = await self._finish_validation(ctx, item, order, partial)
            return [item.evolve(payload=_replace(p, val_scores=scores))]
        full = speculation_of(ctx).spawn_tail(
            item.step,
            self._finish_validation(ctx, item, order, partial),
            name="flashevolve-validation",
        )
        measured = {order[k]: e.score for k, e in partial.done.items()}
        pending = PendingValidation(item.artifact.id, measured, full)
        return [item.evolve(payload=_replace(p, val_pending=pending))]

    async def _finish_validation(
        self,
        ctx: StageContext,
        item: WorkItem,
        order: Sequence[int],
        partial: Partial[Evaluation],
    ) -> tuple[float, ...]:
        evals = await partial.all()
        scores = [0.0] * len(order)
        for k, i in enumerate(order):
            scores[i] = evals[k].score
        self._val_order.observe(scores)
        ctx.emit(
            ValidationDone(
                t=ctx.now(), step=item.step, artifact_id=item.artifact.id,
                score=sum(scores) / len(scores), instances=len(scores),
            )
        )  # fmt: skip
        return tuple(scores)

    def _eval_calls(
        self, ctx: StageContext, artifact: Artifact, instances: Sequence[Any]
    ) -> list[Coroutine[Any, Any, Evaluation]]:
        """One recorded task call per instance; each counts as a metric call when it ends."""

        async def chat(messages: Sequence[Message], **params: Any) -> Completion:
            return await ctx.chat(self.task_lm, messages, role="task", **params)

        reservation = ctx.reserve_metric_calls(len(instances))

        async def counted(call: Coroutine[Any, Any, Evaluation]) -> Evaluation:
            evaluation = await call
            reservation.spend(1)
            return evaluation

        return [counted(c) for c in self._task_calls(artifact.components, instances, chat)]

    # ---- evaluation ----------------------------------------------------------
    async def _evaluate(
        self, ctx: StageContext, artifact: Artifact, instances: Sequence[Any]
    ) -> list[Evaluation]:
        """Run the task model on every instance inside a run: recorded and budgeted."""

        async def chat(messages: Sequence[Message], **params: Any) -> Completion:
            return await ctx.chat(self.task_lm, messages, role="task", **params)

        reservation = ctx.reserve_metric_calls(len(instances))
        evals = await self._run_task(artifact.components, instances, chat)
        reservation.spend(len(evals))
        return evals

    async def evaluate(
        self, candidate: Mapping[str, str], instances: Sequence[Any]
    ) -> list[Evaluation]:
        """Score ``candidate`` outside any run, e.g. the best one on a held-out test split.

        Uses the task model directly: no events, not counted in any budget.
        """
        return await self._run_task(candidate, instances, self.task_lm.chat)

    async def _run_task(
        self,
        components: Mapping[str, str],
        instances: Sequence[Any],
        chat: Callable[..., Awaitable[Completion]],
    ) -> list[Evaluation]:
        """Every instance through the task model, ``request_concurrency`` at a time."""
        return list(await asyncio.gather(*self._task_calls(components, instances, chat)))

    def _task_calls(
        self,
        components: Mapping[str, str],
        instances: Sequence[Any],
        chat: Callable[..., Awaitable[Completion]],
    ) -> list[Coroutine[Any, Any, Evaluation]]:
        """One call per instance, all sharing a limit of ``request_concurrency`` in flight."""
        limit = asyncio.Semaphore(self.config.request_concurrency)
        params = dict(self.config.task_params)
        if self.config.task_max_tokens is not None:
            params["max_tokens"] = self.config.task_max_tokens

        async def one(inst: Any) -> Evaluation:
            messages: list[Message] = list(self.task.messages(components, inst))
            async with limit:
                try:
                    completion = await chat(messages, **params)
                except LLMError as exc:
                    # As gepa's adapters do: a failed example scores 0 and says why.
                    return Evaluation(inst.id, "", 0.0, f"The model call failed: {exc}")
            scored = self.task.score(inst, completion.text)
            score = float(scored.score)
            if not math.isfinite(score):
                # NaN compares false with everything: gates, means and fronts would lie.
                raise ValueError(
                    f"{type(self.task).__name__}.score returned the non-finite score {score!r} "
                    f"for example {inst.id!r}; scores must be finite numbers (score a failed "
                    "answer 0.0)"
                )
            return Evaluation(inst.id, completion.text, score, scored.feedback)

        return [one(inst) for inst in instances]


def _replace(p: GepaStep, **changes: Any) -> GepaStep:
    return replace(p, **changes)


async def _fold_in(rest: asyncio.Task[list[Evaluation]]) -> list[Evaluation]:
    """Await a tail; if the tail (not this stage) was cancelled, that is an error here."""
    try:
        return await rest
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if rest.cancelled() and (task is None or not task.cancelling()):
            raise RuntimeError("the rollout's remaining requests were cancelled") from None
        raise
