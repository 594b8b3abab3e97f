"""A run killed with SIGKILL at random points, resumed each time, loses nothing it reported.

The run is ``flashevolve run`` in a subprocess, as a user starts it, on the
simulator with a fast real clock. Its output has one line per admission,
printed only once the admission is durable; the test kills the process at a
seeded random moment, checks the store against every line printed, and
resumes. The last resume runs the budget out.
"""

from __future__ import annotations

import os
import random
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from flashevolve_nb import open_run

ROOT = Path(__file__).resolve().parents[1]
MINUTES = 16
CONFIG = f"""
minutes = {MINUTES}
n_val = 16
time_scale = 300
clock = "real"
seed = 3
"""
ADMITTED = re.compile(r"^admitted v(\d+) (\S+) ")


def flashevolve_run(run_dir: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "flashevolve_nb", "run", "--run-dir", str(run_dir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


def lines_until(p: subprocess.Popen[str], admissions: int, deadline: float) -> list[str]:
    """Read output lines until ``admissions`` admission lines came (or the run ended)."""
    assert p.stdout is not None
    seen: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    while sum(bool(ADMITTED.match(s)) for s in seen) < admissions:
        assert time.monotonic() < deadline, f"no progress; output so far: {seen[-5:]}"
        if sel.select(timeout=1.0):
            line = p.stdout.readline()
            if not line:
                break
            seen.append(line)
    sel.close()
    return seen


def stored_admissions(log: pd.DataFrame) -> dict[int, str]:
    admits = log[log.change == "admit"]
    return dict(zip(admits.version, admits.artifact_id, strict=True))


def admissions(lines: list[str]) -> dict[int, str]:
    found: dict[int, str] = {}
    for line in lines:
        m = ADMITTED.match(line)
        if m:
            found[int(m.group(1))] = m.group(2)
    return found


def test_sigkilled_runs_resume_without_losing_a_reported_admission(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text(CONFIG)
    run_dir = tmp_path / "run"
    rng = random.Random(20240611)
    deadline = time.monotonic() + 120
    reported: dict[int, str] = {}
    kills = 0
    for round_ in range(5):
        extra = ["--config", str(config)] + (["--resume"] if round_ else [])
        p = flashevolve_run(run_dir, *extra)
        lines = lines_until(p, rng.randint(1, 8), deadline)
        time.sleep(rng.uniform(0.0, 0.4))  # anywhere: between admissions, mid-commit...
        p.send_signal(signal.SIGKILL)
        out, err = p.communicate(timeout=30)
        if p.returncode == -signal.SIGKILL:
            kills += 1
        lines += out.splitlines(keepends=True)
        assert "Traceback" not in err, err
        for version, artifact in admissions(lines).items():
            assert reported.setdefault(version, artifact) == artifact, "a version was reused"
        # Everything reported so far is in the store, as reported.
        with open_run(run_dir) as stored:
            log = stored.pool_log()
            admits = stored_admissions(log)
            assert stored.status == "interrupted" or p.returncode == 0
        for version, artifact in reported.items():
            assert admits.get(version) == artifact, f"v{version} was reported but is not stored"
    assert kills >= 4  # the run outlasted (nearly) every kill

    final = flashevolve_run(run_dir, "--resume")  # the stored settings, the budget left
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    assert f"finished: max_sim_seconds={MINUTES * 60} reached" in out

    with open_run(run_dir) as stored:
        log = stored.pool_log()
        versions = sorted(log[log.change != "confirm"].version)
        assert versions == list(range(1, len(versions) + 1)), "pool versions have a gap or repeat"
        admits = stored_admissions(log)
        for version, artifact in reported.items():
            assert admits[version] == artifact
        events = stored.events_frame()
        admitted = events[events.kind == "admitted"]
        assert sorted(admitted.version) == sorted(admits)  # each admission reported once
        # Every start the kills cut off was given its end on resume.
        steps = events[events.kind == "step_started"].step
        assert set(steps) == set(events[events.kind == "step_finished"].step)
        calls = events[events.kind == "llm_call_started"].call_id
        assert set(calls) == set(events[events.kind == "llm_call_finished"].call_id)
        assert (events.kind == "step_restarted").any()  # cut-off steps were re-derived
        sessions = stored.sessions
        assert len(sessions) == 6
        assert [s.finish_reason is None for s in sessions] == [True] * 5 + [False]
        result = stored.result()
        # The budget is the whole run's: simulated time went on across the kills.
        assert MINUTES * 60 <= result.stats.sim_seconds < MINUTES * 60 + 60
        assert result.stats.accepted == len(admits) - 1  # all but the seed
