"""The adaptive controller: decisions from synthetic observations, then live runs.

``decide`` is a pure function of one observation, so most of its behaviour is
checked on hand-made observations; the rest runs real pipelines on a virtual
loop clock (looptime).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from toy import ToyWorkload

from flashevolve_nb.clock import Clock
from flashevolve_nb.engine import Budget, Pipeline, PipelineConfig
from flashevolve_nb.engine.controller import ControllerParams, Move, decide
from flashevolve_nb.engine.events import ControllerAction, StageControl
from flashevolve_nb.engine.signals import Observation, StageObservation, is_rate_limit
from flashevolve_nb.llm.protocol import LLM, Completion, Message
from flashevolve_nb.sim import RulebookTask, Simulator
from flashevolve_nb.sim.errors import RateLimited
from flashevolve_nb.sim.profiles import ApiProfile, VllmProfile
from flashevolve_nb.workloads.gepa import GepaConfig, GepaWorkload


def stage(
    name: str, workers: int, service: float | None, queued: int = 0, busy: int = 0
) -> StageObservation:
    return StageObservation(name, workers, busy, queued, 1, service)


def observation(*stages: StageObservation, **kw: object) -> Observation:
    base: dict[str, object] = {
        "t": 300.0,
        "interval": 30.0,
        "depth": 16,
        "steps_in_flight": 16,
        "requests_in_flight": 40,
        "inflight_mean": 40.0,
        "latency_per_token": 0.02,
        "latency_baseline": 0.018,
        "rate_limited": 0,
        "admitted": 4,
        "staleness": 8.0,
        "staleness_per_depth": 0.5,
    }
    base.update(kw)
    return Observation(stages=stages, **base)  # type: ignore[arg-type]


WORKERS_ONLY = ControllerParams(adjust_depth=False)


def moves_of(moves: tuple[Move, ...]) -> list[tuple[str, str, int, int]]:
    return [(m.action, m.stage, m.before, m.after) for m in moves]


# ---- worker moves ----------------------------------------------------------------
def test_a_slow_stage_with_a_backlog_gains_and_an_idle_fast_one_loses() -> None:
    obs = observation(
        stage("rollout", 8, 10.0),  # 48/min
        stage("propose", 8, 10.0),  # 48/min
        stage("validate", 8, 80.0, queued=5),  # 6/min: under half the median
        stage("gate", 8, 2.0),  # 240/min: over twice the median
    )
    moves = decide(obs, WORKERS_ONLY)
    assert moves_of(moves) == [("workers", "gate", 8, 7), ("workers", "validate", 8, 9)]
    gain = moves[1].reason
    assert "6.0/min" in gain and "median 48.0/min" in gain and "5 queued" in gain


def test_within_the_band_or_without_a_backlog_nothing_moves() -> None:
    # Slow but nothing waits for it: a worker more would idle.
    # Fast but items wait for it: taking a worker away would make them wait longer.
    obs = observation(
        stage("rollout", 8, 10.0),
        stage("propose", 8, 12.0),
        stage("validate", 8, 80.0, queued=0),
        stage("gate", 8, 2.0, queued=3),
    )
    assert decide(obs, WORKERS_ONLY) == ()
    # Fewer than two stages measured: there is no median to compare with.
    assert (
        decide(observation(stage("a", 8, 80.0, queued=9), stage("b", 8, None)), WORKERS_ONLY) == ()
    )


def test_per_stage_bounds_are_respected() -> None:
    params = replace(WORKERS_ONLY, bounds={"validate": (1, 8), "gate": (8, 16)})
    obs = observation(
        stage("rollout", 8, 10.0),
        stage("propose", 8, 10.0),
        stage("validate", 8, 80.0, queued=5),
        stage("gate", 8, 2.0),
    )
    assert decide(obs, params) == ()


def test_at_the_total_cap_a_gain_is_paid_by_the_stage_with_most_spare_capacity() -> None:
    params = replace(WORKERS_ONLY, max_total_workers=32, high=100.0)  # no plain losses
    obs = observation(
        stage("rollout", 8, 10.0),  # 48/min, nothing queued
        stage("propose", 8, 5.0),  # 96/min, nothing queued: the donor
        stage("validate", 8, 80.0, queued=5),
        stage("gate", 8, 12.0, queued=2),
    )
    moves = decide(obs, params)
    assert moves_of(moves) == [("workers", "propose", 8, 7), ("workers", "validate", 8, 9)]
    assert "total cap 32" in moves[0].reason
    # No stage can spare one (all have a backlog): no move at all.
    busy = observation(*(replace(s, queued=2) for s in obs.stages))
    assert decide(busy, params) == ()


def test_random_observations_never_break_bounds_cap_or_depth_limits() -> None:
    rng = random.Random(4)
    names = ("rollout", "propose", "gate", "validate")
    for _ in range(3000):
        lo_d = rng.randint(1, 8)
        params = ControllerParams(
            min_workers=rng.randint(0, 2),
            max_workers=rng.randint(2, 12),
            bounds={"validate": (1, rng.randint(1, 20))} if rng.random() < 0.5 else {},
            max_total_workers=rng.randint(4, 40),
            min_depth=lo_d,
            max_depth=lo_d + rng.randint(0, 40),
            depth_step=rng.randint(1, 4),
            staleness_budget=rng.uniform(0, 30),
            server_cap=rng.choice([None, rng.randint(1, 256)]),
            server_fill=rng.uniform(0.5, 2.0),
        )
        stages = []
        for n in names:
            lo, hi = params.bounds_for(n)
            stages.append(
                stage(
                    n,
                    rng.randint(lo, hi),
                    rng.choice([None, rng.uniform(0.5, 200)]),
                    queued=rng.choice([0, 0, rng.randint(1, 10)]),
                )
            )
        total = sum(s.workers for s in stages)
        depth = rng.randint(params.min_depth, params.max_depth)
        obs = observation(
            *stages,
            depth=depth,
            steps_in_flight=rng.randint(0, depth),
            rate_limited=rng.choice([0, 0, 0, 2]),
            staleness_per_depth=rng.choice([None, rng.uniform(0, 3)]),
            latency_per_token=rng.uniform(0.01, 0.05),
            latency_baseline=0.012,
            cooling=rng.random() < 0.2,
            inflight_mean=rng.uniform(0, 300),
            requests_per_step=rng.choice([None, rng.uniform(0.1, 12)]),
        )
        moves = decide(obs, params)
        after = {s.name: s.workers for s in stages}
        new_depth = depth
        for m in moves:
            if m.action == "workers":
                assert m.before == after[m.stage] and abs(m.after - m.before) == 1
                after[m.stage] = m.after
            else:
                assert m.before == new_depth
                new_depth = m.after
        for n, w in after.items():
            lo, hi = params.bounds_for(n)
            assert lo <= w <= hi, (n, w, params)
        assert sum(after.values()) <= max(total, params.max_total_workers)
        assert params.min_depth <= new_depth <= params.max_depth
        assert abs(new_depth - depth) <= max(params.depth_step, depth)
        if obs.rate_limited:
            assert all(m.action == "backoff" for m in moves)
        if obs.cooling:
            assert new_depth <= depth
        assert all(m.reason for m in moves)


# ---- depth and back-off ------------------------------------------------------------
BALANCED = (
    stage("rollout", 8, 10.0),
    stage("propose", 8, 10.0),
    stage("gate", 8, 10.0),
    stage("validate", 8, 12.0),
)


def test_depth_grows_while_every_signal_allows_it() -> None:
    params = ControllerParams(staleness_budget=16.0, depth_step=2)
    [m] = decide(observation(*BALANCED, staleness_per_depth=0.5), params)
    assert (m.action, m.before, m.after) == ("depth", 16, 18)
    assert "projected 9.0" in m.reason and "budget 16" in m.reason
    # Each of these holds it back:
    for why in (
        {"steps_in_flight": 12},  # slots free: not depth-bound
        {"latency_per_token": 0.05},  # 2.8x the lowest latency: the server saturates
        {"staleness_per_depth": 0.9},  # 18 x 0.9 > 16
        {"staleness_per_depth": None},  # nothing admitted yet: cost unknown
        {"cooling": True},  # just backed off
        {"depth": 64, "steps_in_flight": 64, "staleness_per_depth": 0.1},  # at max_depth
    ):
        assert decide(observation(*BALANCED, **why), params) == (), why
    # A stage short of workers: more steps would only wait in its queue.
    short = (*BALANCED[:3], stage("validate", 8, 80.0, queued=6))
    assert [m.action for m in decide(observation(*short), params)] == ["workers"]


def test_depth_shrinks_when_projected_staleness_is_over_budget_but_not_below_min() -> None:
    params = ControllerParams(staleness_budget=8.0, min_depth=12, depth_step=2)
    [m] = decide(observation(*BALANCED, staleness_per_depth=1.0), params)
    assert (m.before, m.after) == (16, 14) and "over the budget 8" in m.reason
    at_min = observation(*BALANCED, depth=12, steps_in_flight=12, staleness_per_depth=1.0)
    assert decide(at_min, params) == ()


# ---- depth aimed at the server's cap ---------------------------------------------------
CAPPED = ControllerParams(server_cap=128, server_fill=1.25, staleness_budget=32.0)


def test_with_the_server_cap_known_the_depth_aims_at_requests_in_flight() -> None:
    assert CAPPED.request_target == 160 and ControllerParams().request_target is None
    # 16 steps hold 48 requests (3 each): 160 requests take 54 steps; one decision at
    # most doubles the depth, and the staleness projection (0.5 x 32 = 16) is in budget.
    obs = observation(*BALANCED, inflight_mean=48.0, requests_per_step=3.0)
    [m] = decide(obs, CAPPED)
    assert (m.action, m.before, m.after) == ("depth", 16, 32)
    assert "48 requests in flight on average, 3.0 per step" in m.reason
    assert "under the target 160" in m.reason
    # Nearer the target, it goes straight there.
    [m] = decide(replace(obs, inflight_mean=120.0, requests_per_step=7.5), CAPPED)
    assert (m.before, m.after) == (16, 22)  # ceil(160 / 7.5)
    # Never past what the staleness budget allows: 32 / 1.6 = 20 steps.
    [m] = decide(replace(obs, staleness_per_depth=1.6), CAPPED)
    assert (m.before, m.after) == (16, 20)
    # Unlike step counting, it need not wait for an admission to size the pipeline.
    [m] = decide(replace(obs, staleness_per_depth=None), CAPPED)
    assert m.after == 32
    # Every guard of growth still holds it back.
    for why in (
        {"steps_in_flight": 12},
        {"latency_per_token": 0.05},
        {"cooling": True},
        {"inflight_mean": 160.0},  # at the target already
    ):
        assert decide(replace(obs, **why), CAPPED) == (), why
    short = (*BALANCED[:3], stage("validate", 8, 80.0, queued=6))
    assert [m.action for m in decide(replace(obs, stages=short), CAPPED)] == ["workers"]
    # No steps measured (a run still seeding): the step rule decides, as without a cap.
    unmeasured = replace(obs, requests_per_step=None)
    assert decide(unmeasured, CAPPED) == decide(unmeasured, ControllerParams())


def test_over_the_target_the_depth_comes_down_gently_within_a_dead_band() -> None:
    # 40 steps hold 240 requests, 1.5x the target: 27 steps would do; a quarter at most.
    over = observation(
        *BALANCED, depth=40, steps_in_flight=40, inflight_mean=240.0, requests_per_step=6.0,
        staleness_per_depth=0.2,
    )  # fmt: skip
    [m] = decide(over, CAPPED)
    assert (m.before, m.after) == (40, 30)
    assert "over the target 160" in m.reason and "queue" in m.reason
    # Within 15% over the target the swing of the load is left alone.
    assert decide(replace(over, inflight_mean=180.0), CAPPED) == ()
    # A cut takes effect as steps end: none more while more steps than the depth run.
    assert decide(replace(over, steps_in_flight=44), CAPPED) == ()
    # Staleness over the budget comes first, as without a cap.
    [m] = decide(replace(over, staleness_per_depth=1.0, inflight_mean=100.0), CAPPED)
    assert (m.before, m.after) == (40, 30) and "over the budget 32" in m.reason


def test_rate_limits_back_off_and_nothing_else_happens() -> None:
    obs = observation(
        stage("rollout", 8, 10.0),
        stage("validate", 8, 80.0, queued=5),
        stage("gate", 8, 2.0),
        rate_limited=3,
    )
    [m] = decide(obs, ControllerParams(backoff=0.5, min_depth=4))
    assert (m.action, m.before, m.after) == ("backoff", 16, 8)
    assert "3 rate-limit answer(s) (429)" in m.reason
    assert decide(replace(obs, depth=4), ControllerParams(min_depth=4)) == ()


def test_rate_limit_recognition() -> None:
    assert is_rate_limit("RateLimited: rate limited (429): retry after 2.00 simulated seconds")
    assert is_rate_limit("Error code: 429 - Too Many Requests")
    assert not is_rate_limit("503 service unavailable")


def test_params_errors_name_the_field() -> None:
    for kw, field in (
        ({"low": 1.5}, "low"),
        ({"high": 1.0}, "high"),
        ({"max_depth": 2, "min_depth": 4}, "max_depth"),
        ({"interval": 0}, "interval"),
        ({"backoff": 1.0}, "backoff"),
        ({"bounds": {"gate": (5, 2)}}, "bounds"),
        ({"server_cap": 0}, "server_cap"),
        ({"server_fill": 0.0}, "server_fill"),
    ):
        with pytest.raises(ValueError, match=f"ControllerParams.{field}"):
            ControllerParams(**kw)
    with pytest.raises(ValueError, match="cannot steer the synchronous mode"):
        PipelineConfig(mode="sync", controller="adaptive")


# ---- live runs on the virtual clock -------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_controller_gives_the_bottleneck_workers_and_says_why() -> None:
    wl = ToyWorkload(max_steps=None, workers=1, durations={"a": 1.0, "b": 1.0, "c": 4.0})
    params = ControllerParams(interval=10.0, adjust_depth=False, max_total_workers=5)
    pipe = Pipeline(wl, PipelineConfig(depth=8, controller="adaptive", controller_params=params))
    task = asyncio.create_task(pipe.run())
    await asyncio.sleep(25)
    rate_before = pipe.stage("c").processed / 25
    await asyncio.sleep(200)
    before = pipe.stage("c").processed
    await asyncio.sleep(40)
    rate_after = (pipe.stage("c").processed - before) / 40
    snap = pipe.controller.snapshot()
    pipe.stop("cancel")
    result = await task
    # c (4 s per item) is the bottleneck: it gained workers, within the total cap.
    workers = {s.name: s.target_workers for s in pipe.stages}
    assert workers["c"] >= 2 and sum(workers.values()) <= 5
    assert rate_after > 1.5 * rate_before
    events = list(result.events)
    actions = [e for e in events if isinstance(e, ControllerAction)]
    assert actions and all(e.source == "controller" and e.reason for e in actions)
    # Each action is followed at once by the state change it announced.
    for e in actions:
        nxt = events[events.index(e) + 1]
        assert isinstance(nxt, StageControl) and nxt.source == "controller"
        assert (nxt.stage, nxt.action, nxt.value) == (e.stage, e.action, e.after)
    # What it saw and did last, for the dashboard.
    assert snap.enabled and snap.decisions >= 20 and snap.actions == len(actions)
    assert snap.observation is not None
    assert {s.name for s in snap.observation.stages} == {"a", "b", "c"}
    c = snap.observation.stage("c")
    assert c.service_time == pytest.approx(4.0) and c.rate == pytest.approx(c.workers * 15.0)


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_depth_comes_down_to_the_staleness_budget_and_stops_at_the_minimum() -> None:
    # Every toy step is admitted, so an item misses about one version per step in flight.
    wl = ToyWorkload(max_steps=None, workers=8, durations={"a": 1.0, "b": 1.0, "c": 1.0})
    params = ControllerParams(interval=5.0, staleness_budget=2.0, min_depth=3, depth_step=1)
    pipe = Pipeline(wl, PipelineConfig(depth=8, controller="adaptive", controller_params=params))
    task = asyncio.create_task(pipe.run())
    await asyncio.sleep(200)
    pipe.stop("cancel")
    result = await task
    depth_moves = [e for e in result.events if isinstance(e, ControllerAction) and e.stage == "*"]
    assert depth_moves and pipe.depth == 3
    assert all(int(e.after) >= 3 for e in depth_moves)
    assert "over the budget 2" in depth_moves[0].reason


class RoundTrip:
    """The simulated API, except that a rate-limit answer takes a network round trip
    (the in-process simulator answers 429 in zero time, which no server does)."""

    name = "simulated api over a network"
    simulated = True

    def __init__(self, inner: LLM) -> None:
        self.inner = inner

    async def chat(self, messages: Sequence[Message], **params: Any) -> Completion:
        try:
            return await self.inner.chat(messages, **params)
        except RateLimited:
            await asyncio.sleep(0.3)
            raise


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_429s_make_the_controller_back_off_and_hold() -> None:
    clock = Clock(1.0)
    sim = Simulator(profile=ApiProfile(rpm_limit=120), seed=0, clock=clock)
    task = RulebookTask(seed=0, n_train=30, n_val=20, n_test=20)
    workload = GepaWorkload(
        task, task.train, task.val, task.seed_candidate(), RoundTrip(sim.llm("task")),
        RoundTrip(sim.llm("reflection")), GepaConfig(),
    )  # fmt: skip
    params = ControllerParams(interval=20.0, cooldown=60.0, min_depth=2)
    config = PipelineConfig(
        depth=16, controller="adaptive", controller_params=params,
        budget=Budget(max_sim_seconds=240),
    )  # fmt: skip
    pipe = Pipeline(workload, config, clock=clock)
    result = await pipe.run()
    actions = [e for e in result.events if isinstance(e, ControllerAction)]
    backoffs = [e for e in actions if e.action == "backoff"]
    assert backoffs, [e.reason for e in actions]
    first = backoffs[0]
    assert int(first.after) == int(first.before) // 2 and "429" in first.reason
    # No depth growth during the cool-down after a back-off.
    for b in backoffs:
        grown = [
            e for e in actions
            if e.action == "depth" and b.t < e.t < b.t + 60.0 and int(e.after) > int(e.before)
        ]  # fmt: skip
        assert grown == []
    assert pipe.depth < 16


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_tune_enable_disable_and_fixed_mode() -> None:
    wl = ToyWorkload(max_steps=None, workers=1, durations={"a": 1.0, "b": 1.0, "c": 4.0})
    pipe = Pipeline(wl, PipelineConfig(depth=8))  # fixed: the default
    assert not pipe.controller.enabled
    task = asyncio.create_task(pipe.run())
    await asyncio.sleep(60)
    # Fixed mode observes (the dashboard can show rates) but never acts.
    snap = pipe.controller.snapshot()
    assert not snap.enabled and snap.actions == 0 and snap.observation is not None
    assert snap.observation.stage("c").service_time == pytest.approx(4.0)
    assert [e for e in pipe.recorder.events if isinstance(e, ControllerAction)] == []
    with pytest.raises(ValueError, match="unknown controller parameter"):
        pipe.controller.tune(intervall=5)
    with pytest.raises(ValueError, match=r"ControllerParams\.interval"):
        pipe.controller.tune(interval=-1)
    pipe.controller.tune(interval=5.0, adjust_depth=False)
    assert pipe.controller.params.interval == 5.0
    pipe.controller.set_enabled(True)
    await asyncio.sleep(30)
    moved = [e for e in pipe.recorder.events if isinstance(e, ControllerAction)]
    kinds = [e.action for e in moved]
    assert kinds[:2] == ["tune", "enable"] and "workers" in kinds
    assert moved[0].before == "adjust_depth=True, interval=30.0"
    assert moved[0].after == "adjust_depth=False, interval=5.0"
    pipe.controller.set_enabled(False)
    n = len([e for e in pipe.recorder.events if isinstance(e, ControllerAction)])
    await asyncio.sleep(60)
    assert len([e for e in pipe.recorder.events if isinstance(e, ControllerAction)]) == n
    pipe.stop("cancel")
    await task


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_signals_measure_steps_and_requests_per_step() -> None:
    wl = ToyWorkload(max_steps=None, workers=8, durations={"a": 1.0, "b": 1.0, "c": 1.0})
    pipe = Pipeline(wl, PipelineConfig(depth=6))
    task = asyncio.create_task(pipe.run())
    await asyncio.sleep(40)
    pipe.controller.step()  # moves the mark: the next observation covers only what follows
    await asyncio.sleep(30)
    obs = pipe.controller.snapshot().observation
    assert obs is not None and obs.steps_mean is not None
    assert obs.steps_mean == pytest.approx(6.0, abs=0.5)
    # The toy makes no LLM calls: no requests per step to aim with, and no target.
    assert obs.inflight_mean == 0 and obs.requests_per_step is None
    assert decide(obs, ControllerParams(server_cap=8)) == decide(obs, ControllerParams())
    pipe.stop("cancel")
    await task


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_controller_that_knows_the_cap_fills_the_server_without_flooding_it() -> None:
    clock = Clock(1.0)
    cap = 24
    sim = Simulator(profile=VllmProfile(max_running=cap), seed=0, clock=clock)
    task = RulebookTask(seed=0, n_train=30, n_val=20, n_test=20)
    workload = GepaWorkload(
        task, task.train, task.val, task.seed_candidate(), sim.llm("task"),
        sim.llm("reflection"), GepaConfig(),
    )  # fmt: skip
    params = ControllerParams(interval=20.0, server_cap=cap, min_depth=2)
    config = PipelineConfig(
        depth=2, controller="adaptive", controller_params=params,
        budget=Budget(max_sim_seconds=900),
    )  # fmt: skip
    pipe = Pipeline(workload, config, clock=clock)
    result = await pipe.run()
    moves = [e for e in result.events if isinstance(e, ControllerAction) and e.action == "depth"]
    grown = [e for e in moves if int(e.after) > int(e.before)]
    assert grown and all("under the target 30" in e.reason for e in grown), moves
    # From depth 2 it got to the cap within a few decisions, not two steps at a time...
    assert max(int(e.after) for e in grown) >= 8
    stats = sim.server.stats()
    assert stats.mean_running > 0.5 * cap
    # ...and it did not flood the server's queue: requests in flight stayed near the target.
    assert stats.mean_in_flight < 1.5 * 30
