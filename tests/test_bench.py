"""``flashevolve bench``'s machinery: the real gepa over HTTP, our systems over HTTP,
server-side load figures, the reports. Small runs on a fast loopback server; nothing
here asserts a speed or a ratio (those are printed by the benchmark, for people)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import openai
import pytest

from flashevolve_nb.bench.figures import RunBudget, RunFigures
from flashevolve_nb.bench.gepa_http import TaskSizes, run_gepa
from flashevolve_nb.bench.metrics import figures, paired_ratios, spread
from flashevolve_nb.bench.ours import run_ours, wasted_tokens
from flashevolve_nb.bench.report import cpu_bound, markdown, render_html, to_json, write_reports
from flashevolve_nb.bench.runner import BenchConfig, BenchResult, RunRecord
from flashevolve_nb.bench.sampling import ServerWindow, window
from flashevolve_nb.bench.systems import check_systems
from flashevolve_nb.bench.turbo import TurboUnavailable, run_turbo
from flashevolve_nb.engine.events import Admitted, LLMCallFinished
from flashevolve_nb.sim.http_server import SimHTTPServer

ROOT = Path(__file__).resolve().parents[1]
SMALL = TaskSizes(n_train=12, n_val=8, n_test=6)


def _extra(kind: str) -> dict[str, Any]:
    return {"max_tokens": 900 if kind == "task" else 1500, "extra_body": {"ignore_eos": True}}


def test_gepa_runs_over_http_and_its_counts_match_the_server() -> None:
    with SimHTTPServer(profile="vllm", seed=3, time_scale=3000.0, record=5000) as server:
        f = run_gepa(
            server.base_url, server.model_name, seed=3, budget=RunBudget(metric_calls=80),
            time_scale=3000.0, sizes=SMALL, held_out=False, request_extra=_extra,
        )  # fmt: skip
        counters = server.counters()
        recorded = list(server.recorded)
    assert f.system == "gepa"
    assert f.metric_calls >= 80  # gepa stops at the first check past the budget
    assert f.proposals >= 1
    # Every request gepa made reached the server, and nothing else did.
    assert counters.requests == counters.answered == f.llm_requests
    # One task request per metric call, one reflection request per proposal (the simulated
    # reflection model always answers in a parsable form for a single component).
    assert f.llm_requests == f.metric_calls + f.proposals
    # gepa validates the seed and every candidate it accepts, once.
    assert f.val_sweeps == f.accepted + 1
    assert f.completion_tokens > 0 and f.best_val >= f.seed_val
    # The request hook reached every request, per kind.
    assert all(r.body.get("ignore_eos") is True for r in recorded)
    assert {r.body.get("max_tokens") for r in recorded} == {900, 1500}


def test_gepa_reflection_prompt_is_restated_for_the_simulator_only_when_asked() -> None:
    with SimHTTPServer(profile="vllm", seed=1, time_scale=3000.0, record=5000) as server:
        run_gepa(server.base_url, server.model_name, seed=1, budget=RunBudget(metric_calls=40),
                 time_scale=3000.0, sizes=SMALL, held_out=False,
                 restate_reflection=False)  # fmt: skip
        raw = [r.body for r in server.recorded]
    reflections = [b for b in raw if len(b["messages"]) == 1]
    assert reflections, "gepa sent no reflection request"
    # gepa's own prompt went out untouched
    assert all("I provided an assistant with the following instructions"
               in b["messages"][0]["content"] for b in reflections)  # fmt: skip


@pytest.mark.parametrize("system", ["sync", "flash"])
def test_our_systems_run_over_http_and_count_what_the_server_saw(system: str) -> None:
    marks: list[str] = []
    with SimHTTPServer(profile="api", seed=2, time_scale=3000.0, record=5000) as server:
        f = run_ours(
            server.base_url, server.model_name, system=system, seed=2,
            budget=RunBudget(metric_calls=60), time_scale=3000.0, sizes=SMALL,
            held_out=True, request_extra=_extra,
            before_run=lambda: marks.append(f"before {server.counters().requests}"),
            after_run=lambda: marks.append(f"after {server.counters().requests}"),
        )  # fmt: skip
        total = server.counters().requests
        recorded = list(server.recorded)
    assert f.system == system and f.metric_calls >= 60
    assert marks[0] == "before 0"
    during = int(marks[1].split()[1])
    # What the run's events count is what reached the server during the run...
    assert during == f.llm_requests
    # ...and the held-out evaluation came after it: seed and best on the test split.
    assert total - during == 2 * SMALL.n_test
    assert f.best_test is not None and f.seed_test is not None
    assert all(r.body.get("ignore_eos") is True for r in recorded)
    assert 0 <= f.wasted_tokens <= f.completion_tokens


def test_wasted_tokens_are_those_of_steps_that_admitted_nothing() -> None:
    def call(step: int, tokens: int) -> LLMCallFinished:
        return LLMCallFinished(t=0.0, call_id=step, role="task", stage="x", step=step, ok=True,
                               prompt_tokens=1, completion_tokens=tokens, latency=0.1,
                               finish_reason="stop")  # fmt: skip

    admitted = Admitted(t=1.0, step=2, artifact_id="a", parents=(), origin="mutation",
                        version=1, score=0.5, is_best=True)  # fmt: skip
    assert wasted_tokens([call(1, 10), call(2, 100), call(3, 7), admitted]) == 17


def test_sim_stats_and_samples_routes_measure_the_load() -> None:
    with SimHTTPServer(profile="vllm", seed=0, time_scale=2000.0, sample_every=0.005) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x")
        import httpx

        http = httpx.Client(base_url=server.base_url.removesuffix("/v1"))
        start = http.get("/sim/stats").json()
        http.get("/sim/samples")
        tokens = 0
        for i in range(4):
            reply = client.chat.completions.create(
                model=server.model_name,
                messages=[{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": f"Tell me about tea, {i}"}],
            )  # fmt: skip
            assert reply.usage is not None
            tokens += reply.usage.completion_tokens
        end = http.get("/sim/stats").json()
        samples = http.get("/sim/samples").json()
        again = http.get("/sim/samples").json()
        client.close()
        http.close()
    w = window(start, end, samples)
    assert w.tokens_generated == tokens
    assert w.requests_served == 4
    assert w.peak_in_flight == 1  # one request at a time
    assert 0 < w.mean_running <= 1 and w.max_running == 128
    assert samples and all(s["t"] >= start["t"] for s in samples)
    assert len(again) < len(samples)  # taken samples are forgotten


def _run(**kw: Any) -> RunFigures:
    base: dict[str, Any] = dict(
        system="x", seed=0, time_scale=100.0, wall_seconds=1.2, sim_seconds=120.0,
        proposals=4, accepted=2, val_sweeps=3, metric_calls=100, llm_requests=104,
        prompt_tokens=1000, completion_tokens=9000, wasted_tokens=500, seed_val=0.2,
        best_val=0.5, best_test=0.4, seed_test=0.2, curve=((30.0, 0.2), (90.0, 0.5)),
    )  # fmt: skip
    base.update(kw)
    return RunFigures(**base)


def _window(**kw: Any) -> ServerWindow:
    base: dict[str, Any] = dict(
        sim_seconds=120.0, tokens_generated=10_000, requests_served=104, mean_running=8.0,
        mean_in_flight=9.0, peak_in_flight=12, max_running=128,
        capacity_tokens_per_s=4000.0, series=((0.0, 1, 1),),
    )  # fmt: skip
    base.update(kw)
    return ServerWindow(**base)


def test_figures_follow_their_definitions() -> None:
    f = figures(_run(), _window())
    assert f["proposals_per_min"] == pytest.approx(2.0)
    assert f["accepted_per_min"] == pytest.approx(1.0)
    assert f["tokens_per_proposal"] == pytest.approx(2500.0)
    assert f["tokens_per_accepted"] == pytest.approx(5000.0)
    # server decoded 1000 tokens no answer reported (cancelled): wasted too
    assert f["wasted_tokens"] == pytest.approx(1500.0)
    assert f["limit_proposals_per_min"] == pytest.approx(4000.0 * 60 / 2500.0)
    assert f["of_limit"] == pytest.approx(2.0 / 96.0)
    assert f["running_util"] == pytest.approx(8.0 / 128)
    assert f["token_util"] == pytest.approx((10_000 / 120.0) / 4000.0)
    none = figures(_run(proposals=0, accepted=0), _window())
    assert math.isnan(none["tokens_per_proposal"]) and math.isnan(none["of_limit"])
    assert _run().best_at(60.0) == 0.2 and _run().best_at(100.0) == 0.5


def test_spread_and_paired_ratios() -> None:
    s = spread([3.0, 1.0, math.nan, 2.0])
    assert (s.median, s.low, s.high, s.n) == (2.0, 1.0, 3.0, 3)
    r = paired_ratios({0: {"k": 4.0}, 1: {"k": 9.0}}, {0: {"k": 2.0}, 1: {"k": 3.0}}, "k")
    assert (r.median, r.low, r.high) == (2.5, 2.0, 3.0)


def test_budget_and_system_names_are_checked() -> None:
    with pytest.raises(ValueError, match="needs a limit"):
        RunBudget()
    assert RunBudget(sim_minutes=2, wall_seconds=10).real_seconds(60.0) == 2.0
    with pytest.raises(ValueError, match="valid:"):
        check_systems(["gepa", "nope"])
    with pytest.raises(ValueError, match="must include 'gepa'"):
        check_systems(["flash"])
    assert check_systems(["flash", "gepa"]) == ("gepa", "flash")
    with pytest.raises(TurboUnavailable, match="openai"):
        run_turbo("http://127.0.0.1:1/v1", "m")


def _result() -> BenchResult:
    evil = "<script>alert(1)</script>"
    recs = []
    for seed in (0, 1):
        for system, scale in (("gepa", 1.0), ("flash", 5.0)):
            figs = figures(_run(proposals=int(4 * scale)), _window())
            recs.append(RunRecord("vllm", 60.0, seed, "time", system, figs,
                                  ((10.0, 0.3),), ((0.0, 3, 2),), notes=(evil,)))  # fmt: skip
    recs.append(RunRecord("vllm", 60.0, 0, "time", "turbo-gepa", {}, (), (), error=evil))
    meta = {
        "command": f"flashevolve bench {evil}", "profiles": ["vllm"],
        "systems": ["gepa", "flash", "turbo-gepa"], "seeds": [0, 1], "minutes": 2.0,
        "time_scales": [60.0], "equal_calls": None, "python": "3", "platform": "p",
        "cpus": 2, "versions": {"flashevolve_nb": "0", "gepa": "0.1.4", "openai": "3",
                                "turbo-gepa": "not installed"},
        "loadavg_start": [0.5, 0, 0], "loadavg_end": [0.7, 0, 0], "wall_seconds": 3.0,
    }  # fmt: skip
    return BenchResult(meta, tuple(recs))


def test_reports_are_written_escaped_and_follow_the_schema(tmp_path: Path) -> None:
    result = _result()
    paths = write_reports(result, tmp_path / "out")
    assert [p.name for p in paths] == ["bench.json", "bench.md", "bench.html"]
    data = json.loads(paths[0].read_text())  # strict: no NaN
    assert data["schema"] == "flashevolve-bench/1" and data["simulated"] is True
    assert {"meta", "runs", "summary", "goals"} <= set(data)
    flash = next(r for r in data["summary"] if r["system"] == "flash")
    assert flash["ratio_to_gepa"]["proposals_per_min"]["median"] == pytest.approx(5.0)
    assert flash["figures"]["proposals_per_min"]["n"] == 2
    turbo = next(r for r in data["summary"] if r["system"] == "turbo-gepa")
    assert "script" in turbo["error"]
    page = render_html(result)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    md = markdown(result)
    assert "| flash | 10.0 | 5.00x |" in md
    assert "not run:" in md
    assert to_json(result)["goals"]


def test_cli_bench_runs_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}  # fmt: skip
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "flashevolve_nb", "bench", "--quick", "--profiles", "vllm",
         "--systems", "gepa,sync,turbo-gepa", "--minutes", "3", "--time-scales", "1200",
         "--n-val", "8", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "vllm time   1200x seed 0 gepa" in proc.stdout
    assert "turbo-gepa" in proc.stdout and "skipped:" in proc.stdout
    data = json.loads((out / "bench.json").read_text())
    systems = {r["system"] for r in data["runs"] if not r["error"]}
    assert systems == {"gepa", "sync"}
    assert data["meta"]["command"].startswith("python3 -m flashevolve_nb bench --profiles vllm")
    assert (out / "bench.html").read_text().count("<table>") == 1


def test_cli_bench_runs_one_equal_calls_table_per_budget(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}  # fmt: skip
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "flashevolve_nb", "bench", "--profiles", "vllm",
         "--systems", "gepa,sync", "--seeds", "0", "--equal-calls", "30,50",
         "--equal-calls-scale", "1200", "--equal-calls-only", "--scale-systems", "",
         "--n-val", "8", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "vllm    30 calls  1200x seed 0 gepa" in proc.stdout
    assert "vllm    50 calls  1200x seed 0 sync" in proc.stdout
    data = json.loads((out / "bench.json").read_text())
    assert sorted((r["call_budget"], r["system"]) for r in data["runs"]) == [
        (30, "gepa"), (30, "sync"), (50, "gepa"), (50, "sync"),
    ]  # fmt: skip
    for r in data["runs"]:
        assert r["call_budget"] <= r["figures"]["metric_calls"] <= r["call_budget"] + 8 + 6
    assert "--equal-calls 30,50" in data["meta"]["command"]
    md = (out / "bench.md").read_text()
    assert md.count("equal metric calls (30)") == 1 and md.count("equal metric calls (50)") == 1
    assert "vllm @ 50 metric calls: sync median best val within gepa's seed range" in md
    bad = subprocess.run(
        [sys.executable, "-m", "flashevolve_nb", "bench", "--equal-calls", "4k"],
        capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode != 0 and "comma-separated ints" in bad.stderr


def test_bench_config_checks_its_passes() -> None:
    with pytest.raises(ValueError, match="not among the systems"):
        BenchConfig(systems=("gepa", "sync"), scale_systems=("gepa", "flash"))
    with pytest.raises(ValueError, match="nothing to run"):
        BenchConfig(time_pass=False)
    c = BenchConfig(systems=("flash", "gepa"), scale_systems=("flash", "gepa"))
    assert c.scale_systems == ("gepa", "flash")  # gepa first: every ratio is to it
    with pytest.raises(ValueError, match="must include 'gepa'"):
        BenchConfig(scale_systems=("flash",))
    assert BenchConfig(equal_calls=(400, 1000, 400)).equal_calls == (400, 1000)
    for bad in ((), (0,), (400, -1)):
        with pytest.raises(ValueError, match="equal_calls must be ints >= 1"):
            BenchConfig(equal_calls=bad)


def test_each_call_budget_gets_its_table_and_its_goals() -> None:
    recs = []
    for calls, ours in ((400, 0.45), (1000, 0.55)):
        for seed, gepa_val in ((0, 0.40), (1, 0.50), (2, 0.60)):
            for system, val in (("gepa", gepa_val), ("sync", gepa_val + 0.01),
                                ("flash", ours + gepa_val - 0.5)):  # fmt: skip
                figs = figures(_run(best_val=val), _window())
                recs.append(RunRecord("vllm", 60.0, seed, "calls", system, figs, (), (),
                                      call_budget=calls))  # fmt: skip
    base = _result()
    meta = {**base.meta, "systems": ["gepa", "sync", "flash"], "seeds": [0, 1, 2],
            "equal_calls": [400, 1000]}  # fmt: skip
    md = markdown(BenchResult(meta, tuple(recs)))
    assert "## vllm profile, equal metric calls (400), time scale 60x" in md
    assert "## vllm profile, equal metric calls (1000), time scale 60x" in md
    # gepa's median is 0.5 on both; flash's 0.45 at 400 calls, 0.55 at 1,000
    assert "- vllm @ 400 metric calls: flash median best val >= gepa's median: 0.450 (NOT met" in md
    assert "- vllm @ 1000 metric calls: flash median best val >= gepa's median: 0.550 (met" in md
    for calls in (400, 1000):
        assert (f"- vllm @ {calls} metric calls: sync median best val within gepa's seed range "
                "(0.400-0.600): 0.510 (met") in md  # fmt: skip
    # a sync past gepa's best seed is not "within" its range either
    high = [replace(r, figures={**r.figures, "best_val": 0.9}) if r.system == "sync" else r
            for r in recs]  # fmt: skip
    assert "0.900 (NOT met" in markdown(BenchResult(meta, tuple(high)))


def test_cpu_bound_runs_are_flagged_in_the_report() -> None:
    busy = figures(_run(), _window(), client_cpu=0.97)
    idle = figures(_run(), _window(), client_cpu=0.2)
    assert math.isnan(figures(_run(), _window())["client_cpu"])  # not measured: not guessed
    base = _result()
    recs = (
        RunRecord("vllm", 60.0, 0, "time", "gepa", idle, (), ()),
        RunRecord("vllm", 60.0, 0, "time", "flash", busy, (), ()),
    )
    result = BenchResult({**base.meta, "systems": ["gepa", "flash"], "seeds": [0]}, recs)
    [line] = cpu_bound(result)
    assert "flash" in line and "client process was busy 97%" in line
    assert "## CPU-bound runs" in markdown(result)
    assert cpu_bound(_result()) == []


def test_a_second_time_scale_is_held_to_the_first_scales_ratio_and_cpu() -> None:
    # flash at 5x gepa's proposals at 60x; at 240x 4.5x (90%: within 20%) on one profile,
    # 2x (40%: not) on the other; the client 50% busy at 60x, 95% at 240x
    recs = []
    for profile, slow in (("vllm", 4.5), ("api", 2.0)):
        for scale, ratio, cpu in ((60.0, 5.0, 0.5), (240.0, slow, 0.95)):
            for system, n in (("gepa", 4), ("flash", int(4 * ratio))):
                figs = figures(_run(proposals=n), _window(), client_cpu=cpu)
                recs.append(RunRecord(profile, scale, 0, "time", system, figs, (), ()))
    base = _result()
    meta = {**base.meta, "profiles": ["vllm", "api"], "systems": ["gepa", "flash"],
            "seeds": [0], "time_scales": [60.0, 240.0]}  # fmt: skip
    md = markdown(BenchResult(meta, tuple(recs)))
    assert (
        "- vllm @ 240x: flash/gepa proposals/min within 20% of 60x's (share of it): 90% (met" in md
    )
    assert (
        "- api @ 240x: flash/gepa proposals/min within 20% of 60x's (share of it): 40% (NOT met"
        in md
    )
    assert "- vllm @ 60x: flash client CPU < 70%: 50% (met)" in md
    assert "- api @ 240x: flash client CPU < 70%: 95% (NOT met" in md
    assert "within 20% of 60x's" not in md.split("vllm @ 240x")[0]  # none at the first scale
