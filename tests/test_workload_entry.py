"""Picking a workload where a person starts a run: ``start(workload=...)`` and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from flashevolve_nb.runtime import Run, start


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    made: list[Run] = []
    yield made
    for run in made:
        run.stop("cancel")
        run.wait(timeout=60)


def test_start_runs_ace_and_its_dashboard_shows_playbooks(runs: list[Run]) -> None:
    run = start(workload="ace", minutes=15, time_scale=600, seed=0, n_val=20, n_test=10)
    runs.append(run)
    dash = run.dashboard(autostart=False)
    result = run.wait(timeout=120)
    dash.refresh()
    model = dash.archive
    assert model["meta"]["stages"] == ["generate", "reflect", "curate", "evaluate"]
    assert result.stats.accepted >= 1 and result.best_score > result.stats.seed_score
    best = model["artifacts"][model["snapshot"]["pool"]["best_id"]]
    assert "## " in best["components"]["playbook"]  # a sectioned playbook, shown as text
    dash.close()


def test_an_unknown_workload_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown workload 'gepa2'; workloads with a demo: gepa"):
        start(workload="gepa2")


def test_the_demo_command_runs_ace_with_its_rebase_policy(tmp_path: Path) -> None:
    out = tmp_path / "ace.json"
    r = subprocess.run(
        [sys.executable, "-m", "flashevolve_nb", "demo", "--workload", "ace", "--clock",
         "virtual", "--minutes", "15", "--staleness", "rebase", "--no-progress",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ACE on the simulated 'rulebook' task")
    assert "held-out" not in r.stdout.split("What the terms mean")[0]  # none scored: no row
    assert "best playbook (async" in r.stdout
    (figures,) = json.loads(out.read_text())
    assert figures["stale_seen"] > 0
    assert figures["decisions"].get("patch", 0) > 0  # rebased deltas


def test_the_demo_command_runs_meta_harness_and_says_where_the_candidates_are(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # its history folder lands in tmp_path
    r = subprocess.run(
        [sys.executable, "-m", "flashevolve_nb", "demo", "--workload", "meta-harness",
         "--clock", "virtual", "--minutes", "10", "--no-progress"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Meta-Harness on the simulated 'tickets' task")
    assert "best harness (async" in r.stdout and "def build_context" in r.stdout
    where = r.stdout.split("every candidate's code, scores and traces (async): ", 1)[1]
    where = where.splitlines()[0].strip()
    folders = sorted(Path(where).iterdir())
    assert Path(where).parent == tmp_path and len(folders) > 3
    assert {p.name for p in folders[0].iterdir()} >= {"harness.py", "scores.json"}


def test_start_runs_meta_harness(runs: list[Run], monkeypatch: pytest.MonkeyPatch,
                                 tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    run = start(workload="meta-harness", minutes=10, time_scale=600, seed=0)
    runs.append(run)
    result = run.wait(timeout=120)
    assert result.stats.accepted >= 1 and result.best_score > result.stats.seed_score
    assert all("context_tokens" in e.objectives for e in result.pool.entries)
    dash = run.dashboard(autostart=False)
    rows = dash.archive["pool"]
    assert rows and all(r["objectives"]["context_tokens"] > 0 for r in rows)
    best = dash.archive["artifacts"][dash.archive["snapshot"]["pool"]["best_id"]]
    assert "def build_context" in next(iter(best["components"].values()))  # code, as text
    dash.close()


def test_the_run_command_records_an_ace_run_and_resumes_it_as_ace(tmp_path: Path) -> None:
    from flashevolve_nb import open_run

    cfg = tmp_path / "ace.toml"
    cfg.write_text('workload = "ace"\nminutes = 6\nclock = "virtual"\n')
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "flashevolve_nb", "run", "--run-dir", str(run_dir), "--quiet"]
    first = subprocess.run([*cmd, "--config", str(cfg)], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert first.returncode == 0, first.stderr
    again = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "session 2" in again.stdout
    with open_run(run_dir) as stored:
        assert stored.config["run"]["workload"] == "ace" and stored.meta.workload.startswith("ace")
        assert "playbook" in stored.result().best
    bad = tmp_path / "bad.toml"
    bad.write_text('workload = "acme"\n')
    r = subprocess.run([*cmd[:-1], "--config", str(bad)], capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode == 2 and "workload must be 'gepa' or 'ace' or 'meta-harness'" in r.stderr
