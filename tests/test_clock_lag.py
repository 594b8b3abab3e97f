"""Saying so when the real clock falls behind the simulated one (``flashevolve_nb.clock_lag``).

The verdict "behind" is checked on a run at an absurd time scale (100000x: any
wake-up lag at all is minutes of simulated time), in the CLI's output, the
run's stats, its stored events and the dashboard's snapshot. The verdict "kept
up" is never checked on a real clock (a loaded CI machine could make it false):
it is checked on the virtual clock, and on a monitor fed synthetic wake-ups.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from flashevolve_nb.cli.progress import ClockWarning
from flashevolve_nb.clock import virtual_event_loop
from flashevolve_nb.clock_lag import (
    BEHIND_SIM_SECONDS,
    LOOP_CPU_BOUND,
    MIN_WAKES,
    ClockBehind,
    LagMonitor,
    LagReport,
    lag_p95,
)
from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.runtime import start
from flashevolve_nb.runtime.describe import describe
from flashevolve_nb.store import open_run
from flashevolve_nb.ui.model import snapshot_json
from flashevolve_nb.ui.source import RecordedSource

ABSURD = 100_000.0
"""Simulated seconds per real second no machine keeps up with: 1 ms late is 100 s."""


def _fed(scale: float, lags: list[float]) -> LagReport:
    monitor = LagMonitor(scale)
    for late in lags:
        monitor.record(late)
    return monitor.report()


def test_the_threshold_is_on_the_mean_lag_in_simulated_seconds() -> None:
    # 2 ms late at every wake-up: 0.24 simulated s at 120x (kept up), 2 s at 1000x (behind)
    lags = [0.002] * 100
    at_120 = _fed(120, lags)
    assert at_120.sim_lag_mean <= BEHIND_SIM_SECONDS and not at_120.behind
    at_1000 = _fed(1000, lags)
    assert at_1000.sim_lag_mean > BEHIND_SIM_SECONDS and at_1000.behind
    # a burst (one long callback) shows in the tail; the verdict follows the mean
    burst = _fed(120, [0.0005] * 94 + [0.03] * 6)
    assert burst.sim_lag_p95 > BEHIND_SIM_SECONDS and not burst.behind
    assert burst.real_lag_max == 0.03
    assert _fed(120, [0.0005] * 80 + [0.03] * 20).behind


def test_p95_is_a_bin_edge_never_above_the_largest_lag() -> None:
    report = _fed(1, [0.003] * 10)
    assert report.real_lag_p95 == 0.003  # capped at the max, not the bin's upper edge
    counts = [0] * 60
    counts[8] = 100
    assert 1e-4 <= lag_p95(counts) < 1.4e-4
    assert lag_p95([0] * 60) == 0.0


def test_a_cpu_bound_loop_is_behind_even_with_small_lags() -> None:
    report = LagReport(120, MIN_WAKES, 1e-4, 1e-4, 1e-4, LOOP_CPU_BOUND + 0.01, 10.0)
    assert report.behind and "busy" in report.describe()
    assert not LagReport(120, MIN_WAKES, 1e-4, 1e-4, 1e-4, 0.5, 10.0).behind
    assert not LagReport(120, MIN_WAKES, 1e-4, 1e-4, 1e-4, math.nan, 10.0).behind


def test_the_warning_says_what_happened_by_how_much_and_what_to_do() -> None:
    text = _fed(ABSURD, [0.002] * 30).warning()
    assert "fell behind the simulated one" in text
    assert "3.33 simulated min" in text  # 2 ms x 100000
    assert "degraded" in text
    assert "--time-scale" in text and "--clock virtual" in text
    assert "run on the virtual clock" in _fed(ABSURD, [0.002]).warning("run on the virtual clock")


def test_far_behind_needs_enough_wake_ups() -> None:
    assert not _fed(ABSURD, [0.01] * (MIN_WAKES - 1)).far_behind
    assert _fed(ABSURD, [0.01] * MIN_WAKES).far_behind
    assert not _fed(120, [0.001] * MIN_WAKES).far_behind
    assert _fed(1000, [0.003] * MIN_WAKES).far_behind  # 3 simulated s on average
    assert not _fed(1000, [0.001] * MIN_WAKES).far_behind  # 1 simulated s: behind, not far


def test_the_virtual_clock_reports_no_lag() -> None:
    loop = virtual_event_loop()
    try:
        demo = build_demo(DemoConfig(minutes=2, time_scale=ABSURD))
        result = loop.run_until_complete(demo.run())
        report = demo.pipeline.lag.report()
    finally:
        loop.close()
    assert report.virtual and not report.behind and report.wakes == 0
    assert result.stats.clock_behind is None
    assert not [e for e in result.events if isinstance(e, ClockBehind)]


def test_a_monitor_on_a_virtual_loop_measures_nothing() -> None:
    async def main() -> LagReport:
        monitor = LagMonitor(ABSURD)
        monitor.start()
        await asyncio.sleep(60)
        return await monitor.aclose()

    loop = virtual_event_loop()
    try:
        report = loop.run_until_complete(main())
    finally:
        loop.close()
    assert report.virtual and report.wakes == 0 and not report.behind


def test_a_run_at_an_absurd_scale_is_behind_in_its_stats_events_and_store(
    tmp_path: Path,
) -> None:
    run = start(DemoConfig(minutes=5, time_scale=ABSURD), run_dir=tmp_path / "run")
    result = run.wait(120)
    lag = result.stats.clock_behind
    assert lag is not None and lag.behind and lag.time_scale == ABSURD
    final = [e for e in result.events if isinstance(e, ClockBehind) and e.final]
    assert len(final) == 1
    assert "fell behind" in describe(final[0])[0] and describe(final[0])[1] == "warn"
    shown = snapshot_json(run.snapshot())["clock_behind"]
    assert shown is not None and shown["time_scale"] == ABSURD
    assert "degraded" in shown["message"] and "virtual clock" in shown["message"]
    with open_run(tmp_path / "run") as stored:
        kept = stored.stats.clock_behind
        reopened = RecordedSource.from_stored(stored).snapshot_json()["clock_behind"]
    assert kept is not None and kept.behind  # the stored run keeps the fact
    assert reopened is not None and "fell behind" in reopened["message"]


def test_the_dashboard_shows_the_live_measure_before_the_verdict(tmp_path: Path) -> None:
    run = start(DemoConfig(minutes=2, time_scale=ABSURD))
    run.wait(120)
    snap = run.snapshot()
    no_verdict = replace(snap.pipeline, stats=replace(snap.stats, clock_behind=None))
    behind = _fed(ABSURD, [0.002] * MIN_WAKES)
    live = replace(snap, pipeline=no_verdict, clock=behind)
    shown = snapshot_json(live)["clock_behind"]
    assert shown is not None and shown["sim_lag_mean"] == pytest.approx(200.0)
    too_few = replace(live, clock=_fed(ABSURD, [0.002] * (MIN_WAKES - 1)))
    assert snapshot_json(too_few)["clock_behind"] is None  # a few wake-ups mean nothing yet
    kept_up = replace(live, clock=_fed(120, [0.0001] * MIN_WAKES))
    assert snapshot_json(kept_up)["clock_behind"] is None


def test_the_demo_at_an_absurd_scale_warns_at_the_end(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "flashevolve_nb", "demo", "--time-scale", f"{ABSURD:g}",
         "--minutes", "5", "--no-progress", "--json", "-"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    figures = json.loads(r.stdout)
    assert figures[0]["clock_behind"] is True
    assert figures[0]["clock_lag_sim_mean"] > BEHIND_SIM_SECONDS
    last = r.stderr.rstrip().splitlines()[-1]
    assert last.startswith("async: WARNING: the real clock fell behind the simulated one"), last
    assert "degraded" in last and "--time-scale" in last


def test_the_demo_on_the_virtual_clock_does_not_warn(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "flashevolve_nb", "demo", "--clock", "virtual", "--time-scale",
         f"{ABSURD:g}", "--minutes", "2", "--no-progress", "--json", "-"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["clock_behind"] is False
    assert "fell behind" not in r.stderr


def test_the_mid_run_warning_is_printed_once_per_event_and_not_for_the_final_one() -> None:
    out = io.StringIO()
    warn = ClockWarning("async", out)
    report = _fed(ABSURD, [0.01] * MIN_WAKES)
    warn(ClockBehind.of(report, t=10.0, final=False))
    warn(ClockBehind.of(report, t=20.0, final=True))  # the summary says that one
    lines = [ln for ln in out.getvalue().splitlines() if ln]
    assert len(lines) == 1
    assert lines[0].startswith("async: WARNING: the real clock fell behind")
    assert lines[0].endswith("(mid-run)")


def test_the_monitor_calls_back_once_when_far_behind() -> None:
    seen: list[LagReport] = []

    async def main() -> None:
        monitor = LagMonitor(ABSURD, interval=0.001, on_far_behind=seen.append)
        monitor.start()
        for late in [0.01] * (MIN_WAKES + 5):
            monitor.record(late)
        # the callback comes from the watching task, after its next wake-up
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.001)
        await monitor.aclose()

    asyncio.run(main())
    assert len(seen) == 1 and seen[0].far_behind


def test_a_real_backend_at_1x_is_not_watched() -> None:
    async def main() -> LagReport:
        monitor = LagMonitor(1.0)
        monitor.start()
        assert monitor.task is None
        return await monitor.aclose()

    report = asyncio.run(main())
    assert report.wakes == 0 and not report.behind


def test_flashevolve_run_at_an_absurd_scale_warns_and_the_virtual_clock_does_not(
    tmp_path: Path,
) -> None:
    def run(settings: str, run_dir: str) -> subprocess.CompletedProcess[str]:
        config = tmp_path / f"{run_dir}.toml"
        config.write_text(settings)
        return subprocess.run(
            [sys.executable, "-m", "flashevolve_nb", "run", "--config", str(config),
             "--run-dir", str(tmp_path / run_dir), "--quiet"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip

    r = run(f"minutes = 5\ntime_scale = {ABSURD:g}\nn_val = 5\n", "absurd")
    assert r.returncode == 0, r.stderr
    last = r.stderr.rstrip().splitlines()[-1]
    assert last.startswith("WARNING: the real clock fell behind the simulated one"), last
    assert "time_scale in the run's config" in last and "'virtual'" in last
    r = run(f'minutes = 2\ntime_scale = {ABSURD:g}\nclock = "virtual"\nn_val = 5\n', "virtual")
    assert r.returncode == 0, r.stderr
    assert "fell behind" not in r.stderr + r.stdout
