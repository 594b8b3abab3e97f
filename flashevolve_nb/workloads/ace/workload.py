"""ACE as a workload: Generator, Reflector, Curator, evaluation, admission.

One evolution step: take a parent playbook from the pool (the current best by
default) and the next training minibatch; the **Generator** answers each
question with the playbook and cites the bullets it used (``generate``); the
**Reflector** diagnoses the answers against their feedback and tags the cited
bullets helpful or harmful (``reflect``); the **Curator** proposes delta
operations, which are applied to the parent at once, allocating ids for new
bullets then (``curate``); the child playbook is scored on the validation
set (``evaluate``) and, if it beats its parent there, admitted.

Staleness (see :mod:`flashevolve_nb.workloads.ace.rebase`): the step's delta
travels with the item, so the ``rebase`` policy can re-apply it to the newest
best playbook instead of admitting a child of an old one. This workload meets
the engine's ``Rebasing``, ``ValidationStage``, ``DecisionPoints``,
``StepsFromParent``, ``ModelRoles`` and ``ResumableProgress`` capabilities.

Malformed Reflector or Curator answers end their step with a
``ProposalFailed`` event naming what was wrong; they never fail the run.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from flashevolve_nb.engine import (
    Artifact,
    Decision,
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
from flashevolve_nb.engine.workload import SeedEntry
from flashevolve_nb.llm.protocol import LLM, LLMError
from flashevolve_nb.workloads.ace.delta import Delta
from flashevolve_nb.workloads.ace.playbook import Playbook, PlaybookFormatError
from flashevolve_nb.workloads.ace.prompts import (
    Generation,
    Reflection,
    curator_prompt,
    generator_messages,
    parse_curator_answer,
    parse_generator_answer,
    parse_reflector_answer,
    reflector_prompt,
)
from flashevolve_nb.workloads.ace.rebase import BulletIds, RebaseCounts, moves, rebase
from flashevolve_nb.workloads.gepa.sampler import EpochShuffledSampler

__all__ = ["AceConfig", "AceStep", "AceTask", "AceWorkload"]

COMPONENT = "playbook"
"""The artifact's one component: the playbook text."""


class AceTask(Protocol):
    """How an answer to an instance (``.id``, ``.input``) is scored, with feedback."""

    @property
    def name(self) -> str: ...

    def score(self, instance: Any, output: str) -> Any:
        """An object with ``score`` (a finite float) and ``feedback`` (text)."""
        ...


@dataclass(frozen=True)
class AceConfig:
    minibatch_size: int = 3
    candidate_selection: str = "current_best"
    """ACE refines one playbook: the current best is the parent by default."""
    request_concurrency: int = 10
    """Generator requests one stage of one step keeps in flight at most."""
    skip_perfect_score: bool = True
    """No reflection on a minibatch the playbook already answers perfectly."""
    perfect_score: float = 1.0
    generator_max_tokens: int | None = None
    role_max_tokens: int | None = None
    """Limit for the Reflector's and the Curator's answers."""
    workers: Mapping[str, int] = field(
        default_factory=lambda: {"generate": 8, "reflect": 8, "curate": 8, "evaluate": 8}
    )

    def __post_init__(self) -> None:
        if self.minibatch_size < 1:
            raise ValueError(f"AceConfig.minibatch_size must be >= 1 (got {self.minibatch_size})")
        if self.request_concurrency < 1:
            raise ValueError(
                f"AceConfig.request_concurrency must be >= 1 (got {self.request_concurrency})"
            )
        make_selector(self.candidate_selection)


@dataclass(frozen=True, slots=True)
class AceStep:
    """The payload of an ACE work item; grows as the step moves through stages."""

    parent_id: str
    minibatch: tuple[str, ...]
    generations: tuple[Generation, ...] = ()
    reflection: Reflection | None = None
    delta: Delta | None = None
    """The Curator's operations and the Reflector's tags, as proposed (no new ids)."""
    val_scores: tuple[float, ...] = ()
    rebased_from: str | None = None
    """The stale child this item's playbook replaces (set by a rebase)."""


BULLET_COUNTER = "b-"
"""The prefix of the run's id counter that bullet numbers are drawn from."""


def _bullet_numbers(ctx: StageContext) -> Callable[[], int]:
    """The run's durable counter of bullet numbers (1, 2...; restored on resume)."""

    def draw() -> int:
        return int(ctx.new_id(BULLET_COUNTER)[len(BULLET_COUNTER) :]) + 1

    return draw


class AceWorkload:
    """ACE's loop over any :class:`AceTask`, with Generator, Reflector and Curator models."""

    validation_stage = "evaluate"
    """Where a rebased playbook re-enters: it is scored before admission."""
    default_decision_points: tuple[str, ...] = ("evaluate", "admit")
    """Stale deltas meet the policy before evaluation (rebasing then saves a sweep) and
    before admission (the newest pool)."""

    def __init__(
        self,
        task: AceTask,
        trainset: Sequence[Any],
        valset: Sequence[Any],
        seed_playbook: Playbook | str,
        generator_lm: LLM,
        reflector_lm: LLM | None = None,
        curator_lm: LLM | None = None,
        config: AceConfig | None = None,
        *,
        seed: int = 0,
    ) -> None:
        if not trainset:
            raise ValueError("ACE needs a non-empty trainset to draw minibatches from")
        if not valset:
            raise ValueError("ACE needs a non-empty valset to score playbooks on")
        self.task = task
        self.config = config or AceConfig()
        self.generator_lm = generator_lm
        self.reflector_lm = reflector_lm or generator_lm
        self.curator_lm = curator_lm or self.reflector_lm
        if isinstance(seed_playbook, str):
            seed_playbook = Playbook.parse(seed_playbook)
        self.seed_playbook = seed_playbook
        self._train = {inst.id: inst for inst in trainset}
        self._val = list(valset)
        self._ids = BulletIds()
        self._ids.observe(seed_playbook)
        self._duplicates = Duplicates()
        self._selector: ParentSelector = make_selector(self.config.candidate_selection)
        self._sampler = EpochShuffledSampler(
            list(self._train), self.config.minibatch_size, random.Random(f"{seed}:minibatch")
        )
        self.rebase_counts = RebaseCounts()
        """What the ``rebase`` policy did so far in this run."""

    # ---- Workload protocol ----------------------------------------------
    @property
    def name(self) -> str:
        return f"ace:{self.task.name}"

    @property
    def backend_name(self) -> str:
        return self.generator_lm.name

    def stages(self) -> Sequence[StageSpec]:
        w = self.config.workers
        mc = frozenset({"metric_calls"})
        return (
            StageSpec("generate", self._generate, w.get("generate", 8), mc,
                      "answer a training minibatch with the parent playbook"),
            StageSpec("reflect", self._reflect, w.get("reflect", 8), frozenset(),
                      "diagnose the answers; tag the cited bullets helpful or harmful"),
            StageSpec("curate", self._curate, w.get("curate", 8), frozenset({"proposals"}),
                      "propose delta operations and apply them to the parent"),
            StageSpec("evaluate", self._evaluate_stage, w.get("evaluate", 8), mc,
                      "score the new playbook on the whole validation set"),
        )  # fmt: skip

    def instance_ids(self) -> Sequence[str]:
        return [inst.id for inst in self._val]

    def llm_for(self, role: str) -> LLM:
        """The model serving ``role``: ``generator`` (``task``), ``reflector``
        (``reflection``, ``repair``) or ``curator``."""
        if role in ("generator", "task"):
            return self.generator_lm
        if role in ("reflector", "reflection", "repair"):
            return self.reflector_lm
        if role == "curator":
            return self.curator_lm
        raise KeyError(f"no model for role {role!r}; roles: generator, reflector, curator")

    async def seed(self, ctx: StageContext) -> Sequence[SeedEntry]:
        artifact = Artifact(
            id=ctx.new_id("a"), components={COMPONENT: self.seed_playbook.render()},
            origin=Origin.SEED, created_at=ctx.now(), note="seed playbook",
        )  # fmt: skip
        scores = await self._scores(ctx, artifact, self._val)
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
        return WorkItem(
            id=item_id,
            step=step,
            base_version=pool.version,
            artifact=parent,
            payload=AceStep(parent.id, tuple(self._sampler.next_batch())),
            created_at=now,
        )

    def restore_progress(self, pool: Pool, steps: int) -> None:
        """A resumed run: move the sampler past the steps begun before, and never hand
        out a bullet id a stored playbook uses (bullet numbers come from the run's id
        counters, which the store restored; the pool's own ids are a floor besides)."""
        for _ in range(steps):
            self._sampler.next_batch()
        for entry in pool:
            try:
                self._ids.observe(self.playbook_of(entry.artifact))
            except PlaybookFormatError:
                continue

    def admission(self, item: WorkItem) -> Sequence[float]:
        payload: AceStep = item.payload
        return payload.val_scores

    # ---- Rebasing (engine.workload.Rebasing) --------------------------------
    def rebase(self, item: WorkItem, staleness: int, ctx: StageContext) -> Decision:
        """Re-apply the item's delta to the current best playbook (see module docstring)."""
        pool = ctx.pool
        seen = tuple(e.artifact.id for e in pool.since(item.base_version))
        p = item.payload
        if not isinstance(p, AceStep) or p.delta is None:
            return Decision("accept", "rebase: no delta proposed yet; used as is", history_ids=seen)
        target = pool.best().artifact
        if target.id == p.parent_id:
            return Decision(
                "accept",
                f"rebase: its parent {target.id} is still the best playbook; used as is",
                history_ids=seen,
            )
        self._ids.draw_from(_bullet_numbers(ctx))
        applied = rebase(
            p.delta, self.playbook_of(target), self._ids, moves(e.artifact for e in pool)
        )
        self.rebase_counts = self.rebase_counts.plus(applied)
        if not applied.changed_bullets:
            return Decision(
                "discard",
                f"rebased onto {target.id}: nothing left to apply ({applied.summary()})",
                history_ids=seen,
            )
        child = target.derive(
            ctx.new_id("a"),
            {COMPONENT: applied.playbook.render()},
            origin=Origin.REPAIR,
            base_version=pool.version,
            created_at=ctx.now(),
            note=f"rebase of {item.artifact.id}'s delta onto {target.id}",
            meta={
                "ace": {
                    **applied.record(),
                    "delta": p.delta.describe(),
                    "rebased_from": item.artifact.id,
                }
            },
        )
        payload = replace(p, parent_id=target.id, val_scores=(), rebased_from=item.artifact.id)
        replacement = item.evolve(artifact=child, base_version=pool.version, payload=payload)
        return Decision(
            "patch",
            f"rebased onto {target.id}: {applied.summary()}",
            replacement=replacement,
            history_ids=seen,
        )

    # ---- stages ------------------------------------------------------------
    async def _generate(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: AceStep = item.payload
        gens = await self._generations(ctx, item.artifact, [self._train[i] for i in p.minibatch])
        if self.config.skip_perfect_score and all(
            g.score >= self.config.perfect_score for g in gens
        ):
            ctx.end_step("skipped: the playbook is already perfect on this minibatch")
            return []
        return [item.evolve(payload=replace(p, generations=tuple(gens)))]

    async def _reflect(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: AceStep = item.payload
        parent = self.playbook_of(item.artifact)
        prompt = reflector_prompt(parent, p.generations)
        completion = await ctx.chat(
            self.reflector_lm, [{"role": "user", "content": prompt}], role="reflector",
            **self._role_params(),
        )  # fmt: skip
        parsed = parse_reflector_answer(completion.text, completion.finish_reason)
        if parsed.value is None:
            return self._failed(item, ctx, parsed.reason, completion.text)
        reflection = parsed.value
        # A tag may only judge a bullet of the playbook the answers used.
        tags = tuple(t for t in reflection.tags if t.bullet_id in parent)
        reflection = replace(reflection, tags=tags)
        return [item.evolve(payload=replace(p, reflection=reflection))]

    async def _curate(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: AceStep = item.payload
        assert p.reflection is not None
        parent_artifact = item.artifact
        parent = self.playbook_of(parent_artifact)
        prompt = curator_prompt(parent, p.reflection)
        completion = await ctx.chat(
            self.curator_lm, [{"role": "user", "content": prompt}], role="curator",
            **self._role_params(),
        )  # fmt: skip
        parsed = parse_curator_answer(completion.text, completion.finish_reason)
        if parsed.value is None:
            return self._failed(item, ctx, parsed.reason, completion.text)
        if not parsed.value:
            ctx.end_step("no change: the curator proposed no operation")
            return []
        delta = Delta(parsed.value, p.reflection.tags)
        # Ids are allocated here, where the delta is applied, never by the curator.
        self._ids.draw_from(_bullet_numbers(ctx))
        applied = rebase(delta, parent, self._ids, moves(e.artifact for e in ctx.pool))
        if not applied.changed_bullets:
            ctx.end_step(
                f"no change: the curator's operations changed nothing ({applied.summary()})"
            )
            return []
        child = parent_artifact.derive(
            ctx.new_id("a"),
            {COMPONENT: applied.playbook.render()},
            origin=Origin.PROPOSAL,
            base_version=item.base_version,
            created_at=ctx.now(),
            note="curator delta",
            meta={"ace": {**applied.record(), "delta": delta.describe()}},
        )
        ctx.count_proposal()
        ctx.emit(
            ProposalMade(
                t=ctx.now(), step=item.step, artifact_id=child.id,
                parent_id=parent_artifact.id, component=COMPONENT,
            )
        )  # fmt: skip
        return [item.evolve(artifact=child, payload=replace(p, delta=delta))]

    async def _evaluate_stage(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: AceStep = item.payload
        duplicate = self._duplicates.claim(ctx.pool, item.artifact)
        if duplicate:
            ctx.end_step(duplicate)
            return []
        try:
            scores = tuple(await self._scores(ctx, item.artifact, self._val))
        except BaseException:
            self._duplicates.release(item.artifact)
            raise
        mean = sum(scores) / len(scores)
        ctx.emit(
            ValidationDone(
                t=ctx.now(), step=item.step, artifact_id=item.artifact.id,
                score=mean, instances=len(scores),
            )
        )  # fmt: skip
        if p.parent_id in ctx.pool:
            parent_score = ctx.pool.entry(p.parent_id).score
            if not mean > parent_score:
                ctx.end_step(f"not better: {mean:.4g} <= parent {parent_score:.4g}")
                return []
        return [item.evolve(payload=replace(p, val_scores=scores))]

    def _failed(
        self, item: WorkItem, ctx: StageContext, reason: str, answer: str
    ) -> Sequence[WorkItem]:
        ctx.emit(
            ProposalFailed(
                t=ctx.now(), step=item.step, parent_id=item.artifact.id, component=COMPONENT,
                reason=reason, answer_excerpt=answer[-400:],
            )
        )  # fmt: skip
        ctx.end_step(f"proposal failed: {reason}")
        return []

    # ---- playbooks and answers ------------------------------------------------
    @staticmethod
    def playbook_of(artifact: Artifact) -> Playbook:
        """The playbook an artifact holds (a person may have edited it: it is parsed)."""
        return Playbook.parse(artifact[COMPONENT])

    def _role_params(self) -> dict[str, Any]:
        limit = self.config.role_max_tokens
        return {} if limit is None else {"max_tokens": limit}

    async def _scores(
        self, ctx: StageContext, artifact: Artifact, instances: Sequence[Any]
    ) -> list[float]:
        return [g.score for g in await self._generations(ctx, artifact, instances)]

    async def _generations(
        self, ctx: StageContext, artifact: Artifact, instances: Sequence[Any]
    ) -> list[Generation]:
        """The Generator on every instance, ``request_concurrency`` at a time; recorded and
        counted as metric calls."""
        limit = asyncio.Semaphore(self.config.request_concurrency)
        text = artifact[COMPONENT]
        params: dict[str, Any] = {}
        if self.config.generator_max_tokens is not None:
            params["max_tokens"] = self.config.generator_max_tokens
        reservation = ctx.reserve_metric_calls(len(instances))

        async def one(inst: Any) -> Generation:
            messages = generator_messages(text, inst.input)
            async with limit:
                try:
                    completion = await ctx.chat(
                        self.generator_lm, messages, role="generator", **params
                    )
                except LLMError as exc:
                    reservation.spend(1)
                    return Generation(inst.id, inst.input, "", (), 0.0, f"The call failed: {exc}")
            reservation.spend(1)
            answer, cited = parse_generator_answer(completion.text)
            scored = self.task.score(inst, answer)
            score = float(scored.score)
            if not math.isfinite(score):
                raise ValueError(
                    f"{type(self.task).__name__}.score returned the non-finite score {score!r} "
                    f"for example {inst.id!r}; score a failed answer 0.0"
                )
            return Generation(inst.id, inst.input, answer, cited, score, str(scored.feedback))

        return list(await asyncio.gather(*(one(inst) for inst in instances)))
