"""ACE and Meta-Harness runs killed with SIGKILL, resumed each time, lose nothing they reported.

Each run is ``flashevolve_nb.start(..., run_dir=...)`` in a subprocess, on the
in-process simulator with a fast real clock (``flashevolve run`` starts GEPA
runs only). The child prints one line per admission, which the pipeline
reports only once the admission is durable; the test kills it at a seeded
random moment, checks the store against every line printed, and resumes. The
last resume runs the budget out. Then: no admission was lost or renumbered,
ACE never handed out a bullet id twice, Meta-Harness's candidates kept their
numbering, and the resumed sessions went on improving.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from flashevolve_nb import open_run
from flashevolve_nb.workloads.ace.playbook import Playbook, bullet_number
from flashevolve_nb.workloads.meta_harness.history import CandidateRecord, HistoryDir

ROOT = Path(__file__).resolve().parents[1]
MINUTES = 16
CAP = 0.8
"""Real seconds a session runs at most before its kill: 240 simulated seconds (x300)."""
CHILD = """
import sys
import flashevolve_nb
from flashevolve_nb.demo import DemoConfig
from flashevolve_nb.engine.events import Admitted

workload, run_dir, resume, history = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
config = DemoConfig(
    seed=3, minutes=MINUTES, time_scale=300, n_train=30, n_val=12, n_test=5, workers=4,
    depth=8,
)


def show(e):
    if isinstance(e, Admitted):
        print(f"admitted v{e.version} {e.artifact_id} score={e.score:.4f}", flush=True)


if history:  # Meta-Harness with its history in a directory of its own, kept across sessions
    from flashevolve_nb.workloads.meta_harness.demo import build_meta_harness_demo

    demo = build_meta_harness_demo(config, history_dir=history)
    demo.pipeline.bus.subscribe(show)
    run = flashevolve_nb.start(demo.pipeline, run_dir=run_dir, resume=resume)
else:
    run = flashevolve_nb.start(config, workload=workload, run_dir=run_dir, resume=resume)
    run.pipeline.bus.subscribe(show)  # from now on (the first lines may come before)
    if workload == "meta-harness":  # the history went to a new temporary directory
        print(f"history {run.demo.workload.history.root}", flush=True)
print("started", flush=True)
result = run.wait()
print(f"finished: {result.finish_reason}", flush=True)
""".replace("MINUTES", str(MINUTES))
ADMITTED = re.compile(r"^admitted v(\d+) (\S+) ")


def start(
    workload: str, run_dir: Path, resume: bool, history: Path | None
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    args = [workload, str(run_dir), "1" if resume else "0", str(history or "")]
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )  # fmt: skip


def lines_until(p: subprocess.Popen[str], admissions: int, deadline: float) -> list[str]:
    """Read output lines until ``admissions`` admission lines came, or ``CAP`` real
    seconds passed since the run started (a busy machine admits less in a simulated
    minute: the run must not end before the kill), or the run ended."""
    assert p.stdout is not None
    seen: list[str] = []
    started = float("inf")
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    while sum(bool(ADMITTED.match(s)) for s in seen) < admissions:
        assert time.monotonic() < deadline, f"no progress; output so far: {seen[-5:]}"
        if time.monotonic() > started + CAP:
            break
        if sel.select(timeout=0.05):
            line = p.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("started"):
                started = time.monotonic()
    sel.close()
    return seen


def admissions(lines: list[str]) -> dict[int, str]:
    found: dict[int, str] = {}
    for line in lines:
        m = ADMITTED.match(line)
        if m:
            found[int(m.group(1))] = m.group(2)
    return found


def stored_state(run_dir: Path) -> tuple[dict[int, str], float, list[str]]:
    """(version -> artifact admitted, best score, ids of every stored artifact in order)."""
    with open_run(run_dir) as stored:
        log = stored.pool_log()
        admits = log[log.change == "admit"]
        assert not (log.change == "remove").any()  # nothing these runs admit is withdrawn
        best = float(stored.pool.best_score)
        with sqlite3.connect(f"file:{stored.path}?mode=ro", uri=True) as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM artifacts ORDER BY rowid")]
    return dict(zip(admits.version, admits.artifact_id, strict=True)), best, ids


def kill_and_resume(
    workload: str, tmp_path: Path, history: Path | None, seed: int, kills: int
) -> tuple[Path, list[tuple[dict[int, str], float, list[str]]], list[str]]:
    """Start, kill ``kills`` times at random moments, resume to the end; the state after
    each kill and at the end, and every line the processes printed."""
    run_dir = tmp_path / "run"
    rng = random.Random(seed)
    deadline = time.monotonic() + 150
    reported: dict[int, str] = {}
    states = []
    printed: list[str] = []
    for round_ in range(kills):
        p = start(workload, run_dir, bool(round_), history)
        lines = lines_until(p, rng.randint(2, 5), deadline)
        time.sleep(rng.uniform(0.0, 0.3))  # anywhere: between admissions, mid-commit...
        p.send_signal(signal.SIGKILL)
        out, err = p.communicate(timeout=30)
        assert p.returncode == -signal.SIGKILL, (out, err)  # the run outlasted the kill
        assert "Traceback" not in err, err
        printed += lines + out.splitlines()
        for version, artifact in admissions(lines + out.splitlines()).items():
            assert reported.setdefault(version, artifact) == artifact, "a version was reused"
        state = stored_state(run_dir)
        for version, artifact in reported.items():
            assert state[0].get(version) == artifact, f"v{version} was reported, not stored"
        states.append(state)
    final = start(workload, run_dir, True, history)
    out, err = final.communicate(timeout=150)
    assert final.returncode == 0, err
    assert f"finished: max_sim_seconds={MINUTES * 60} reached" in out
    printed += out.splitlines()
    for version, artifact in admissions(out.splitlines()).items():
        assert reported.setdefault(version, artifact) == artifact, "a version was reused"
    state = stored_state(run_dir)
    states.append(state)

    # Every admission made durable before a kill is still there, under its version.
    for before in states[:-1]:
        assert before[0].items() <= state[0].items()
    assert sorted(state[0]) == list(range(1, len(state[0]) + 1)), "a gap or a repeat"
    for version, artifact in reported.items():
        assert state[0][version] == artifact
    with open_run(run_dir) as stored:
        assert [s.finish_reason is None for s in stored.sessions] == [True] * kills + [False]
        events = stored.events_frame()
        assert (events.kind == "run_resumed").sum() == kills
        # Every start the kills cut off was given its end on resume.
        steps = events[events.kind == "step_started"].step
        assert set(steps) == set(events[events.kind == "step_finished"].step)
        result = stored.result()
        assert MINUTES * 60 <= result.stats.sim_seconds < MINUTES * 60 + 120
    # Artifact ids never repeat, and the resumed sessions went on: they admitted more,
    # and the best score lost nothing (the tests ask each workload for more).
    assert len(set(state[2])) == len(state[2])
    assert len(state[0]) > len(states[0][0]) and state[1] >= states[0][1]
    return run_dir, states, printed


def bullet_births(run_dir: Path, ids: list[str]) -> dict[str, str]:
    """Bullet id -> the artifact whose delta allocated it (first had it, its parent not)."""
    born: dict[str, list[str]] = {}
    with open_run(run_dir) as stored:
        for aid in ids:
            a = stored.artifact(aid)
            mine = set(Playbook.parse(a["playbook"]).ids())
            parent = (
                set(Playbook.parse(stored.artifact(a.parents[0])["playbook"]).ids())
                if a.parents
                else set()
            )
            for bid in mine - parent:
                born.setdefault(bid, []).append(aid)
    twice = {bid: where for bid, where in born.items() if len(where) > 1}
    assert not twice, f"bullet ids handed out more than once: {twice}"
    return {bid: where[0] for bid, where in born.items()}


def test_a_sigkilled_ace_run_resumes_without_losing_or_reusing_anything(tmp_path: Path) -> None:
    run_dir, states, _ = kill_and_resume("ace", tmp_path, None, seed=20240611, kills=3)
    assert states[-1][1] > states[0][1] + 0.05  # ACE admits only what beats its parent
    with open_run(run_dir) as stored:
        assert stored.meta.workload.startswith("ace:")
        assert stored.sessions[0].config["run"]["workload"] == "ace"
    # Bullet ids: each allocated once over the whole run, and after each resume the
    # counter started past every id the stored artifacts held.
    final_ids = states[-1][2]
    births = bullet_births(run_dir, final_ids)
    for before, after in itertools.pairwise(states):
        old = set(before[2])
        top = max((bullet_number(b) or 0 for b, a in births.items() if a in old), default=0)
        new = [b for b, a in births.items() if a in set(after[2]) - old]
        assert all((bullet_number(b) or 0) > top for b in new), (top, sorted(new))


def test_a_sigkilled_meta_harness_run_resumes_with_its_history(tmp_path: Path) -> None:
    history = tmp_path / "history"
    _, states, _ = kill_and_resume("meta-harness", tmp_path, history, seed=7, kills=3)
    # Candidate folders number on across the kills: no number twice, no gap, and
    # none of the half-written folders a kill may leave behind is taken for one.
    folders = sorted(p.name for p in history.iterdir() if p.is_dir())
    numbered = [n for n in folders if not n.endswith(".tmp")]
    assert [int(n[:4]) for n in numbered] == list(range(len(numbered)))
    recorded = [json.loads((history / n / "scores.json").read_text()) for n in numbered]
    # Every admitted harness of every session is in the history the proposer reads.
    admitted = set(states[-1][0].values())
    assert admitted <= {r["candidate"] for r in recorded}
    assert len({r["candidate"] for r in recorded}) >= len(admitted)


def test_a_sigkilled_meta_harness_run_started_by_name_keeps_its_history_in_the_run_dir(
    tmp_path: Path,
) -> None:
    # start(workload="meta-harness", run_dir=...) keeps the candidates' history inside the
    # run directory: every session, the resumed ones too, reads and extends the same one.
    _, states, printed = kill_and_resume("meta-harness", tmp_path, None, seed=11, kills=2)
    roots = [Path(line.split(" ", 1)[1].strip()) for line in printed if line.startswith("history ")]
    assert len(roots) == 3 and set(roots) == {tmp_path / "run" / "workload" / "candidates"}
    history = roots[0]
    numbered = sorted(p.name for p in history.iterdir() if p.is_dir() and "." not in p.name)
    assert [int(n[:4]) for n in numbered] == list(range(len(numbered)))
    records = [json.loads((history / n / "scores.json").read_text()) for n in numbered]
    assert set(states[-1][0].values()) <= {r["candidate"] for r in records}
    # Nothing had to be rebuilt from the store: every candidate keeps its own traces.
    assert not [r for r in records if r["reason"].startswith("restored")]
    evaluated = [n for n, r in zip(numbered, records, strict=True) if r["status"] == "evaluated"]
    assert all((history / n / "traces.jsonl").exists() for n in evaluated)


def test_a_half_written_candidate_folder_is_not_taken_for_a_candidate(tmp_path: Path) -> None:
    history = HistoryDir(tmp_path)
    history.record(CandidateRecord("a0", None, 0, "x = 1\n", "evaluated", accuracy=0.5))
    (tmp_path / "0001-a3.tmp").mkdir()  # a kill between mkdir and rename
    again = HistoryDir(tmp_path)
    assert [f.name for f in again.folders()] == ["0000-a0"] and again.candidates() == {"a0"}
    assert again.record(CandidateRecord("a5", "a0", 2, "x = 2\n", "failed")).name == "0001-a5"
    assert "a3" not in again.render(10_000)
