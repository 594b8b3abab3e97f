"""Bad input fails fast: a config error names the field and the fix; a foreign dir is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flashevolve_nb.demo import DemoConfig
from flashevolve_nb.engine import Budget, PipelineConfig

ROOT = Path(__file__).resolve().parents[1]


CASES: list[tuple[Callable[[], object], str]] = [
    (
        lambda: PipelineConfig(depth="16"),
        r"PipelineConfig.depth must be an int \(got str '16'\); e.g. depth=16",
    ),
    (lambda: PipelineConfig(depth=True), r"PipelineConfig.depth must be an int"),
    (lambda: PipelineConfig(seed=1.5), r"PipelineConfig.seed must be an int"),
    (lambda: PipelineConfig(event_history=0), r"event_history must be >= 1 or None"),
    (
        lambda: PipelineConfig(decision_points="validate"),
        r"decision_points must be a tuple of stage names.*"
        r"e.g. decision_points=\('validate', 'admit'\)",
    ),
    (lambda: PipelineConfig(workers={"validate": 2.5}), r"workers\['validate'\] must be an int"),
    (
        lambda: PipelineConfig(workers=4),
        r"workers maps stage names to worker counts.*e.g. workers=",
    ),
    (
        lambda: PipelineConfig(budget=600),
        r"budget must be a Budget \(got int\); e.g. budget=Budget\(",
    ),
    (lambda: Budget(max_sim_seconds="10"), r"Budget.max_sim_seconds must be a number or None"),
    (lambda: Budget(max_proposals=0), r"Budget.max_proposals must be > 0 or None"),
    (
        lambda: DemoConfig(profile="h100"),
        r"DemoConfig.profile: unknown profile 'h100'; valid names: .*vllm",
    ),
    (
        lambda: DemoConfig(depth=0),
        r"DemoConfig.depth must be an int >= 1 \(got int 0\); e.g. depth=16",
    ),
    (lambda: DemoConfig(n_val="40"), r"DemoConfig.n_val must be an int"),
    (lambda: DemoConfig(time_scale=0), r"DemoConfig.time_scale must be a number > 0"),
    (lambda: DemoConfig(max_proposals=0), r"DemoConfig.max_proposals must be an int >= 1 or None"),
    (lambda: DemoConfig(breaker_failures=0), r"DemoConfig.breaker_failures must be an int >= 1"),
    (
        lambda: DemoConfig(candidate_selection="best"),
        r"DemoConfig.candidate_selection: unknown candidate selection 'best'; use 'pareto'",
    ),
    (lambda: DemoConfig(mode="parallel"), r"DemoConfig.mode must be 'async' or 'sync'"),
]


@pytest.mark.parametrize(("make", "message"), CASES)
def test_an_invalid_config_names_the_field_and_the_fix(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def flashevolve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "flashevolve_nb", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd, env=env,
    )  # fmt: skip


def test_the_run_command_refuses_bad_settings_and_foreign_dirs(tmp_path: Path) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text('minuts = 5\nclock = "virtual"\n')
    r = flashevolve("run", "--config", str(cfg), "--run-dir", "r1", cwd=tmp_path)
    assert r.returncode == 2
    assert "unknown setting 'minuts'; did you mean 'minutes'?" in r.stderr
    assert "Traceback" not in r.stderr

    cfg.write_text('minutes = 5\nclock = "virtual"\ndepth = "deep"\n')
    r = flashevolve("run", "--config", str(cfg), "--run-dir", "r1", cwd=tmp_path)
    assert r.returncode == 2 and "depth must be an int" in r.stderr and "DemoConfig" not in r.stderr

    cfg.write_text("minutes = [5\n")
    r = flashevolve("run", "--config", str(cfg), "--run-dir", "r1", cwd=tmp_path)
    assert r.returncode == 2 and "run.toml is not valid toml" in r.stderr

    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.md").write_text("mine")
    cfg.write_text('minutes = 1\nclock = "virtual"\n')
    r = flashevolve("run", "--config", str(cfg), "--run-dir", str(home), cwd=tmp_path)
    assert r.returncode == 2 and "holds no flashevolve_nb run (found notes.md)" in r.stderr
    assert sorted(p.name for p in home.iterdir()) == ["notes.md"]
    assert not (tmp_path / "r1").exists()  # nothing was created for the refused runs

    r = flashevolve("run", "--run-dir", str(tmp_path / "r2"), "--resume", cwd=tmp_path)
    assert r.returncode == 2 and "no run is stored in" in r.stderr
