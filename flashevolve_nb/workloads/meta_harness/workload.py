"""Meta-Harness as a workload: propose a harness program, evaluate it, admit it.

One evolution step: take a parent harness from the pool's front (accuracy
against context tokens); the **proposer** reads the history directory
(:mod:`.history`: every earlier candidate's code, scores and traces) and the
parent, and writes a new program (``propose``); **evaluation** runs it in
the sandbox (:mod:`.sandbox`), which checks its syntax, imports it, feeds it
the labelled training examples and asks it for every validation task's
messages (untrusted code is never even compiled here); this process sends those
messages to the task model, scores the answers and writes the candidate's
folder to the history (``evaluate``). Every candidate that ran is admitted:
the pool is append-only and its front of accuracy against context tokens
(the :class:`~flashevolve_nb.engine.workload.Objectives` capability) is what
parent selection samples from. A candidate that fails (no code in the
answer, a syntax error, a crash, a timeout, too much memory, a forbidden
action) ends its step with the reason; the run goes on.

Staleness: a stale candidate is still a valid program; what it lost is
information (history written since its proposer read the directory).
"""

from __future__ import annotations

import asyncio
import math
import random
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
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
from flashevolve_nb.engine.events import ProposalFailed, ProposalMade, ValidationDone
from flashevolve_nb.engine.pool import Direction
from flashevolve_nb.engine.workload import SeedEntry
from flashevolve_nb.llm.protocol import LLM, LLMError, Message
from flashevolve_nb.workloads.meta_harness.harness import COMPONENT
from flashevolve_nb.workloads.meta_harness.history import CandidateRecord, HistoryDir
from flashevolve_nb.workloads.meta_harness.prompts import parse_proposal, proposer_prompt
from flashevolve_nb.workloads.meta_harness.sandbox import Sandbox, SandboxResult

__all__ = ["MetaHarnessConfig", "MetaHarnessStep", "MetaHarnessTask", "MetaHarnessWorkload"]

TOKENS = "context_tokens"
"""The objective beside accuracy: prompt tokens the task model reads per task
(all samples together), lower is better."""


class MetaHarnessTask(Protocol):
    """How an answer to a task (``.id``, ``.input``) is scored, with feedback.

    Training examples also carry ``.output``, the label a harness may store.
    """

    @property
    def name(self) -> str: ...

    def score(self, instance: Any, output: str) -> Any:
        """An object with ``score`` (a finite float) and ``feedback`` (text)."""
        ...

    def answer_of(self, output: str) -> str:
        """The answer a model's output gives (for the self-consistency vote)."""
        ...


@dataclass(frozen=True)
class MetaHarnessConfig:
    candidate_selection: str = "pareto"
    """Parent selection over the pool's fronts (accuracy against context tokens)."""
    request_concurrency: int = 10
    """Task-model requests one evaluation keeps in flight at most."""
    history_chars: int = 200_000
    """How much of the history directory the proposer's prompt shows (newest first)."""
    history_dir: Path | None = None
    """Where the run's history goes (None: a new temporary directory)."""
    proposer_max_tokens: int | None = None
    task_max_tokens: int | None = None
    workers: Mapping[str, int] = field(default_factory=lambda: {"propose": 8, "evaluate": 8})

    def __post_init__(self) -> None:
        if self.request_concurrency < 1:
            raise ValueError(
                f"MetaHarnessConfig.request_concurrency must be >= 1 "
                f"(got {self.request_concurrency})"
            )
        if self.history_chars < 1000:
            raise ValueError(f"history_chars must be >= 1000 (got {self.history_chars})")
        make_selector(self.candidate_selection)


@dataclass(frozen=True, slots=True)
class MetaHarnessStep:
    """The payload of a Meta-Harness work item."""

    parent_id: str
    rationale: str = ""
    val_scores: tuple[float, ...] = ()
    context_tokens: float | None = None


@dataclass(frozen=True, slots=True)
class _Trial:
    """One validation task: what the harness showed, what came back."""

    task_id: str
    messages: tuple[Message, ...]
    answers: tuple[str, ...]
    answer: str
    score: float
    feedback: str
    prompt_tokens: int

    def trace(self) -> dict[str, Any]:
        return {
            "task": self.task_id, "messages": [dict(m) for m in self.messages],
            "answers": list(self.answers), "answer": self.answer, "score": self.score,
            "feedback": self.feedback, "prompt_tokens": self.prompt_tokens,
        }  # fmt: skip


class MetaHarnessWorkload:
    """Meta-Harness's loop over any :class:`MetaHarnessTask`, with a proposer and a task model."""

    validation_stage = "evaluate"

    def __init__(
        self,
        task: MetaHarnessTask,
        trainset: Sequence[Any],
        valset: Sequence[Any],
        seed_harness: str,
        task_lm: LLM,
        proposer_lm: LLM | None = None,
        config: MetaHarnessConfig | None = None,
        *,
        sandbox: Sandbox | None = None,
    ) -> None:
        if not trainset:
            raise ValueError("Meta-Harness needs a non-empty trainset (the harness's memory)")
        if not valset:
            raise ValueError("Meta-Harness needs a non-empty valset to score harnesses on")
        self.task = task
        self.config = config or MetaHarnessConfig()
        self.task_lm = task_lm
        self.proposer_lm = proposer_lm or task_lm
        self.seed_harness = seed_harness
        self.sandbox = sandbox or Sandbox()
        self._train = list(trainset)
        self._val = list(valset)
        root = self.config.history_dir or Path(tempfile.mkdtemp(prefix="flashevolve-mh-"))
        self.history = HistoryDir(root)
        self._measured: dict[str, dict[str, float]] = {}
        self._duplicates = Duplicates()
        self._selector: ParentSelector = make_selector(self.config.candidate_selection)
        self.failures: Counter[str] = Counter()
        """Failed candidates by kind (``timeout``, ``import``, ``syntax``...)."""

    # ---- Workload protocol ----------------------------------------------
    @property
    def name(self) -> str:
        return f"meta-harness:{self.task.name}"

    @property
    def backend_name(self) -> str:
        return self.task_lm.name

    def stages(self) -> Sequence[StageSpec]:
        w = self.config.workers
        return (
            StageSpec("propose", self._propose, w.get("propose", 8), frozenset({"proposals"}),
                      "read every earlier candidate's code, scores and traces; write a harness"),
            StageSpec("evaluate", self._evaluate_stage, w.get("evaluate", 8),
                      frozenset({"metric_calls"}),
                      "syntax check, sandboxed run, then the task model on the validation set"),
        )  # fmt: skip

    def instance_ids(self) -> Sequence[str]:
        return [inst.id for inst in self._val]

    def llm_for(self, role: str) -> LLM:
        """The model serving ``role``: ``task``, or ``proposer`` (``reflection``, ``repair``)."""
        if role == "task":
            return self.task_lm
        if role in ("proposer", "reflection", "repair"):
            return self.proposer_lm
        raise KeyError(f"no model for role {role!r}; roles: task, proposer")

    @property
    def objectives(self) -> Mapping[str, Direction]:
        """Context tokens per task, lower is better, beside accuracy."""
        return {TOKENS: "min"}

    def objectives_of(self, artifact: Artifact) -> Mapping[str, float]:
        """The context tokens measured when ``artifact`` was evaluated."""
        return self._measured.get(artifact.id, {})

    async def seed(self, ctx: StageContext) -> Sequence[SeedEntry]:
        artifact = Artifact(
            id=ctx.new_id("a"), components={COMPONENT: self.seed_harness},
            origin=Origin.SEED, created_at=ctx.now(), note="seed harness",
        )  # fmt: skip
        outcome = await self._evaluate(ctx, artifact, None, 0)
        if isinstance(outcome, str):
            raise ValueError(f"the seed harness fails: {outcome}")
        scores, _ = outcome
        return [(artifact, scores)]

    def begin_step(
        self, step: int, item_id: str, pool: Pool, rng: random.Random, now: float
    ) -> WorkItem | None:
        parent = self._selector.select(pool, rng).artifact
        return self.begin_step_from(step, item_id, parent, pool, rng, now)

    def begin_step_from(
        self, step: int, item_id: str, parent: Artifact, pool: Pool, rng: random.Random, now: float
    ) -> WorkItem:
        return WorkItem(
            id=item_id, step=step, base_version=pool.version, artifact=parent,
            payload=MetaHarnessStep(parent.id), created_at=now,
        )  # fmt: skip

    def restore_progress(self, pool: Pool, steps: int) -> None:
        """A resumed run: the stored pool knows each harness's objectives already, and
        the history gets a folder for each pooled harness it lacks (a history in a new
        directory: the earlier one was temporary), without traces, which only the
        earlier directory held."""
        recorded = self.history.candidates()
        for entry in sorted(pool, key=lambda e: e.version):
            a = entry.artifact
            if entry.objectives:
                self._measured[a.id] = dict(entry.objectives)
            if a.id not in recorded and isinstance(a.components.get(COMPONENT), str):
                self.history.record(
                    CandidateRecord(
                        a.id, a.parents[0] if a.parents else None, -1, a[COMPONENT],
                        "evaluated", "restored from the run store; its traces were not kept",
                        accuracy=entry.score, context_tokens=entry.objectives.get(TOKENS),
                        scores=dict(zip(pool.instance_ids, entry.scores, strict=False)),
                    )
                )  # fmt: skip

    def admission(self, item: WorkItem) -> Sequence[float]:
        payload: MetaHarnessStep = item.payload
        return payload.val_scores

    # ---- stages ------------------------------------------------------------
    async def _propose(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: MetaHarnessStep = item.payload
        parent = item.artifact
        accuracy = ctx.pool.entry(parent.id).score if parent.id in ctx.pool else float("nan")
        prompt = proposer_prompt(
            self.history.render(self.config.history_chars), parent.id, parent[COMPONENT],
            accuracy, self._measured.get(parent.id, {}).get(TOKENS),
        )  # fmt: skip
        params: dict[str, Any] = {}
        if self.config.proposer_max_tokens is not None:
            params["max_tokens"] = self.config.proposer_max_tokens
        completion = await ctx.chat(
            self.proposer_lm, [{"role": "user", "content": prompt}], role="proposer", **params
        )
        parsed = parse_proposal(completion.text, completion.finish_reason)
        if parsed.code is None:
            ctx.emit(
                ProposalFailed(
                    t=ctx.now(), step=item.step, parent_id=parent.id, component=COMPONENT,
                    reason=parsed.reason, answer_excerpt=completion.text[-400:],
                )
            )  # fmt: skip
            ctx.end_step(f"proposal failed: {parsed.reason}")
            return []
        if parsed.code.strip() == parent[COMPONENT].strip():
            ctx.end_step("no change: the proposer returned its parent's code")
            return []
        child = parent.derive(
            ctx.new_id("a"), {COMPONENT: parsed.code}, origin=Origin.PROPOSAL,
            base_version=item.base_version, created_at=ctx.now(),
            note=parsed.rationale[:200] or "proposed harness",
        )  # fmt: skip
        ctx.count_proposal()
        ctx.emit(
            ProposalMade(
                t=ctx.now(), step=item.step, artifact_id=child.id,
                parent_id=parent.id, component=COMPONENT,
            )
        )  # fmt: skip
        return [item.evolve(artifact=child, payload=replace(p, rationale=parsed.rationale))]

    async def _evaluate_stage(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: MetaHarnessStep = item.payload
        duplicate = self._duplicates.claim(ctx.pool, item.artifact)
        if duplicate:
            ctx.end_step(duplicate)
            return []
        try:
            outcome = await self._evaluate(ctx, item.artifact, p.parent_id, item.step)
        except BaseException:
            self._duplicates.release(item.artifact)
            raise
        if isinstance(outcome, str):
            # The claim stays: the same program would fail the same way again.
            ctx.end_step(f"candidate failed: {outcome}")
            return []
        scores, tokens = outcome
        return [item.evolve(payload=replace(p, val_scores=tuple(scores), context_tokens=tokens))]

    # ---- evaluation ----------------------------------------------------------
    async def _evaluate(
        self, ctx: StageContext, artifact: Artifact, parent_id: str | None, step: int
    ) -> tuple[list[float], float] | str:
        """Scores and context tokens of a harness, or why it failed (recorded either way)."""
        code = artifact[COMPONENT]

        def failed(reason: str) -> str:
            self.failures[reason.split(":", 1)[0]] += 1
            self.history.record(CandidateRecord(artifact.id, parent_id, step, code, "failed",
                                                reason))  # fmt: skip
            return reason

        train = [{"id": e.id, "input": e.input, "output": e.output} for e in self._train]
        tasks = [{"id": t.id, "input": t.input} for t in self._val]
        result: SandboxResult = await self.sandbox.arun(code, train, tasks)
        if not result.ok:
            return failed(result.failure)
        if len(result.contexts) != len(self._val):
            return failed("output: a context for every task was expected")
        trials = await self._trials(ctx, result)
        scores = [t.score for t in trials]
        tokens = sum(t.prompt_tokens for t in trials) / len(trials)
        self._measured[artifact.id] = {TOKENS: tokens}
        accuracy = sum(scores) / len(scores)
        self.history.record(
            CandidateRecord(
                artifact.id, parent_id, step, code, "evaluated", accuracy=accuracy,
                context_tokens=tokens, scores={t.task_id: t.score for t in trials},
                traces=[t.trace() for t in trials],
            )
        )  # fmt: skip
        ctx.emit(
            ValidationDone(
                t=ctx.now(), step=step, artifact_id=artifact.id,
                score=accuracy, instances=len(scores),
            )
        )  # fmt: skip
        return scores, tokens

    async def _trials(self, ctx: StageContext, result: SandboxResult) -> list[_Trial]:
        limit = asyncio.Semaphore(self.config.request_concurrency)
        params: dict[str, Any] = {}
        if self.config.task_max_tokens is not None:
            params["max_tokens"] = self.config.task_max_tokens
        reservation = ctx.reserve_metric_calls(len(self._val) * result.samples)

        async def ask(messages: Sequence[Message]) -> tuple[str, int]:
            async with limit:
                try:
                    completion = await ctx.chat(self.task_lm, messages, role="task", **params)
                except LLMError as exc:
                    return f"(the call failed: {exc})", 0
                finally:
                    reservation.spend(1)
            return completion.text, completion.usage.prompt_tokens

        async def one(inst: Any, messages: tuple[Message, ...]) -> _Trial:
            replies = await asyncio.gather(*(ask(messages) for _ in range(result.samples)))
            answers = tuple(text for text, _ in replies)
            votes = Counter(self.task.answer_of(a) for a in answers)
            top = max(votes.values())
            # The most frequent answer; among equals, the one given first.
            chosen = next(a for a in answers if votes[self.task.answer_of(a)] == top)
            scored = self.task.score(inst, chosen)
            score = float(scored.score)
            if not math.isfinite(score):
                raise ValueError(
                    f"{type(self.task).__name__}.score returned the non-finite score {score!r} "
                    f"for task {inst.id!r}; score a failed answer 0.0"
                )
            return _Trial(inst.id, messages, answers, chosen, score, str(scored.feedback),
                          sum(n for _, n in replies))  # fmt: skip

        return list(
            await asyncio.gather(
                *(one(i, m) for i, m in zip(self._val, result.contexts, strict=True))
            )
        )
