"""flashevolve_nb.plots: figures from a run's events, checked against the run itself."""

from __future__ import annotations

import json

import looptime
import pandas as pd
import pytest

import flashevolve_nb
from flashevolve_nb import plots
from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine import RunResult

SMALL = {"minutes": 6.0, "n_train": 20, "n_val": 10, "n_test": 10, "seed": 0}


def run_virtual(**options: object) -> RunResult:
    demo = build_demo(DemoConfig(**{**SMALL, **options}))  # type: ignore[arg-type]
    loop = looptime.new_event_loop(start=0.0)
    try:
        return loop.run_until_complete(demo.run())
    finally:
        loop.close()


@pytest.fixture(scope="module")
def runs() -> dict[str, RunResult]:
    return {"sync": run_virtual(mode="sync"), "async": run_virtual(mode="async")}


def test_score_over_time_is_the_best_so_far_up_to_the_end_of_each_run(
    runs: dict[str, RunResult],
) -> None:
    fig = plots.score_over_time(runs)
    lines = [t for t in fig.data if t.mode == "lines"]
    assert [t.name for t in lines] == ["sync", "async"]
    for trace, result in zip(lines, runs.values(), strict=True):
        ys = list(trace.y)
        assert ys == sorted(ys)  # best so far never goes down
        assert ys[-1] == pytest.approx(result.best_score)
        assert ys[0] == pytest.approx(result.stats.seed_score)
        assert trace.x[-1] == pytest.approx(result.stats.sim_seconds / 60.0)
    assert fig.layout.title.text.endswith("(simulated)")
    frame = plots.best_score_frame(runs["async"])
    assert list(frame.columns) == ["run", "minutes", "artifact_id", "origin", "score", "best"]
    assert len(frame) == runs["async"].stats.accepted + 1  # the seed and every admission


def test_no_artifact_text_and_no_unescaped_markup_reaches_a_figure(
    runs: dict[str, RunResult],
) -> None:
    evil = '<img src=x onerror="alert(1)">'
    figures = [
        plots.score_over_time({evil: runs["async"]}, title=evil),
        plots.stage_timeline({evil: runs["async"], "other": runs["sync"]}, title=evil),
        plots.throughput({evil: runs["async"]}, title=evil),
    ]
    texts = {
        line
        for e in runs["async"].pool.entries
        for text in e.artifact.values()
        for line in text.splitlines()
        if len(line) > 30
    }
    assert texts
    for fig in figures:
        blob = json.dumps(fig.to_plotly_json(), default=str)
        assert "<img" not in blob and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in blob
        assert not [t for t in texts if t in blob]


def test_stage_timeline_counts_busy_workers_from_item_events() -> None:
    rows = [
        ("run_started", 0.0, None, None),
        ("item_started", 0.0, "rollout", "i1"),
        ("item_started", 30.0, "rollout", "i2"),
        ("item_finished", 60.0, "rollout", "i1"),
        ("item_dropped", 70.0, "propose", "i9"),  # dropped while queued: never busy
        ("item_started", 60.0, "propose", "i1"),
        ("item_failed", 90.0, "rollout", "i2"),
        ("item_finished", 120.0, "propose", "i1"),
    ]
    events = pd.DataFrame(rows, columns=["kind", "t", "stage", "item_id"])
    events["seq"] = range(len(events))
    occ = plots.occupancy_frame(events)
    rollout = occ[occ["stage"] == "rollout"][["minutes", "busy"]].values.tolist()
    assert rollout == [[0.0, 1], [0.5, 2], [1.0, 1], [1.5, 0], [2.0, 0]]
    assert "propose" in set(occ["stage"]) and occ["busy"].min() == 0
    mean = plots.mean_busy(events).set_index("stage")["mean_busy"]
    # rollout: 1 worker for 0.5 min, 2 for 0.5, 1 for 0.5, over 2 minutes; propose 1 for 1.
    assert mean["rollout"] == pytest.approx(2.0 / 2.0)
    assert mean["propose"] == pytest.approx(1.0 / 2.0)
    fig = plots.stage_timeline(events)
    assert [t.name for t in fig.data] == ["rollout", "propose"]
    assert "simulated" not in fig.layout.title.text  # nothing said it was simulated


def test_a_sync_run_keeps_one_stage_busy_at_a_time_and_async_overlaps_them(
    runs: dict[str, RunResult],
) -> None:
    def most_busy_at_once(result: RunResult) -> int:
        occ = plots.occupancy_frame(result)
        busy: dict[str, int] = {}
        peak = 0
        for stage, n in zip(occ["stage"], occ["busy"], strict=True):
            busy[stage] = n
            peak = max(peak, sum(1 for v in busy.values() if v > 0))
        return peak

    assert most_busy_at_once(runs["sync"]) == 1
    assert most_busy_at_once(runs["async"]) >= 3
    fig = plots.stage_timeline(runs)
    assert [a.text for a in fig.layout.annotations] == ["sync", "async"]
    assert {t.yaxis for t in fig.data} == {"y", "y2"}


def test_stacked_stages_share_their_x_values_and_keep_the_busy_time(
    runs: dict[str, RunResult],
) -> None:
    # plotly stacks point by point: traces on different x values would stack as zeros.
    mean = plots.mean_busy(runs).set_index(["run", "stage"])["mean_busy"]
    for bins in (240, None):
        fig = plots.stage_timeline(runs, bins=bins)
        for axis, label in (("y", "sync"), ("y2", "async")):
            traces = [t for t in fig.data if t.yaxis == axis]
            assert len({tuple(t.x) for t in traces}) == 1
            for t in traces:
                xs, ys = list(t.x), list(t.y)
                area = sum(y * (x1 - x0) for y, x0, x1 in zip(ys, xs, xs[1:], strict=False))
                # The area under each stage's curve is its busy time, binned or not.
                assert area / xs[-1] == pytest.approx(mean[(label, t.name)], rel=1e-6)
    with pytest.raises(ValueError, match="bins must be >= 1"):
        plots.stage_timeline(runs, bins=0)


def test_rates_match_the_run_counters_and_async_outruns_sync(
    runs: dict[str, RunResult],
) -> None:
    table = plots.rates(runs).set_index("run")
    for label, result in runs.items():
        s = result.stats
        row = table.loc[label]
        assert (row["proposals"], row["accepted"], row["validations"]) == (
            s.proposals,
            s.accepted,
            s.validations,
        )
        assert row["proposals/min"] == pytest.approx(s.proposals / (s.sim_seconds / 60.0))
    assert table.loc["async", "proposals/min"] > 2 * table.loc["sync", "proposals/min"]
    fig = plots.throughput(runs)
    assert [b.name for b in fig.data] == ["sync", "async"]
    assert list(fig.data[1].y) == pytest.approx(
        [table.loc["async", c] for c in ("proposals/min", "accepted/min", "validations/min")]
    )


def test_a_live_run_handle_plots_too() -> None:
    # On the real clock: 1200x left 0.3 real seconds, which a loaded machine spent on
    # the seed's validation alone (no proposal, nothing to plot). 150x leaves 2.4 s.
    run = flashevolve_nb.start(**SMALL, time_scale=150)
    run.wait(timeout=120)
    table = plots.rates({"live": run})
    assert table.loc[0, "proposals"] == run.result().stats.proposals > 0


def test_what_cannot_be_plotted_is_named() -> None:
    with pytest.raises(TypeError, match="pass a RunResult, a Run or an events DataFrame"):
        plots.score_over_time(42)
    with pytest.raises(ValueError, match="the mapping is empty"):
        plots.throughput({})
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['kind'\]"):
        plots.rates(pd.DataFrame({"t": [0.0]}))
