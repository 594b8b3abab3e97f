"""Faults inside the pipeline: an item fails alone; a stage that loses its workers is reported."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from toy import ToyWorkload

from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine import Pipeline, PipelineConfig, RunFailed, WorkItem
from flashevolve_nb.engine.events import (
    Admitted,
    ItemFailed,
    RunFinished,
    StageStalled,
    StepFinished,
    StepStarted,
    WorkerLost,
)
from flashevolve_nb.sim import RulebookTask

pytestmark = [pytest.mark.asyncio, pytest.mark.looptime]

HANG_GUARD = 100_000.0
"""Virtual seconds: a run that has not ended by then is hung (looptime jumps to it at once)."""


class BuggyEvaluator(RulebookTask):
    """The rulebook task with a metric that crashes on one training example."""

    def __init__(self, bad_id: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.bad_id = bad_id

    def score(self, instance: Any, output: str) -> Any:
        if instance.id == self.bad_id:
            raise ValueError(f"evaluator bug on {instance.id}")
        return super().score(instance, output)


async def test_a_raising_evaluator_fails_its_items_and_the_run_goes_on() -> None:
    demo = build_demo(DemoConfig(minutes=20, n_val=12, n_train=12))
    task = BuggyEvaluator(bad_id=demo.task.train[0].id, seed=0, n_train=12, n_val=12, n_test=10)
    demo.workload.task = task
    result = await asyncio.wait_for(demo.run(), HANG_GUARD)
    assert result.finish_reason == "max_sim_seconds=1200 reached"
    failed = [e for e in result.events if isinstance(e, ItemFailed)]
    assert failed and result.stats.items_failed == len(failed)
    for e in failed:
        assert e.stage in ("rollout", "gate")
        assert e.error == f"ValueError: evaluator bug on {task.bad_id}"
        assert "in score" in e.traceback  # a summary that points at the culprit
    steps_failed = {e.step for e in failed}
    finished = {e.step: e.outcome for e in result.events if isinstance(e, StepFinished)}
    assert all(finished[s].startswith("failed at") for s in steps_failed)
    assert result.stats.accepted > 0  # the other steps went on and improved the prompt


def raise_in(stage: str, exc: BaseException, every: int = 1) -> Any:
    def hook(s: str, item: WorkItem) -> bool:
        if s == stage and item.step % every == 0:
            raise exc
        return False

    return hook


async def test_a_stray_cancelled_error_fails_the_item_not_the_worker() -> None:
    wl = ToyWorkload(max_steps=12, fail_when=raise_in("b", asyncio.CancelledError(), every=3))
    result = await asyncio.wait_for(Pipeline(wl, PipelineConfig(depth=4)).run(), HANG_GUARD)
    failed = [e for e in result.events if isinstance(e, ItemFailed)]
    assert [e.step for e in failed] == [3, 6, 9, 12]
    assert all("CancelledError" in e.error for e in failed)
    assert not any(isinstance(e, WorkerLost) for e in result.events)
    assert result.stats.accepted == 8  # every other step was admitted


class WorkerKiller(BaseException):
    """Not an Exception: what some libraries raise to end a task, not to report an error."""


async def test_a_stage_whose_workers_all_die_is_reported_not_hung() -> None:
    wl = ToyWorkload(workers=2, fail_when=raise_in("b", WorkerKiller("gone")))
    p = Pipeline(wl, PipelineConfig(depth=4))
    with pytest.raises(RunFailed, match="stage 'b' lost all its workers"):
        await asyncio.wait_for(p.run(), HANG_GUARD)
    events = list(p.recorder.events)
    lost = [e for e in events if isinstance(e, WorkerLost)]
    assert [e.workers_left for e in lost] == [1, 0]
    assert all(e.stage == "b" and "WorkerKiller: gone" in e.error for e in lost)
    stalled = [e for e in events if isinstance(e, StageStalled)]
    assert len(stalled) == 1 and stalled[0].stage == "b"
    assert isinstance(events[-1], RunFinished) and events[-1].reason.startswith("failed")
    # The items the dead workers held failed; every step still got its end.
    starts = {e.step for e in events if isinstance(e, StepStarted)}
    assert starts == {e.step for e in events if isinstance(e, StepFinished)}
    assert p.snapshot().state == "failed"


async def test_workers_cancelled_from_outside_are_reported() -> None:
    wl = ToyWorkload(workers=2)
    p = Pipeline(wl, PipelineConfig(depth=4))
    run = asyncio.ensure_future(p.run())

    def cancel_stage_c(e: object) -> None:
        if isinstance(e, Admitted) and e.version == 3:
            for task in asyncio.all_tasks():
                if task.get_name() == "flashevolve-c":
                    task.cancel()

    p.bus.subscribe(cancel_stage_c)
    with pytest.raises(RunFailed, match="stage 'c' lost all its workers"):
        await asyncio.wait_for(run, HANG_GUARD)
    lost = [e for e in p.recorder.events if isinstance(e, WorkerLost)]
    assert len(lost) == 2 and all(e.error == "CancelledError" for e in lost)
