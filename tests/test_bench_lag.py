"""The bench records each run's clock lag and marks runs whose clock fell behind.

The verdicts are checked on given figures (no timing); the server's part only
on the presence and growth of its counts, never on how late it was.
"""

from __future__ import annotations

import math

import httpx
import pytest
from test_bench import _result, _run, _window

from flashevolve_nb.bench.metrics import degraded, figures, server_lag
from flashevolve_nb.bench.report import clock_behind, goals, markdown, render_html
from flashevolve_nb.bench.runner import BenchResult, RunRecord
from flashevolve_nb.clock_lag import BEHIND_SIM_SECONDS
from flashevolve_nb.sim.http_server import SimHTTPServer


def _counts(**at: int) -> list[int]:
    out = [0] * 58
    for i, n in at.items():
        out[int(i.removeprefix("b"))] = n
    return out


def test_server_lag_is_the_windowed_mean_in_simulated_seconds() -> None:
    start = {"lag_counts": _counts(b8=50), "lag_sum": 0.005, "time_scale": 100.0}
    end = {"lag_counts": _counts(b8=50, b16=100), "lag_sum": 0.105, "time_scale": 100.0}
    # only the window's wake-ups count: 100 of them, 0.1 real s late in all: 1 ms each
    assert server_lag(start, end) == pytest.approx(0.1)
    assert math.isnan(server_lag({}, end))  # a server that does not measure it: not guessed
    assert math.isnan(server_lag(start, start))  # no wake-up in the window


def test_a_run_behind_is_degraded_and_listed_next_to_the_cpu_bound_ones() -> None:
    late = figures(_run(client_lag=3.0), _window(), server_lag=0.1)
    fine = figures(_run(client_lag=0.01), _window(), server_lag=0.1)
    assert late["client_lag"] == 3.0 and fine["server_lag"] == 0.1
    assert degraded(fine) == []
    [why] = degraded(late)
    assert "client's clock fell behind by 3.00 simulated s" in why
    assert degraded(figures(_run(), _window(), server_lag=BEHIND_SIM_SECONDS * 2))
    base = _result()
    recs = (
        RunRecord("vllm", 60.0, 0, "time", "gepa", fine, (), ()),
        RunRecord("vllm", 60.0, 0, "time", "flash", late, (), ()),
    )
    result = BenchResult({**base.meta, "systems": ["gepa", "flash"], "seeds": [0]}, recs)
    [line] = clock_behind(result)
    assert "flash" in line and "seed 0" in line and "degraded" in line
    md = markdown(result)
    assert "## Runs whose clock fell behind" in md
    assert all(g["degraded"] == ["flash seed 0"] for g in goals(result))
    assert "rests on degraded runs (clock behind or CPU-bound): flash seed 0" in md
    assert "Runs whose clock fell behind" in render_html(result)
    assert clock_behind(_result()) == []
    assert "rests on degraded" not in markdown(_result())


def test_the_simulator_server_reports_its_loop_lag_when_it_samples() -> None:
    with SimHTTPServer(profile="vllm", seed=0, time_scale=2000.0, sample_every=0.005) as server:
        http = httpx.Client(base_url=server.base_url.removesuffix("/v1"))
        first = http.get("/sim/stats").json()
        for _ in range(200):  # until the monitor has woken a few times more
            later = http.get("/sim/stats").json()
            if sum(later["lag_counts"]) > sum(first["lag_counts"]) + 2:
                break
        http.close()
    assert sum(later["lag_counts"]) > sum(first["lag_counts"])
    assert not math.isnan(server_lag(first, later))
