"""The Run handle: a pipeline on a background thread, steered from the test's thread."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from test_runtime_support import FAST, HumanToy, kinds, runs_fixture, until  # noqa: F401
from toy import ToyWorkload

import flashevolve_nb
from flashevolve_nb.engine import Artifact, Origin, Pipeline, PipelineConfig, RunFailed
from flashevolve_nb.engine.events import (
    HumanSubmitted,
    ItemStarted,
    QueueEdited,
    StageControl,
    StepFinished,
)
from flashevolve_nb.runtime import Run, RunEnded, start

ROOT = Path(__file__).resolve().parents[1]


def toy_run(runs: list[Run], workload: ToyWorkload | None = None, **config: object) -> Run:
    wl = workload or ToyWorkload(durations=dict(FAST))
    run = start(Pipeline(wl, PipelineConfig(**config)))  # type: ignore[arg-type]
    runs.append(run)
    return run


def test_start_returns_at_once_and_the_run_goes_on_while_the_main_thread_blocks(
    runs: list[Run],
) -> None:
    run = toy_run(runs, depth=4)
    assert run.state in ("starting", "running")
    until(lambda: run.snapshot().stats.accepted >= 1, "a first admission")
    before = run.snapshot()
    time.sleep(0.5)  # the main thread blocks, as a notebook cell running time.sleep
    after = run.snapshot()
    assert after.events > before.events
    assert after.stats.accepted > before.stats.accepted
    assert after.sim_seconds > before.sim_seconds
    assert run.done is False and run.error is None
    assert run._host.thread is not threading.current_thread()


def test_snapshot_is_one_immutable_value_with_stages_queues_requests_pool_stats(
    runs: list[Run],
) -> None:
    run = toy_run(runs, depth=6)
    until(lambda: run.snapshot().stats.accepted >= 2, "two admissions")
    run.pause("c")
    until(lambda: run.snapshot().stage("c").queued >= 2, "items waiting before c")
    s = run.snapshot()
    assert s.state == "running"
    assert [st.name for st in s.stages] == ["a", "b", "c"]
    waiting = [q for q in s.queued if q.stage == "c"]
    assert [q.item_id for q in waiting] == list(s.stage("c").queued_ids)
    assert all(q.staleness == s.pool.version - q.base_version for q in waiting)
    assert s.pool.version == len(s.pool.entries) and s.stats.accepted == s.pool.version - 1
    assert s.requests == ()  # the toy makes no LLM calls
    with pytest.raises(AttributeError):
        s.state = "x"  # type: ignore[misc]
    run.pause()
    until(lambda: run.snapshot().state == "paused", "every stage paused")


def test_pause_resume_workers_depth_and_policy_act_and_are_recorded(runs: list[Run]) -> None:
    run = toy_run(runs, depth=4)
    until(lambda: run.snapshot().stats.accepted >= 1, "a first admission")
    run.pause("b")
    assert run.snapshot().stage("b").paused  # in effect when pause() returns
    seq = run.events_since(0).next_seq
    until(lambda: run.snapshot().stage("b").queued >= 2, "items waiting before b")
    assert not [
        e for e in run.events_since(seq).events if isinstance(e, ItemStarted) and e.stage == "b"
    ]
    run.resume("b")
    until(
        lambda: any(
            isinstance(e, ItemStarted) and e.stage == "b" for e in run.events_since(seq).events
        ),
        "b to start items again",
    )
    run.set_workers("c", 5)
    assert run.snapshot().stage("c").workers == 5
    run.set_depth(2)
    assert run.snapshot().depth == 2
    run.set_policy("discard")
    assert run.snapshot().policy == "discard"
    controls = [(e.stage, e.action, e.value) for e in kinds(run, StageControl)]
    assert controls[:5] == [
        ("b", "pause", ""),
        ("b", "resume", ""),
        ("c", "workers", "5"),
        ("*", "depth", "2"),
        ("*", "policy", "discard"),
    ]
    frame = run.events
    assert (frame.kind == "stage_control").sum() >= 5
    with pytest.raises(KeyError, match="no stage 'nope'"):
        run.pause("nope")
    with pytest.raises(ValueError, match="depth must be >= 1"):
        run.set_depth(0)


def test_an_item_failure_shows_on_the_handle_and_the_run_goes_on(runs: list[Run]) -> None:
    wl = ToyWorkload(durations=dict(FAST), fail_when=lambda s, item: s == "b" and item.step == 3)
    run = toy_run(runs, wl, depth=3)
    until(lambda: run.snapshot().errors, "the failure to be reported")
    s = run.snapshot()
    assert "b, step 3: RuntimeError: boom in b at step 3" in s.errors[-1]
    assert s.stats.items_failed == 1 and s.error == "" and run.error is None
    until(lambda: run.snapshot().stats.accepted >= 5, "the run to go on")


class BrokenHead(ToyWorkload):
    def begin_step(self, step, item_id, pool, rng, now):  # type: ignore[no-untyped-def]
        if step == 4:
            raise ZeroDivisionError("the head broke")
        return super().begin_step(step, item_id, pool, rng, now)


def test_a_failed_run_says_why_on_the_handle_and_keeps_what_it_admitted(
    runs: list[Run], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="flashevolve_nb.runtime"):
        run = toy_run(runs, BrokenHead(durations=dict(FAST)), depth=1)
        with pytest.raises(RunFailed, match="the head broke"):
            run.wait(timeout=30)
    assert run.state == "failed" and run.done
    assert isinstance(run.error, RunFailed)
    s = run.snapshot()
    assert "ZeroDivisionError" in s.error and s.state == "failed"
    assert any("the run failed" in e for e in s.errors)
    assert any("failed" in r.getMessage() for r in caplog.records)
    result = run.result()  # what was admitted before the failure is still there
    assert result.stats.accepted == 3
    assert not run._host.thread.is_alive()  # type: ignore[union-attr]
    with pytest.raises(RunEnded, match="has ended"):
        run.pause()
    run.stop()  # stopping an ended run does nothing


@pytest.mark.asyncio
async def test_await_run_gives_the_result(runs: list[Run]) -> None:
    run = toy_run(runs, ToyWorkload(durations=dict(FAST), max_steps=5), depth=2)
    result = await run
    assert result.finish_reason == "the workload has no more steps"
    assert result.stats.accepted == 5
    assert run.state == "finished" and run.result() is result


def test_wait_with_a_timeout_leaves_the_run_alone(runs: list[Run]) -> None:
    run = toy_run(runs)
    with pytest.raises(TimeoutError, match="still"):
        run.wait(timeout=0.05)
    assert not run.done
    run.stop("drain")
    result = run.wait(timeout=30)
    started = {e.step for e in result.events if e.kind == "step_started"}
    assert started == {e.step for e in result.events if isinstance(e, StepFinished)}
    assert run.state == "finished"


def test_several_runs_coexist_in_one_process(runs: list[Run]) -> None:
    one = toy_run(runs, depth=2)
    two = toy_run(runs, depth=3)
    assert one.name != two.name
    assert one._host.thread is not two._host.thread
    until(lambda: one.snapshot().stats.accepted >= 2, "run one to admit")
    until(lambda: two.snapshot().stats.accepted >= 2, "run two to admit")
    one.stop("cancel")
    one.wait(timeout=30)
    seen = two.snapshot().stats.accepted
    until(lambda: two.snapshot().stats.accepted > seen, "run two to go on after one stopped")
    assert two.state == "running"


def test_submit_replace_and_drop_through_the_handle(runs: list[Run]) -> None:
    run = toy_run(runs, HumanToy(durations=dict(FAST)), depth=4)
    until(lambda: run.snapshot().stats.accepted >= 1, "a first admission")
    seed = next(e.artifact for e in run.snapshot().pool.entries if e.artifact.origin == "seed")
    mine = run.submit("written by hand", parent=seed.id)
    assert mine.origin == Origin.HUMAN and mine.parents == (seed.id,)
    assert mine["text"] == "written by hand"
    until(lambda: mine.id in {e.artifact.id for e in run.snapshot().pool.entries}, "admission")
    sub = kinds(run, HumanSubmitted)
    assert [(e.artifact_id, e.parent_id, e.components) for e in sub] == [
        (mine.id, seed.id, ("text",))
    ]

    run.pause("b")
    until(lambda: len(run.queued("b")) >= 2, "two items waiting before b")
    first, second = run.queued("b")[:2]
    edited = run.replace(first.id, {"text": "edited in the queue"})
    assert edited is not None and edited.parents == (first.artifact.id,)
    assert run.queued("b")[0].artifact == edited
    assert run.drop(second.id) is True
    assert run.drop(second.id) is False  # no longer waiting
    assert second.id not in {i.id for i in run.queued("b")}
    edits = [(e.action, e.item_id) for e in kinds(run, QueueEdited)]
    assert edits == [("replace", first.id), ("drop", second.id)]
    ended = [e for e in kinds(run, StepFinished) if e.step == second.step]
    assert ended and "dropped" in ended[0].outcome
    run.resume("b")
    until(lambda: edited.id in {e.artifact.id for e in run.snapshot().pool.entries}, "the edit")


def test_human_proposals_need_a_workload_that_takes_them(runs: list[Run]) -> None:
    run = toy_run(runs)
    until(lambda: run.snapshot().stats.accepted >= 1, "a first admission")
    with pytest.raises(TypeError, match="takes no human proposals"):
        run.submit("by hand")
    with pytest.raises(KeyError, match="not in the pool"):
        run.submit("by hand", parent="a999")


def test_start_with_no_argument_runs_the_simulated_demo(runs: list[Run]) -> None:
    run = flashevolve_nb.start(minutes=30, time_scale=600, n_train=20, n_val=10, n_test=10)
    runs.append(run)
    assert isinstance(run, Run) and run.demo is not None
    s = run.snapshot()
    assert s.workload == "gepa:rulebook" and "simulated" in s.backend
    assert s.time_scale == 600
    until(lambda: run.snapshot().stats.llm_calls > 0, "LLM calls on the simulated clock")
    with pytest.raises(TypeError, match="apply to the demo"):
        start(Pipeline(ToyWorkload()), minutes=3)


def test_run_dir_goes_to_the_run_store(tmp_path: Path, runs: list[Run]) -> None:
    if importlib.util.find_spec("flashevolve_nb.store") is None:
        with pytest.raises(RuntimeError, match=r"run store \(flashevolve_nb.store\)"):
            start(Pipeline(ToyWorkload()), run_dir=tmp_path)
    else:
        run = start(Pipeline(ToyWorkload(durations=dict(FAST), max_steps=3)), run_dir=tmp_path)
        runs.append(run)
        run.wait(timeout=60)
        assert run.store is not None and any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="resume=True needs the run_dir"):
        start(Pipeline(ToyWorkload()), resume=True)


def test_inline_mode_runs_on_the_callers_loop_and_patches_only_then() -> None:
    # A subprocess: nest_asyncio2 patches asyncio for the whole process.
    code = textwrap.dedent(
        """
        import asyncio, json, sys, threading
        sys.path.insert(0, "tests")
        from toy import ToyWorkload
        from flashevolve_nb.engine import Pipeline, PipelineConfig
        from flashevolve_nb.runtime import start

        async def main():
            wl = ToyWorkload(durations={"a": 0.002, "b": 0.002, "c": 0.002}, max_steps=6)
            run = start(Pipeline(wl, PipelineConfig(depth=2)), inline=True)
            patched_before = "nest_asyncio2" in sys.modules
            same_thread = run._host.thread is threading.current_thread()
            result = run.wait(timeout=30)   # blocking, from inside the running loop
            return {
                "patched_before": patched_before,
                "same_thread": same_thread,
                "accepted": result.stats.accepted,
                "state": run.state,
                "threads": threading.active_count(),
            }

        print(json.dumps(asyncio.run(main())))
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {
        "patched_before": False,
        "same_thread": True,
        "accepted": 6,
        "state": "finished",
        "threads": 1,
    }


def test_inline_mode_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="inline=True runs the pipeline on this thread"):
        start(Pipeline(ToyWorkload()), inline=True)


def test_importing_the_runtime_and_start_pulls_in_no_jupyter() -> None:
    code = (
        "import json, sys, flashevolve_nb, flashevolve_nb.runtime\n"
        "assert flashevolve_nb.start is flashevolve_nb.runtime.start\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    top = set(json.loads(r.stdout))
    assert not top & {"ipywidgets", "plotly", "IPython", "ipykernel", "comm", "nest_asyncio2"}


def test_a_human_artifact_must_say_so() -> None:
    art = Artifact(id="x", components={"text": "t"}, origin=Origin.PROPOSAL, parents=("a0",))
    pipe = Pipeline(HumanToy())
    with pytest.raises(RuntimeError, match="can join only a running run"):
        pipe.submit(art)
