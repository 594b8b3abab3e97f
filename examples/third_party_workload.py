"""A workload of your own: evolve which style-guide hints a prompt carries.

Written from docs/WORKLOADS.md only. The artifact is a *selection*: at most
``max_hints`` lines picked from a fixed library of hints (each hint says
which failure it fixes), placed in the task model's system prompt. No model
writes the proposals: one evolution step runs the parent on a training
minibatch (``probe``), swaps one hint for a hint that fixes a failure the
probe saw (``mutate``, guided by the feedback and seeded by the run), scores
the child on the validation set (``validate``), and the pool admits it.
Which few hints fit in the prompt is a real trade-off: the task's rules are
many, some conflict, and a long prompt is followed less well.

The workload meets the engine's optional capabilities: decision points (so a
staleness policy judges stale proposals before validation and admission),
partial stages + a validation stage + pending validation (so speculation can
admit a candidate on a validation prefix), model roles (the ``reflective``
policy's repair model), steps from a given parent, and rebasing (the
``rebase`` policy re-applies a stale swap onto the newest best).

The task model and the repair model are the offline simulator and the run is
on a virtual clock, so it is deterministic under ``--seed`` and quick;
everything printed is simulated.

    python3 examples/third_party_workload.py
    python3 examples/third_party_workload.py --policy guarded --minutes 20 --seed 3
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from flashevolve_nb.clock import Clock, virtual_event_loop
from flashevolve_nb.engine import (
    Artifact,
    Budget,
    Decision,
    Origin,
    Pipeline,
    PipelineConfig,
    Pool,
    RunResult,
    StageContext,
    StageSpec,
    WorkItem,
    make_selector,
)
from flashevolve_nb.engine.controller import ControllerParams
from flashevolve_nb.engine.duplicates import Duplicates
from flashevolve_nb.engine.events import ProposalFailed, ProposalMade, ValidationDone
from flashevolve_nb.engine.partial import Partial, release_partial
from flashevolve_nb.engine.speculation import (
    PendingValidation,
    SpeculationConfig,
    speculation_of,
    stage_alpha,
)
from flashevolve_nb.engine.workload import (
    DecisionPoints,
    ModelRoles,
    PartialStages,
    PendingValidations,
    Rebasing,
    SeedEntry,
    StepsFromParent,
    ValidationStage,
    Workload,
)
from flashevolve_nb.llm.protocol import LLM
from flashevolve_nb.sim import Instance, RulebookTask, Simulator
from flashevolve_nb.sim.rules import RULES

COMPONENT = "hints"
"""The artifact's one component: the selected hints, one per line."""

BASE_PROMPT = "You are a helpful assistant. Answer the user's request."


@dataclass(frozen=True)
class Hint:
    text: str
    """What goes into the system prompt."""
    fixes: str
    """The feedback sentence of the failure it addresses."""


# The library a person would write: here, one hint per rule of the simulated task.
LIBRARY: tuple[Hint, ...] = tuple(Hint(r.phrasings[0], r.feedback) for r in RULES)


def hints_of(artifact: Artifact) -> list[str]:
    """The hints an artifact holds (a repaired artifact is read the same way)."""
    return [line.strip() for line in artifact[COMPONENT].splitlines() if line.strip()]


@dataclass(frozen=True)
class HintStep:
    """The payload of one step's work item; immutable, grown stage by stage."""

    parent_id: str
    minibatch: tuple[str, ...]
    failures: tuple[str, ...] = ()
    """Feedback sentences of the rules the parent missed on the minibatch."""
    swap: tuple[str, str | None] | None = None
    """The change proposed: (hint added, hint dropped or None)."""
    val_scores: tuple[float, ...] = ()
    pending: PendingValidation | None = None
    """Validation released early: the prefix's scores and the task finishing the rest."""


class HintSelectionWorkload:
    """Evolve a selection of at most ``max_hints`` hints from ``LIBRARY``.

    A mutation keeps a selection within ``max_hints``. A reflective repair merges
    two selections and may hold more; a mutation from it drops one again.
    """

    # ---- optional capabilities (see docs/WORKLOADS.md) -----------------------
    default_decision_points: tuple[str, ...] = ("validate", "admit")
    validation_stage = "validate"
    partial_stages: tuple[str, ...] = ("validate",)

    def __init__(
        self,
        task: RulebookTask,
        task_lm: LLM,
        repair_lm: LLM,
        *,
        max_hints: int = 6,
        minibatch_size: int = 4,
    ) -> None:
        self.task = task
        self.task_lm = task_lm
        self.repair_lm = repair_lm
        self.max_hints = max_hints
        self.minibatch_size = minibatch_size
        self._train = {inst.id: inst for inst in task.train}
        self._val = list(task.val)
        self._selector = make_selector("pareto")
        self._duplicates = Duplicates()

    # ---- the required Workload protocol ---------------------------------------
    @property
    def name(self) -> str:
        return f"hint-selection:{self.task.name}"

    @property
    def backend_name(self) -> str:
        return self.task_lm.name

    def stages(self) -> Sequence[StageSpec]:
        calls, proposals = frozenset({"metric_calls"}), frozenset({"proposals"})
        return (
            StageSpec("probe", self._probe, 4, calls, "run the parent on a training minibatch"),
            StageSpec("mutate", self._mutate, 2, proposals, "swap in a hint for a failure seen"),
            StageSpec("validate", self._validate, 4, calls, "score the child on the valset"),
        )

    def instance_ids(self) -> Sequence[str]:
        return [inst.id for inst in self._val]

    async def seed(self, ctx: StageContext) -> Sequence[SeedEntry]:
        artifact = Artifact(
            id=ctx.new_id("a"),
            components={COMPONENT: "Be clear and specific."},
            origin=Origin.SEED,
            created_at=ctx.now(),
            note="seed hints",
        )
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

    def admission(self, item: WorkItem) -> Sequence[float]:
        payload: HintStep = item.payload
        return payload.val_scores

    # ---- StepsFromParent: a resumed run re-derives a step from the same parent --
    def begin_step_from(
        self, step: int, item_id: str, parent: Artifact, pool: Pool, rng: random.Random, now: float
    ) -> WorkItem:
        minibatch = tuple(rng.sample(sorted(self._train), self.minibatch_size))
        return WorkItem(
            id=item_id,
            step=step,
            base_version=pool.version,
            artifact=parent,
            payload=HintStep(parent.id, minibatch),
            created_at=now,
        )

    # ---- ModelRoles: the reflective policy asks for "repair" -------------------
    def llm_for(self, role: str) -> LLM:
        if role == "task":
            return self.task_lm
        if role == "repair":
            return self.repair_lm
        raise KeyError(f"no model for role {role!r}; roles: task, repair")

    # ---- PendingValidations: what speculation folds in at admission ------------
    def pending_validation(self, item: WorkItem) -> PendingValidation | None:
        payload = item.payload
        return payload.pending if isinstance(payload, HintStep) else None

    # ---- Rebasing: the rebase policy re-applies a stale swap onto the best -----
    def rebase(self, item: WorkItem, staleness: int, ctx: StageContext) -> Decision:
        pool = ctx.pool
        seen = tuple(e.artifact.id for e in pool.since(item.base_version))
        p: HintStep = item.payload
        target = pool.best().artifact
        if p.swap is None or target.id == p.parent_id:
            return Decision("accept", "rebase: nothing newer to rebase onto", history_ids=seen)
        added, dropped = p.swap
        hints = [h for h in hints_of(target) if h != dropped]
        if added in hints or len(hints) >= self.max_hints:
            return Decision("discard", f"rebase: {target.id} has no room for it", history_ids=seen)
        child = target.derive(
            ctx.new_id("a"),
            {COMPONENT: "\n".join([*hints, added])},
            origin=Origin.REPAIR,
            base_version=pool.version,
            created_at=ctx.now(),
            note=f"rebase of {item.artifact.id}'s swap onto {target.id}",
        )
        payload = replace(p, parent_id=target.id, val_scores=(), pending=None)
        replacement = item.evolve(artifact=child, base_version=pool.version, payload=payload)
        return Decision(
            "patch", f"rebased onto {target.id}", replacement=replacement, history_ids=seen
        )

    # ---- stages -------------------------------------------------------------------
    async def _probe(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: HintStep = item.payload
        instances = [self._train[i] for i in p.minibatch]
        feedback = await asyncio.gather(*self._calls(ctx, item.artifact, instances))
        failures = tuple(
            line for score, text in feedback if score < 1.0 for line in text.splitlines()[1:]
        )
        if not failures:
            ctx.end_step("skipped: the parent is already perfect on this minibatch")
            return []
        return [item.evolve(payload=replace(p, failures=failures))]

    async def _mutate(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: HintStep = item.payload
        parent = item.artifact
        hints = hints_of(parent)
        seen = Counter(p.failures)
        fixes = [h for h in LIBRARY if seen[h.fixes] and h.text not in hints]
        if not fixes:
            ctx.emit(
                ProposalFailed(
                    t=ctx.now(), step=item.step, parent_id=parent.id, component=COMPONENT,
                    reason="no hint in the library fixes what failed", answer_excerpt="",
                )
            )  # fmt: skip
            ctx.end_step("proposal failed: no hint in the library fixes what failed")
            return []
        added = ctx.rng.choices(fixes, weights=[seen[h.fixes] for h in fixes])[0].text
        dropped = ctx.rng.choice(hints) if len(hints) >= self.max_hints else None
        child = parent.derive(
            ctx.new_id("a"),
            {COMPONENT: "\n".join([*(h for h in hints if h != dropped), added])},
            origin=Origin.PROPOSAL,
            base_version=item.base_version,
            created_at=ctx.now(),
            note=f"+ {added}" + (f" / - {dropped}" if dropped else ""),
        )
        ctx.count_proposal()
        ctx.emit(
            ProposalMade(
                t=ctx.now(), step=item.step, artifact_id=child.id, parent_id=parent.id,
                component=COMPONENT,
            )
        )  # fmt: skip
        return [item.evolve(artifact=child, payload=replace(p, swap=(added, dropped)))]

    async def _validate(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        p: HintStep = item.payload
        if p.pending is not None:
            # A patched (repaired) item re-enters here: the stale artifact's scores are moot.
            p.pending.full.cancel()
            p = replace(p, pending=None)
        duplicate = self._duplicates.claim(ctx.pool, item.artifact)
        if duplicate:
            ctx.end_step(duplicate)  # "duplicate: same text as ..." (RunStats.duplicates)
            return []
        calls = [self._score_one(c) for c in self._calls(ctx, item.artifact, self._val)]
        try:
            partial = await release_partial(ctx, calls, stage_alpha(ctx), item_id=item.id)
        except BaseException:
            self._duplicates.release(item.artifact)  # not validated: the text is free again
            raise
        if partial.complete:
            scores = await self._finish_validation(ctx, item, partial)
            return [item.evolve(payload=replace(p, val_scores=scores))]
        # Released early: hand on the prefix, let the rest finish in a tail of this step.
        full = speculation_of(ctx).spawn_tail(
            item.step, self._finish_validation(ctx, item, partial), name="hint-validation"
        )
        pending = PendingValidation(item.artifact.id, dict(partial.done), full)
        return [item.evolve(payload=replace(p, pending=pending))]

    async def _finish_validation(
        self, ctx: StageContext, item: WorkItem, partial: Partial[float]
    ) -> tuple[float, ...]:
        scores = tuple(await partial.all())
        ctx.emit(
            ValidationDone(
                t=ctx.now(), step=item.step, artifact_id=item.artifact.id,
                score=sum(scores) / len(scores), instances=len(scores),
            )
        )  # fmt: skip
        return scores

    # ---- evaluation -----------------------------------------------------------------
    def _calls(
        self, ctx: StageContext, artifact: Artifact, instances: Sequence[Instance]
    ) -> list[Coroutine[Any, Any, tuple[float, str]]]:
        """One recorded task-model call per instance, each a metric call, all reserved first."""
        system = "\n".join([BASE_PROMPT, *hints_of(artifact)])
        reservation = ctx.reserve_metric_calls(len(instances))

        async def one(inst: Instance) -> tuple[float, str]:
            messages = [
                {"role": "system", "content": system},
                {"role": "user", "content": inst.input},
            ]
            completion = await ctx.chat(self.task_lm, messages, role="task")
            reservation.spend(1)
            scored = self.task.score(inst, completion.text)
            return scored.score, scored.feedback

        return [one(inst) for inst in instances]

    @staticmethod
    async def _score_one(call: Coroutine[Any, Any, tuple[float, str]]) -> float:
        score, _ = await call
        return score

    async def _scores(
        self, ctx: StageContext, artifact: Artifact, instances: Sequence[Instance]
    ) -> list[float]:
        return [s for s, _ in await asyncio.gather(*self._calls(ctx, artifact, instances))]


if TYPE_CHECKING:
    # mypy checks here that the class has the capabilities it means to have.
    def _capabilities(
        w: HintSelectionWorkload,
    ) -> tuple[
        Workload, DecisionPoints, ValidationStage, PartialStages, PendingValidations,
        StepsFromParent, ModelRoles, Rebasing,
    ]:  # fmt: skip
        return (w, w, w, w, w, w, w, w)


# ---- running it ------------------------------------------------------------------------
def build(seed: int = 0, minutes: float = 20.0, policy: str = "reflective") -> Pipeline:
    """The workload on the simulator, with a staleness policy, speculation and the controller."""
    clock = Clock(120.0)
    sim = Simulator(profile="vllm", seed=seed, clock=clock)
    task = RulebookTask(seed=seed, n_train=40, n_val=20, n_test=0)
    workload = HintSelectionWorkload(task, sim.llm("task"), sim.llm("repair"))
    config = PipelineConfig(
        mode="async",
        depth=8,
        seed=seed,
        policy=policy,
        budget=Budget(max_sim_seconds=minutes * 60.0),
        speculation=SpeculationConfig(alpha=0.5, validation=True),
        controller="adaptive",
        controller_params=ControllerParams(interval=20.0),
    )
    return Pipeline(workload, config, clock=clock)


def run(pipeline: Pipeline) -> RunResult:
    # A virtual clock: simulated waits take no real time, and the run is deterministic.
    loop = virtual_event_loop()
    try:
        return loop.run_until_complete(pipeline.run())
    finally:
        loop.close()


def summary(pipeline: Pipeline, result: RunResult) -> str:
    s = result.stats
    d = s.decisions
    lines = [
        f"workload: {pipeline.workload.name}",
        f"simulated run: {s.proposals} proposals, {s.accepted} accepted in "
        f"{s.minutes:.1f} simulated minutes ({result.finish_reason})",
        f"stale decisions ({pipeline.policy.name}): {sum(d.values())} "
        f"({d.get('accept', 0)} accept, {d.get('patch', 0)} patch, "
        f"{d.get('discard', 0)} discard)",
        f"speculative admissions: {s.speculative_admitted} ({s.speculation_confirmed} "
        f"confirmed, {s.speculation_rolled_back} rolled back)",
        f"controller actions: {s.controller_actions}",
        f"seed score {s.seed_score:.3f} -> best score {result.best_score:.3f}",
        f"best hints ({result.best.id}):",
        *(f"  {h}" for h in hints_of(result.best)),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="simulated minutes of budget")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--policy", default="reflective", help="staleness policy: reflective, guarded[:N], rebase"
    )
    args = ap.parse_args(argv)

    pipeline = build(args.seed, args.minutes, args.policy)
    result = run(pipeline)
    print(summary(pipeline, result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
