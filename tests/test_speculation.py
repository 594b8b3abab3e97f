"""Speculative stage completion and speculative validation, on a virtual loop clock.

A scripted two-stage workload gives every request of every step a known
duration and score, so each scenario (release, fold-in, speculative admit,
confirm, rollback, cancellation) happens at a known simulated second.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine import (
    Artifact,
    Origin,
    Pipeline,
    PipelineConfig,
    Pool,
    StageContext,
    StageSpec,
    WorkItem,
)
from flashevolve_nb.engine.events import (
    Admitted,
    Event,
    PartialFoldIn,
    PartialRelease,
    PolicyDecision,
    SpeculationConfirmed,
    SpeculationRolledBack,
    SpeculativeAdmitted,
    StaleDetected,
    StepFinished,
    StepStarted,
)
from flashevolve_nb.engine.partial import needed, release_partial
from flashevolve_nb.engine.speculation import (
    PendingValidation,
    SpeculationConfig,
    speculation_of,
    stage_alpha,
)
from flashevolve_nb.engine.validation_order import DiscriminativeOrder
from flashevolve_nb.engine.workload import SeedEntry

SMALL = {"n_train": 30, "n_val": 20, "n_test": 20}

Script = dict[int, tuple[list[float], list[float]]]
"""Per step: (score per validation instance, seconds each request takes)."""


@dataclass
class Val:
    scores: tuple[float, ...] = ()
    pending: PendingValidation | None = None


@dataclass
class Scripted:
    """``make`` derives a child (1 s; ``make_time`` overrides per step); ``validate``
    runs one request per instance with scripted durations and scores."""

    script: Script
    max_steps: int = 3
    make_time: dict[int, float] = field(default_factory=dict)
    n: int = 4
    name: str = "scripted"
    backend_name: str = "none"
    partial_stages: tuple[str, ...] = ("validate",)
    validation_stage: str = "validate"
    default_decision_points: tuple[str, ...] = ("validate", "admit")

    def stages(self) -> Sequence[StageSpec]:
        return [StageSpec("make", self._make, 4), StageSpec("validate", self._validate, 4)]

    def instance_ids(self) -> Sequence[str]:
        return [f"v{i}" for i in range(self.n)]

    async def seed(self, ctx: StageContext) -> Sequence[SeedEntry]:
        art = Artifact(id=ctx.new_id("a"), components={"text": "seed"}, origin=Origin.SEED)
        return [(art, [0.5] * self.n)]

    def begin_step(
        self, step: int, item_id: str, pool: Pool, rng: random.Random, now: float
    ) -> WorkItem | None:
        if step > self.max_steps:
            return None
        return WorkItem(item_id, step, pool.version, pool.best().artifact, Val(), created_at=now)

    def admission(self, item: WorkItem) -> Sequence[float]:
        return item.payload.scores  # type: ignore[no-any-return]

    def pending_validation(self, item: WorkItem) -> PendingValidation | None:
        return item.payload.pending  # type: ignore[no-any-return]

    async def _make(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        await asyncio.sleep(self.make_time.get(item.step, 1.0))
        child = item.artifact.derive(
            ctx.new_id("a"), {"text": f"step {item.step}"}, origin=Origin.PROPOSAL,
            base_version=item.base_version, created_at=ctx.now(),
        )  # fmt: skip
        return [item.evolve(artifact=child)]

    async def _validate(self, item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
        scores, times = self.script[item.step]

        async def request(i: int) -> float:
            await asyncio.sleep(times[i])
            return scores[i]

        partial = await release_partial(
            ctx, [request(i) for i in range(self.n)], stage_alpha(ctx), item_id=item.id
        )
        if partial.complete:
            return [item.evolve(payload=Val(scores=tuple(await partial.all())))]

        async def full() -> tuple[float, ...]:
            return tuple(await partial.all())

        task = speculation_of(ctx).spawn_tail(item.step, full(), name="full")
        pending = PendingValidation(item.artifact.id, dict(partial.done), task)
        return [item.evolve(payload=Val(pending=pending))]


def spec_config(**kw: object) -> PipelineConfig:
    speculation = SpeculationConfig(alpha={"validate": 0.5}, validation=True)
    return PipelineConfig(depth=2, speculation=speculation, **kw)  # type: ignore[arg-type]


def of(events: Sequence[Event], cls: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, cls)]


def assert_no_admission_lost(result_events: Sequence[Event], pool_ids: set[str]) -> None:
    admitted = {e.artifact_id for e in result_events if isinstance(e, Admitted)}
    assert admitted <= pool_ids


# ---- pure parts ------------------------------------------------------------------
def test_needed_counts_at_least_one_request_and_never_more_than_all() -> None:
    assert needed(4, 0.5) == 2
    assert needed(40, 0.25) == 10
    assert needed(3, 0.5) == 2
    assert needed(3, 0.01) == 1
    assert needed(3, 1.0) == 3
    with pytest.raises(ValueError, match="alpha"):
        needed(3, 0.0)


def test_discriminative_order_puts_spread_first_and_rotates_what_all_pass() -> None:
    order = DiscriminativeOrder(4, rotate_after=2)
    assert order.order() == (0, 1, 2, 3)  # no evidence: the identity
    order.observe([1.0, 0.0, 0.5, 1.0])
    order.observe([1.0, 1.0, 0.5, 0.0])
    # Instance 0 was passed by both candidates: it rotates to the back.
    assert order.rotated() == frozenset({0})
    # Instances 1 and 3 separate the candidates; 2 does not.
    assert order.order() == (1, 3, 2, 0)
    with pytest.raises(ValueError, match="expected 4 scores"):
        order.observe([1.0])


# ---- partial release and fold-in -------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.looptime
async def test_partial_release_then_fold_in() -> None:
    script: Script = {1: ([1, 1, 1, 0.5], [1, 1, 10, 10])}
    pipe = Pipeline(Scripted(script, max_steps=1), spec_config())
    result = await pipe.run()
    release = of(result.events, PartialRelease)
    fold = of(result.events, PartialFoldIn)
    assert [(e.stage, e.step, e.released, e.total, e.alpha) for e in release] == [
        ("validate", 1, 2, 4, 0.5)
    ]
    # Released when half the requests were in (make 1 s + 1 s), folded in when the
    # slow half came (make 1 s + 10 s).
    assert release[0].t == pytest.approx(2.0)
    assert [(e.step, e.finished, e.total, e.cancelled) for e in fold] == [(1, 4, 4, False)]
    assert fold[0].t == pytest.approx(11.0)
    # The validate worker was free at the release: its item took 1 s, not 10 s.
    finished = [e for e in result.events if e.kind == "item_finished" and e.stage == "validate"]
    assert finished[0].duration == pytest.approx(1.0)
    # The folded-in scores are the ones admitted.
    entry = next(e for e in result.pool.entries if e.artifact.origin == "proposal")
    assert entry.scores == (1.0, 1.0, 1.0, 0.5) and not entry.speculative


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_step_that_ends_early_cancels_its_tail() -> None:
    # Step 2 is discarded as stale before admission while its slow requests still run.
    script: Script = {
        1: ([0.9] * 4, [1, 1, 1, 1]),
        2: ([0.2] * 4, [1, 1, 30, 30]),
    }
    wl = Scripted(script, max_steps=2, make_time={2: 1.5})
    pipe = Pipeline(wl, spec_config(policy="discard"))
    result = await pipe.run()
    fold = [e for e in of(result.events, PartialFoldIn) if e.step == 2]
    assert [(e.finished, e.total, e.cancelled) for e in fold] == [(2, 4, True)]
    outcome = {e.step: e.outcome for e in of(result.events, StepFinished)}
    assert outcome[2].startswith("discarded as stale")
    # The cancelled requests did not hold the run: it ended at step 2's discard.
    assert result.stats.sim_seconds == pytest.approx(2.5)


# ---- speculative validation -------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.looptime
async def test_speculative_admit_then_confirm() -> None:
    script: Script = {
        1: ([1, 1, 1, 0.5], [1, 1, 10, 10]),
        2: ([0.4] * 4, [1, 1, 1, 1]),
        3: ([0.4] * 4, [20, 20, 20, 20]),
    }
    # Steps 1 and 2 start at once; step 3 when step 2 ends, after step 1's prefix is in.
    wl = Scripted(script, max_steps=3, make_time={2: 1.5})
    pipe = Pipeline(wl, spec_config())
    seen: list[tuple[float, bool, int]] = []

    def watch(e: Event) -> None:
        if isinstance(e, SpeculativeAdmitted):
            entry = pipe.pool.entry(e.artifact_id)
            seen.append((e.t, entry.speculative, pipe.pool.version))

    pipe.bus.subscribe(watch)
    result = await pipe.run()
    [spec] = of(result.events, SpeculativeAdmitted)
    child = spec.artifact_id
    assert spec.step == 1 and spec.t == pytest.approx(2.0)
    assert (spec.prefix_score, spec.bar, spec.measured, spec.instances) == (1.0, 0.5, 2, 4)
    # Provisional: measured instances score as measured, the others as the parent.
    assert spec.provisional_score == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)
    assert seen == [(pytest.approx(2.0), True, 2)]
    # Step 3 began after the speculative admission and took the speculative child as
    # its parent: the point of admitting early.
    starts = {e.step: e for e in of(result.events, StepStarted)}
    assert starts[3].t == pytest.approx(2.5) and starts[3].parent_id == child
    [confirmed] = of(result.events, SpeculationConfirmed)
    assert confirmed.artifact_id == child and confirmed.t == pytest.approx(11.0)
    assert confirmed.score == pytest.approx(0.875) and confirmed.parent_score == 0.5
    assert of(result.events, SpeculationRolledBack) == []
    # Confirmed: counted as an admission, at the version it got speculatively.
    admitted = [e for e in of(result.events, Admitted) if e.artifact_id == child]
    assert [(e.version, e.score) for e in admitted] == [(2, pytest.approx(0.875))]
    entry = next(e for e in result.pool.entries if e.artifact.id == child)
    assert not entry.speculative and entry.scores == (1.0, 1.0, 1.0, 0.5)
    # Confirming added and removed nothing: only the three admissions moved the version.
    assert result.pool.version == 4
    assert result.stats.accepted == 3
    assert_no_admission_lost(result.events, {e.artifact.id for e in result.pool.entries})


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_speculative_admit_then_rollback_makes_descendants_stale() -> None:
    script: Script = {
        # Fast half perfect, slow half zero: the prefix beats the parent, the whole does not.
        1: ([1, 1, 0, 0], [1, 1, 10, 10]),
        2: ([0.5] * 4, [0.5] * 4),
        3: ([0.6] * 4, [15, 15, 40, 40]),
    }
    wl = Scripted(script, max_steps=3, make_time={2: 3.0})
    pipe = Pipeline(wl, spec_config(policy="discard"))
    result = await pipe.run()
    events = result.events
    [spec] = of(events, SpeculativeAdmitted)
    child = spec.artifact_id
    starts = {e.step: e for e in of(events, StepStarted)}
    # Step 3 started from the speculative child (the best provisional score).
    assert starts[3].parent_id == child
    [back] = of(events, SpeculationRolledBack)
    assert back.artifact_id == child and back.t == pytest.approx(11.0)
    assert back.score == pytest.approx(0.5) and back.parent_score == 0.5
    assert "does not beat the parent" in back.reason
    # The rollback bumped the version past everything derived from the child...
    assert back.version > starts[3].base_version
    # ...so step 3 is stale at its next decision point, and the policy decides.
    stale = [e for e in of(events, StaleDetected) if e.step == 3]
    assert stale and stale[0].t > back.t and stale[0].base_version == starts[3].base_version
    decision = next(e for e in of(events, PolicyDecision) if e.step == 3)
    assert decision.decision == "discard"
    # The rolled-back candidate then took the ordinary way: admitted with its full scores.
    readmitted = [e for e in of(events, Admitted) if e.artifact_id == child]
    assert len(readmitted) == 1 and readmitted[0].version == back.version + 1
    assert readmitted[0].score == pytest.approx(0.5)
    entry = next(e for e in result.pool.entries if e.artifact.id == child)
    assert not entry.speculative and entry.scores == (1.0, 1.0, 0.0, 0.0)
    outcome = {e.step: e.outcome for e in of(events, StepFinished)}
    assert outcome[1] == "admitted (speculation rolled back)"
    assert_no_admission_lost(events, {e.artifact.id for e in result.pool.entries})


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_prefix_that_does_not_clear_the_bar_waits_for_its_full_scores() -> None:
    script: Script = {1: ([0.5, 0.5, 1, 1], [1, 1, 10, 10])}
    result = await Pipeline(Scripted(script, max_steps=1), spec_config()).run()
    assert of(result.events, SpeculativeAdmitted) == []
    [admitted] = [e for e in of(result.events, Admitted) if e.step == 1]
    assert admitted.t == pytest.approx(11.0) and admitted.score == pytest.approx(0.75)


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_unconfirmed_speculation_is_withdrawn_when_the_run_ends() -> None:
    script: Script = {1: ([1, 1, 1, 1], [1, 1, 100, 100])}
    pipe = Pipeline(Scripted(script, max_steps=1), spec_config())
    task = asyncio.create_task(pipe.run())
    await asyncio.sleep(5)
    [spec] = [e for e in pipe.recorder.events if isinstance(e, SpeculativeAdmitted)]
    assert spec.artifact_id in pipe.pool
    pipe.stop("cancel")
    result = await task
    [back] = of(result.events, SpeculationRolledBack)
    assert back.artifact_id == spec.artifact_id and "run ended" in back.reason
    assert spec.artifact_id not in {e.artifact.id for e in result.pool.entries}
    assert not any(e.speculative for e in result.pool.entries)
    # Tails and fold-ins were cancelled with the run: nothing is left running.
    assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()
    assert [(e.cancelled, e.finished) for e in of(result.events, PartialFoldIn)] == [(True, 2)]


# ---- settings -------------------------------------------------------------------------
def test_speculation_settings_are_checked_and_name_what_to_do() -> None:
    script: Script = {}
    with pytest.raises(ValueError, match=r"alpha values must be in \(0, 1\]"):
        SpeculationConfig(alpha=0.0)
    with pytest.raises(ValueError, match="stage 'make' cannot release partial output"):
        Pipeline(
            Scripted(script), PipelineConfig(speculation=SpeculationConfig(alpha={"make": 0.5}))
        )
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        Pipeline(
            Scripted(script), PipelineConfig(speculation=SpeculationConfig(alpha={"nope": 0.5}))
        )
    with pytest.raises(ValueError, match=r"give 'validate' an alpha below 1"):
        Pipeline(Scripted(script), PipelineConfig(speculation=SpeculationConfig(validation=True)))
    pipe = Pipeline(Scripted(script), spec_config())
    with pytest.raises(ValueError, match="turn it off first"):
        pipe.speculation.set_alpha("validate", 1.0)
    pipe.speculation.set_validation(False)
    pipe.speculation.set_alpha("validate", 1.0)
    assert pipe.speculation.alpha("validate") == 1.0
    controls = [(e.stage, e.action, e.value) for e in pipe.recorder.events]
    assert controls == [("*", "speculative_validation", "off"), ("validate", "alpha", "1")]
    with pytest.raises(ValueError, match=r"give 'validate' an alpha below 1"):
        build_demo(DemoConfig(alpha=1.0, speculative_validation=True))


# ---- GEPA end to end ------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.looptime
async def test_gepa_with_speculation_keeps_every_admission_and_settles_every_speculation() -> None:
    cfg = DemoConfig(minutes=12, time_scale=1.0, alpha=0.5, speculative_validation=True, **SMALL)
    demo = build_demo(cfg)
    result = await demo.run()
    events = result.events
    s = result.stats
    assert s.accepted > 0 and s.best_score > s.seed_score
    specs = of(events, SpeculativeAdmitted)
    confirmed = {e.artifact_id for e in of(events, SpeculationConfirmed)}
    rolled = {e.artifact_id for e in of(events, SpeculationRolledBack)}
    assert specs and confirmed
    # Every speculation is settled exactly once, one way or the other.
    assert {e.artifact_id for e in specs} == confirmed | rolled
    assert (s.speculative_admitted, s.speculation_confirmed, s.speculation_rolled_back) == (
        len(specs),
        len(confirmed),
        len(rolled),
    )
    assert not confirmed & rolled
    assert not any(e.speculative for e in result.pool.entries)
    assert_no_admission_lost(events, {e.artifact.id for e in result.pool.entries})
    # Both rollout and validate released early, and each release has its fold-in.
    releases = of(events, PartialRelease)
    folds = of(events, PartialFoldIn)
    assert {e.stage for e in releases} == {"rollout", "validate"}
    assert sorted((e.step, e.stage) for e in releases) == sorted((e.step, e.stage) for e in folds)
    # A speculative admission is not counted until it is confirmed (or re-admitted).
    counted = [e for e in of(events, Admitted) if e.step > 0]
    assert s.accepted == len(counted)
    assert len({e.artifact_id for e in counted}) == len(counted)


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_speculation_and_adaptive_control_are_deterministic_under_a_seed() -> None:
    async def run(seed: int) -> list[tuple[object, ...]]:
        cfg = DemoConfig(
            seed=seed, minutes=5, time_scale=1.0, alpha=0.5, speculative_validation=True,
            controller="adaptive", **SMALL,
        )  # fmt: skip
        result = await build_demo(cfg).pipeline.run()
        return [
            tuple((k, round(v, 6) if isinstance(v, float) else v) for k, v in e.to_row().items())
            for e in result.events
        ]

    first, second = await run(3), await run(3)
    kinds = {row[0][1] for row in first}
    assert {"speculative_admitted", "partial_release", "controller_action"} <= kinds
    assert first == second
