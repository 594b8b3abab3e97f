"""Scheduling behaviour of the pipeline, on a virtual loop clock (looptime)."""

from __future__ import annotations

import asyncio

import pytest
from toy import ToyWorkload

from flashevolve_nb.clock import Clock
from flashevolve_nb.engine import Budget, Pipeline, PipelineConfig, RunFailed
from flashevolve_nb.engine.events import (
    Admitted,
    ItemFailed,
    ItemStarted,
    StageControl,
    StepFinished,
    StepStarted,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.looptime]


def steps_in_flight_over_time(events: tuple[object, ...]) -> list[int]:
    live = 0
    seen = []
    for e in events:
        if isinstance(e, StepStarted):
            live += 1
        elif isinstance(e, StepFinished):
            live -= 1
        seen.append(live)
    return seen


async def test_items_pass_stages_in_order_and_are_admitted() -> None:
    wl = ToyWorkload(max_steps=5)
    result = await Pipeline(wl, PipelineConfig(depth=3)).run()
    assert result.finish_reason == "the workload has no more steps"
    for step in range(1, 6):
        stages = [s for s, st, _, _ in wl.log if st == step]
        assert stages == ["a", "b", "c"], step
        times = [(t0, t1) for s, st, t0, t1 in wl.log if st == step]
        assert all(times[i][1] <= times[i + 1][0] for i in range(2))
    admitted = [e for e in result.events if isinstance(e, Admitted)]
    assert [e.version for e in admitted] == list(range(1, 7))  # seed + 5, no gaps
    assert len(result.pool.entries) == 6
    assert result.stats.accepted == 5


async def test_depth_bounds_steps_in_flight() -> None:
    wl = ToyWorkload(max_steps=20, workers=8)
    result = await Pipeline(wl, PipelineConfig(depth=4)).run()
    assert max(steps_in_flight_over_time(result.events)) == 4
    # Eight workers but only four steps: no stage ever runs more than four items.
    for stage in "abc":
        busy = 0
        peak = 0
        for s, _, t0, _t1 in sorted(wl.log, key=lambda r: r[2]):
            if s == stage:
                busy = sum(1 for s2, _, a, b in wl.log if s2 == stage and a <= t0 < b)
                peak = max(peak, busy)
        assert peak <= 4


async def test_async_overlaps_stages_and_sync_does_not() -> None:
    async_wl = ToyWorkload(max_steps=6)
    a = await Pipeline(async_wl, PipelineConfig(depth=6)).run()
    sync_wl = ToyWorkload(max_steps=6)
    s = await Pipeline(sync_wl, PipelineConfig(mode="sync", depth=6)).run()
    # Sync: one step at a time, 6 steps x (1 + 2 + 3) seconds.
    assert s.stats.sim_seconds == pytest.approx(36.0)
    assert max(steps_in_flight_over_time(s.events)) == 1
    starts = [e.step for e in s.events if isinstance(e, StepStarted)]
    assert starts == sorted(starts)
    # Async with two workers on the slowest stage: bounded by stage c (3 s, 2 workers).
    assert a.stats.sim_seconds < 15.0


async def test_pause_stops_a_stage_taking_items_and_resume_restarts_it() -> None:
    wl = ToyWorkload(max_steps=None)
    pipe = Pipeline(wl, PipelineConfig(depth=4))
    task = asyncio.create_task(pipe.run())
    await asyncio.sleep(10)
    pipe.pause("b")
    await asyncio.sleep(1)
    done_b = pipe.stage("b").processed
    started_b = [e for e in pipe.recorder.events if isinstance(e, ItemStarted) and e.stage == "b"]
    await asyncio.sleep(30)
    # In-flight items finished; nothing new started while paused.
    assert pipe.stage("b").processed <= done_b + pipe.stage("b").busy + 2
    started_after = [
        e for e in pipe.recorder.events if isinstance(e, ItemStarted) and e.stage == "b"
    ]
    assert len(started_after) == len(started_b)
    assert pipe.stage("b").busy == 0
    assert len(pipe.stage("b").queue) > 0
    snap = pipe.snapshot()
    assert next(s for s in snap.stages if s.name == "b").paused
    pipe.resume("b")
    await asyncio.sleep(10)
    assert pipe.stage("b").processed > done_b
    pipe.stop("cancel")
    result = await task
    controls = [(e.stage, e.action) for e in result.events if isinstance(e, StageControl)]
    assert ("b", "pause") in controls and ("b", "resume") in controls


async def test_worker_count_changes_live() -> None:
    wl = ToyWorkload(max_steps=None, workers=1, durations={"a": 1.0, "b": 1.0, "c": 4.0})
    pipe = Pipeline(wl, PipelineConfig(depth=8))
    task = asyncio.create_task(pipe.run())
    await asyncio.sleep(20)
    rate_before = pipe.stage("c").processed / 20
    pipe.set_workers("c", 4)
    await asyncio.sleep(1)
    before = pipe.stage("c").processed
    await asyncio.sleep(20)
    rate_after = (pipe.stage("c").processed - before) / 20
    assert rate_after >= 3 * rate_before
    pipe.set_workers("c", 1)
    await asyncio.sleep(8)
    assert len(pipe._workers[2]) == 1
    pipe.stop("cancel")
    await task


async def test_stop_drain_finishes_in_flight_and_cancel_keeps_admitted() -> None:
    wl = ToyWorkload(max_steps=None)
    pipe = Pipeline(wl, PipelineConfig(depth=4))
    task = asyncio.create_task(pipe.run())
    await asyncio.sleep(12)
    pipe.stop("drain")
    result = await task
    started = {e.step for e in result.events if isinstance(e, StepStarted)}
    finished = {e.step for e in result.events if isinstance(e, StepFinished)}
    assert started == finished
    assert result.finish_reason == "stopped"

    wl2 = ToyWorkload(max_steps=None)
    pipe2 = Pipeline(wl2, PipelineConfig(depth=4))
    task2 = asyncio.create_task(pipe2.run())
    await asyncio.sleep(12)
    admitted_before = {e.artifact.id for e in pipe2.pool}
    pipe2.stop("cancel")
    result2 = await task2
    assert admitted_before <= {e.artifact.id for e in result2.pool.entries}
    assert pipe2.state == "cancelled"  # a cancel says so (it was "finished")
    outcomes = {e.step: e.outcome for e in result2.events if isinstance(e, StepFinished)}
    assert set(outcomes) == {e.step for e in result2.events if isinstance(e, StepStarted)}
    assert "cancelled" in outcomes.values()
    snap = pipe2.snapshot()
    assert snap.steps_in_flight == 0 and all(s.queued == 0 for s in snap.stages)


async def test_budgets_end_the_run() -> None:
    r = await Pipeline(ToyWorkload(), PipelineConfig(budget=Budget(max_sim_seconds=20))).run()
    assert r.finish_reason == "max_sim_seconds=20 reached"
    assert r.stats.sim_seconds == pytest.approx(20.0)

    r = await Pipeline(ToyWorkload(), PipelineConfig(budget=Budget(max_proposals=7))).run()
    assert r.finish_reason == "max_proposals=7 reached"
    # Proposals already being made when the budget ran out still finish.
    assert 7 <= r.stats.accepted <= 7 + 2

    wl = ToyWorkload()
    r = await Pipeline(wl, PipelineConfig(budget=Budget(max_metric_calls=30))).run()
    assert "max_metric_calls=30" in r.finish_reason
    # Stages that would spend an exhausted budget drop their queued items;
    # what was already running finishes (overshoot at most the busy workers).
    assert len(wl.log) <= 30 + 3 * wl.workers


async def test_a_failing_item_fails_its_step_not_the_run() -> None:
    wl = ToyWorkload(max_steps=6, fail_when=lambda s, item: s == "b" and item.step % 2 == 0)
    result = await Pipeline(wl, PipelineConfig(depth=3)).run()
    failed = [e for e in result.events if isinstance(e, ItemFailed)]
    assert sorted(e.step for e in failed) == [2, 4, 6]
    assert all("boom in b" in e.error and "RuntimeError" in e.traceback for e in failed)
    assert result.stats.accepted == 3
    assert result.stats.items_failed == 3


async def test_dropped_items_end_their_step() -> None:
    wl = ToyWorkload(max_steps=4, drop_when=lambda s, item: s == "a" and item.step == 2)
    result = await Pipeline(wl, PipelineConfig(depth=2)).run()
    outcomes = {e.step: e.outcome for e in result.events if isinstance(e, StepFinished)}
    assert outcomes[2] == "ended at a"
    assert outcomes[1] == outcomes[3] == outcomes[4] == "admitted"


async def test_stale_items_meet_the_policy_at_decision_points() -> None:
    result = await Pipeline(ToyWorkload(max_steps=10), PipelineConfig(depth=5)).run()
    stale = [e for e in result.events if e.kind == "stale_detected"]
    decisions = [e for e in result.events if e.kind == "policy_decision"]
    assert stale and len(stale) == len(decisions)
    for s in stale:
        assert s.staleness == s.pool_version - s.base_version > 0
    assert {d.decision for d in decisions} == {"accept"}
    assert result.stats.stale_seen == len(stale)


async def test_seed_failure_is_reported() -> None:
    class Broken(ToyWorkload):
        async def seed(self, ctx):  # type: ignore[no-untyped-def]
            raise ConnectionError("server down")

    pipe = Pipeline(Broken(), PipelineConfig())
    with pytest.raises(RunFailed, match=r"seed evaluation failed.*server down"):
        await pipe.run()
    assert pipe.state == "failed"


async def test_a_raising_subscriber_is_removed_not_fatal() -> None:
    pipe = Pipeline(ToyWorkload(max_steps=3), PipelineConfig())

    def bad(event: object) -> None:
        raise ValueError("observer bug")

    pipe.bus.subscribe(bad)
    with pytest.warns(RuntimeWarning, match="observer bug"):
        result = await pipe.run()
    assert result.stats.accepted == 3


async def test_clock_follows_time_scale() -> None:
    pipe = Pipeline(ToyWorkload(max_steps=2), PipelineConfig(mode="sync"), clock=Clock(10.0))
    result = await pipe.run()
    # Stage sleeps are loop seconds; the clock reports 10 simulated seconds per loop second.
    assert result.stats.sim_seconds == pytest.approx(10 * 12.0)


async def test_depth_and_policy_change_live() -> None:
    wl = ToyWorkload(max_steps=None, workers=8)
    pipe = Pipeline(wl, PipelineConfig(depth=2))
    task = asyncio.create_task(pipe.run())
    await asyncio.sleep(20)
    assert pipe.steps_in_flight <= 2
    pipe.set_depth(6)
    await asyncio.sleep(3)
    assert pipe.steps_in_flight == 6
    pipe.set_policy("accept")
    with pytest.raises(ValueError, match="unknown staleness policy"):
        pipe.set_policy("never")
    with pytest.raises(ValueError, match="depth must be >= 1"):
        pipe.set_depth(0)
    pipe.stop("cancel")
    result = await task
    controls = [(e.action, e.value) for e in result.events if isinstance(e, StageControl)]
    assert ("depth", "6") in controls and ("policy", "accept") in controls
    assert max(steps_in_flight_over_time(result.events)) == 6


async def test_sync_mode_refuses_a_deeper_pipeline() -> None:
    pipe = Pipeline(ToyWorkload(max_steps=1), PipelineConfig(mode="sync", depth=8))
    assert pipe.depth == 1
    assert all(s.target_workers == 1 for s in pipe.stages)
    with pytest.raises(ValueError, match="one step at a time"):
        pipe.set_depth(4)
    await pipe.run()


async def test_wall_budget_follows_the_loop_clock() -> None:
    # On a virtual loop the wall budget is in loop seconds (real seconds otherwise).
    r = await Pipeline(ToyWorkload(), PipelineConfig(budget=Budget(max_wall_seconds=7))).run()
    assert r.finish_reason == "max_wall_seconds=7 reached"


async def test_snapshot_is_immutable_and_describes_the_run() -> None:
    pipe = Pipeline(ToyWorkload(max_steps=None), PipelineConfig(depth=3))
    task = asyncio.create_task(pipe.run())
    await asyncio.sleep(5.5)
    snap = pipe.snapshot()
    assert snap.state == "running" and snap.depth == 3 and snap.steps_in_flight == 3
    assert [s.name for s in snap.stages] == ["a", "b", "c"]
    assert sum(s.busy + s.queued for s in snap.stages) == 3
    assert snap.pool.version == len(snap.pool.entries) >= 1
    with pytest.raises(AttributeError):
        snap.depth = 4  # type: ignore[misc]
    pipe.stop("cancel")
    await task
    assert pipe.snapshot().state == "cancelled"


async def test_a_raising_policy_or_admission_fails_the_item_not_the_run() -> None:
    from flashevolve_nb.engine import Decision

    class Exploding:
        name = "exploding"

        async def decide(self, item, staleness, point, ctx):  # type: ignore[no-untyped-def]
            if item.step % 2:
                raise RuntimeError("policy bug")
            return Decision("accept", "fine")

    class BadAdmission(ToyWorkload):
        def admission(self, item):  # type: ignore[no-untyped-def]
            if item.step == 3:
                raise ValueError("no scores for step 3")
            return super().admission(item)

    pipe = Pipeline(BadAdmission(max_steps=10, workers=4), PipelineConfig(depth=5))
    pipe.set_policy(Exploding())
    result = await pipe.run()
    failed = [e for e in result.events if isinstance(e, ItemFailed)]
    assert failed
    assert {e.stage for e in failed} <= {"b", "c", "admit"}
    assert any("policy bug" in e.error for e in failed)
    assert result.finish_reason == "the workload has no more steps"
    finished = [e for e in result.events if isinstance(e, StepFinished)]
    assert len(finished) == 10


async def test_cancelling_the_run_task_winds_everything_down() -> None:
    pipe = Pipeline(ToyWorkload(max_steps=None), PipelineConfig(depth=4))
    task = asyncio.create_task(pipe.run())
    await asyncio.sleep(7)
    admitted = {e.artifact.id for e in pipe.pool}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pipe.state == "cancelled"
    assert admitted <= {e.artifact.id for e in pipe.pool}
    assert all(not w for w in pipe._workers)
    kinds = [e.kind for e in pipe.recorder.events]
    assert kinds[-1] == "run_finished"
    assert kinds.count("step_started") == kinds.count("step_finished")


async def test_a_workload_without_a_seed_is_refused() -> None:
    class NoSeed(ToyWorkload):
        async def seed(self, ctx):  # type: ignore[no-untyped-def]
            return []

    with pytest.raises(RunFailed, match="no seed artifact"):
        await Pipeline(NoSeed(), PipelineConfig()).run()


async def test_drain_resumes_paused_stages_so_it_can_finish() -> None:
    pipe = Pipeline(ToyWorkload(max_steps=None), PipelineConfig(depth=3))
    task = asyncio.create_task(pipe.run())
    await asyncio.sleep(4)
    pipe.pause("c")
    await asyncio.sleep(20)
    assert len(pipe.stage("c").queue) > 0
    pipe.stop("drain")
    result = await asyncio.wait_for(task, timeout=60)
    assert result.finish_reason == "stopped"
    outcomes = [e.outcome for e in result.events if isinstance(e, StepFinished)]
    assert "cancelled" not in outcomes
    assert ("c", "resume") in [
        (e.stage, e.action) for e in result.events if e.kind == "stage_control"
    ]
