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
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from flashevolve_nb.engine import Artifact, StageContext, WorkItem, make_selector
from flashevolve_nb.llm.protocol import LLM, Completion, LLMError, Message
from flashevolve_nb.workloads.gepa.core import EvalParts, GepaCore, GepaStep, Proposal
from flashevolve_nb.workloads.gepa.prompts import (
    ReflectionExample,
    parse_reflection_answer,
    reflection_prompt,
)

__all__ = [
    "Evaluation",
    "Evaluations",
    "GepaConfig",
    "GepaStep",
    "GepaWorkload",
    "Instance",
    "Scored",
    "Task",
]

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
class Evaluations:
    """A candidate's evaluations on some instances, in instance order."""

    evals: tuple[Evaluation, ...]

    @property
    def scores(self) -> tuple[float, ...]:
        return tuple(e.score for e in self.evals)


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


class GepaWorkload(GepaCore):
    """GEPA's loop over any :class:`Task`, with a task and a reflection model."""

    partial_stages: tuple[str, ...] = ("rollout", "validate")
    """Stages that can hand their output on early (an alpha below 1): rollout (propose
    reflects on the examples that finished) and validate (speculative validation)."""

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
        self._seed_candidate = dict(seed_candidate)
        self._train = {inst.id: inst for inst in trainset}
        self._val = list(valset)
        super().__init__(
            components=list(self._seed_candidate),
            train_keys=list(self._train),
            val_size=len(self._val),
            minibatch_size=self.config.minibatch_size,
            selector=make_selector(self.config.candidate_selection),
            seed=seed,
            skip_perfect_score=self.config.skip_perfect_score,
            perfect_score=self.config.perfect_score,
            workers=self.config.workers,
        )

    # ---- Workload protocol ----------------------------------------------
    @property
    def seed_candidate(self) -> Mapping[str, str]:
        return self._seed_candidate

    @property
    def name(self) -> str:
        return f"gepa:{self.task.name}"

    @property
    def backend_name(self) -> str:
        return self.task_lm.name

    def _describe(self, stage: str) -> str:
        return {
            "rollout": "run the parent on a training minibatch",
            "propose": "reflect on the feedback and write a new component text",
            "gate": "run the child on the same minibatch; keep it if it beats the parent",
            "validate": "score the child on the whole validation set",
        }[stage]

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

    # ---- the evaluator: the task model on instances ---------------------------
    def _examples(self, minibatch: Sequence[str]) -> tuple[Any, ...]:
        return tuple(self._train[i] for i in minibatch)

    async def _seed_scores(self, ctx: StageContext, artifact: Artifact) -> Sequence[float]:
        return [e.score for e in await self._evaluate(ctx, artifact, self._val)]

    async def _evaluate_minibatch(
        self, ctx: StageContext, item: WorkItem, artifact: Artifact, *, parent: bool
    ) -> Evaluations:
        p: GepaStep = item.payload
        return Evaluations(tuple(await self._evaluate(ctx, artifact, p.examples)))

    async def _validation_scores(self, ctx: StageContext, item: WorkItem) -> tuple[float, ...]:
        return tuple(e.score for e in await self._evaluate(ctx, item.artifact, self._val))

    def _validation_parts(
        self, ctx: StageContext, item: WorkItem, order: Sequence[int]
    ) -> EvalParts:
        calls = self._eval_calls(ctx, item.artifact, [self._val[i] for i in order])
        return list(calls), [1] * len(calls)

    def _minibatch_parts(self, ctx: StageContext, item: WorkItem) -> EvalParts:
        p: GepaStep = item.payload
        calls = self._eval_calls(ctx, item.artifact, p.examples)
        return list(calls), [1] * len(calls)

    def _scores_of(self, part: Any) -> Sequence[float]:
        evaluation: Evaluation = part
        return (evaluation.score,)

    def _combine(self, parts: Sequence[Any]) -> Evaluations:
        return Evaluations(tuple(parts))

    async def _propose_texts(self, item: WorkItem, ctx: StageContext) -> Proposal:
        p: GepaStep = item.payload
        parent = item.artifact
        evals: Evaluations = p.parent_eval
        examples = [
            ReflectionExample(self._train[e.instance_id].input, e.output, e.score, e.feedback)
            for e in evals.evals
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
            return Proposal(failure=reason, raw=completion.text)
        feedback = [
            {
                "input": x.input[:FEEDBACK_EXCERPT],
                "output": x.output[:FEEDBACK_EXCERPT],
                "score": x.score,
                "feedback": x.feedback[:FEEDBACK_EXCERPT],
            }
            for x in examples
        ]
        # What the reflection read, for a person asking why this text came about.
        return Proposal(
            {p.component: parsed.text}, raw=completion.text, meta={"feedback": feedback}
        )

    def _proposal_note(self, changes: Sequence[str]) -> str:
        return f"reflective proposal for {', '.join(repr(c) for c in changes)}"

    def _eval_calls(
        self, ctx: StageContext, artifact: Artifact, instances: Sequence[Any]
    ) -> list[Coroutine[Any, Any, Evaluation]]:
        """One recorded task call per instance; each counts as a metric call when it ends."""

        async def chat(messages: Sequence[Message], **params: Any) -> Completion:
            return await ctx.chat(self.task_lm, messages, role="task", **params)

        spend = self._meter(ctx, len(instances))

        async def counted(call: Coroutine[Any, Any, Evaluation]) -> Evaluation:
            evaluation = await call
            spend(1)
            return evaluation

        return [counted(c) for c in self._task_calls(artifact.components, instances, chat)]

    # ---- evaluation ----------------------------------------------------------
    async def _evaluate(
        self, ctx: StageContext, artifact: Artifact, instances: Sequence[Any]
    ) -> list[Evaluation]:
        """Run the task model on every instance inside a run: recorded and budgeted."""

        async def chat(messages: Sequence[Message], **params: Any) -> Completion:
            return await ctx.chat(self.task_lm, messages, role="task", **params)

        spend = self._meter(ctx, len(instances))
        evals = await self._run_task(artifact.components, instances, chat)
        spend(len(evals))
        return evals

    @staticmethod
    def _meter(ctx: StageContext, n: int) -> Callable[[int], None]:
        """How ``n`` metric calls about to be made are counted: against the step's
        reservation under a hard cap, else reserved per stage run (the default budget)."""
        cap = ctx.metric_cap
        if cap is not None:
            step = ctx.step
            return lambda k: cap.spend(step, k)
        return ctx.reserve_metric_calls(n).spend

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
