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
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
from flashevolve_nb.engine.events import GateResult, ProposalFailed, ProposalMade, ValidationDone
from flashevolve_nb.engine.workload import SeedEntry
from flashevolve_nb.llm.protocol import LLM, Completion, LLMError, Message
from flashevolve_nb.workloads.gepa.prompts import (
    ReflectionExample,
    parse_reflection_answer,
    reflection_prompt,
)
from flashevolve_nb.workloads.gepa.sampler import EpochShuffledSampler

__all__ = ["Evaluation", "GepaConfig", "GepaStep", "GepaWorkload", "Instance", "Scored", "Task"]


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
        self.seed_candidate = dict(seed_candidate)
        self._train = {inst.id: inst for inst in trainset}
        self._val = list(valset)
        self._selector: ParentSelector = make_selector(self.config.candidate_selection)
        self._sampler = EpochShuffledSampler(
            list(self._train), self.config.minibatch_size, random.Random(f"{seed}:minibatch")
        )
        # Round-robin component choice, per parent artifact (as in gepa).
        self._next_component: dict[str, int] = {}
        self._components = list(self.seed_candidate)

    # ---- Workload protocol ----------------------------------------------
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

    async def seed(self, ctx: StageContext) -> Sequence[SeedEntry]:
        artifact = Artifact(
            id=ctx.new_id("a"), components=self.seed_candidate, origin=Origin.SEED,
            created_at=ctx.now(), note="seed candidate",
        )  # fmt: skip
        evals = await self._evaluate(ctx, artifact, self._val)
        scores = [e.score for e in evals]
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
        k = self._next_component.get(parent.id, 0)
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

    def admission(self, item: WorkItem) -> Sequence[float]:
        payload: GepaStep = item.payload
        return payload.val_scores

    # ---- stages ------------------------------------------------------------
    async def _rollout(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: GepaStep = item.payload
        evals = await self._evaluate(ctx, item.artifact, [self._train[i] for i in p.minibatch])
        if self.config.skip_perfect_score and all(
            e.score >= self.config.perfect_score for e in evals
        ):
            ctx.end_step("skipped: the parent is already perfect on this minibatch")
            return []
        return [item.evolve(payload=_replace(p, parent_evals=tuple(evals)))]

    async def _propose(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: GepaStep = item.payload
        parent = item.artifact
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
        )
        self._next_component[child.id] = self._next_component.get(parent.id, 0)
        ctx.count_proposal()
        ctx.emit(
            ProposalMade(
                t=ctx.now(), step=item.step, artifact_id=child.id, parent_id=parent.id,
                component=p.component,
            )
        )  # fmt: skip
        return [item.evolve(artifact=child)]

    async def _gate(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: GepaStep = item.payload
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
        evals = await self._evaluate(ctx, item.artifact, self._val)
        scores = tuple(e.score for e in evals)
        ctx.emit(
            ValidationDone(
                t=ctx.now(), step=item.step, artifact_id=item.artifact.id,
                score=sum(scores) / len(scores), instances=len(scores),
            )
        )  # fmt: skip
        return [item.evolve(payload=_replace(p, val_scores=scores))]

    # ---- evaluation ----------------------------------------------------------
    async def _evaluate(
        self, ctx: StageContext, artifact: Artifact, instances: Sequence[Any]
    ) -> list[Evaluation]:
        """Run the task model on every instance inside a run: recorded and budgeted."""

        async def chat(messages: Sequence[Message], **params: Any) -> Completion:
            return await ctx.chat(self.task_lm, messages, role="task", **params)

        evals = await self._run_task(artifact.components, instances, chat)
        ctx.count_metric_calls(len(evals))
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
            return Evaluation(inst.id, completion.text, float(scored.score), scored.feedback)

        return list(await asyncio.gather(*(one(inst) for inst in instances)))


def _replace(p: GepaStep, **changes: Any) -> GepaStep:
    return replace(p, **changes)
