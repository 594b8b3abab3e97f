"""The ``flashevolve`` command, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from flashevolve_nb.cli import build_parser


def flashevolve(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flashevolve_nb", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_documents_every_option() -> None:
    r = flashevolve("demo", "--help")
    assert r.returncode == 0
    demo = next(
        a
        for a in build_parser()._subparsers._group_actions[0].choices.values()  # type: ignore[union-attr]
    )
    for action in demo._actions:
        for flag in action.option_strings:
            assert flag in r.stdout
        if action.option_strings and action.dest != "help":
            assert action.help, f"{action.option_strings} has no help text"


def test_compare_prints_both_runs_and_the_ratio(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    r = flashevolve(
        "demo", "--compare", "--clock", "virtual", "--minutes", "10", "--no-progress",
        "--json", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "simulated 'vllm' server" in text
    assert "async/sync" in text
    for label in ("seed score (val)", "best score (val)", "best score (held-out test)",
                  "proposals / min", "accepted / min",
                  "in-flight requests, mean", "in-flight requests, peak", "tokens"):  # fmt: skip
        assert label in text
    figures = json.loads(out.read_text())
    assert [f["mode"] for f in figures] == ["async", "sync"]
    a, s = figures
    assert a["proposals"] > 0 and s["proposals"] > 0
    assert a["inflight_peak"] > s["inflight_peak"]
    assert a["sim_minutes"] == s["sim_minutes"] == 10.0
    assert 0.0 <= a["best_test_score"] <= 1.0 and 0.0 <= s["seed_test_score"] <= 1.0
    line = next(ln for ln in text.splitlines() if ln.startswith("proposals / min"))
    assert line.rstrip().endswith("x")


def test_bad_options_fail_with_a_clear_message() -> None:
    r = flashevolve("demo", "--minutes", "0")
    assert r.returncode == 2
    assert "argument --minutes: must be a number > 0" in r.stderr
    r = flashevolve("demo", "--profile", "tpu")
    assert r.returncode == 2
    assert "invalid choice: 'tpu'" in r.stderr


def test_ctrl_c_stops_cleanly_and_still_reports() -> None:
    p = subprocess.Popen(
        [sys.executable, "-m", "flashevolve_nb", "demo", "--compare"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stderr is not None
    p.stderr.readline()  # the progress bar's first line: the run has started
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err  # as a shell reports a command stopped by Ctrl-C
    assert "interrupted: stopping the run" in err
    assert "async: stopped because interrupted (Ctrl-C)" in out
    # The comparison run is not started after Ctrl-C.
    assert not any(line.startswith("sync:") for line in out.splitlines())
    assert "seed score (val)" in out


def test_each_staleness_policy_runs_offline_and_prints_its_stats(tmp_path: Path) -> None:
    for policy in ("accept", "guarded:1", "discard", "reflective", "meta"):
        out = tmp_path / f"{policy}.json"
        r = flashevolve(
            "demo", "--staleness", policy, "--clock", "virtual", "--minutes", "8",
            "--no-progress", "--json", str(out),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        name = policy.split(":")[0]
        assert f"staleness (async, policy {policy}):" in r.stdout
        fig = json.loads(out.read_text())[0]
        assert fig["stale_seen"] > 0, policy
        decisions = fig["decisions"]
        # A few decisions may still wait on the repair model when the deadline cuts the run.
        assert sum(decisions.values()) >= fig["stale_seen"] - 4
        if name == "accept":
            assert set(decisions) == {"accept"}
        if name == "discard":
            assert set(decisions) == {"discard"}
        if name == "reflective":
            assert decisions.get("patch", 0) > 0 and fig["repair_tokens"] > 0
        if name == "meta":
            assert decisions.get("defer", 0) > 0


def test_a_bad_staleness_policy_is_refused_with_the_choices() -> None:
    r = flashevolve("demo", "--staleness", "sometimes")
    assert r.returncode == 2
    assert "unknown staleness policy 'sometimes'" in r.stderr
    assert "reflective" in r.stderr


# ---- issue 19: the first hour of a new user ----------------------------------------------


def test_json_path_is_checked_before_the_run(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "x.json"
    r = flashevolve("demo", "--clock", "virtual", "--minutes", "2", "--json", str(missing))
    assert r.returncode == 2
    assert r.stderr.startswith("usage: flashevolve demo"), r.stderr
    assert "argument --json" in r.stderr and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    assert "proposals" not in r.stderr  # no run started: no progress bar
    r = flashevolve("demo", "--minutes", "2", "--json", str(tmp_path))
    assert r.returncode == 2 and "is a directory" in r.stderr


def test_json_dash_writes_the_figures_to_stdout(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "flashevolve_nb", "demo", "--clock", "virtual", "--minutes", "3",
         "--no-progress", "--json", "-"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    figures = json.loads(r.stdout)  # stdout holds the JSON and nothing else
    assert figures[0]["mode"] == "async" and figures[0]["sim_minutes"] == 3.0
    assert "best score (val)" in r.stderr  # the summary went to stderr
    assert not (tmp_path / "-").exists()


def test_config_errors_name_the_flag_under_the_commands_usage() -> None:
    cases = {
        ("--alpha", "2"): "argument --alpha",
        ("--time-scale", "0"): "argument --time-scale: must be a number > 0",
        ("--depth", "0"): "argument --depth: must be an int >= 1",
        ("--candidate-selection", "nope"): "argument --candidate-selection: unknown",
        ("--speculative-validation", "--alpha", "1"): "--alpha validate=0.25",
    }
    for argv, expected in cases.items():
        r = flashevolve("demo", *argv)
        assert r.returncode == 2, argv
        assert r.stderr.startswith("usage: flashevolve demo"), (argv, r.stderr)
        assert expected in r.stderr, (argv, r.stderr)
        for internal in ("DemoConfig.", "SpeculationConfig.", "alpha={"):
            assert internal not in r.stderr, (argv, r.stderr)


def test_run_errors_name_resume_as_a_flag(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('minutes = 1\nclock = "virtual"\nn_val = 5\n')
    run_dir = tmp_path / "exp"
    r = flashevolve("run", "--config", str(config), "--run-dir", str(run_dir), "--quiet")
    assert r.returncode == 0, r.stderr
    r = flashevolve("run", "--config", str(config), "--run-dir", str(run_dir), "--quiet")
    assert r.returncode == 2
    assert r.stderr.startswith("usage: flashevolve run"), r.stderr
    assert "continue it with --resume" in r.stderr
    assert "resume=True" not in r.stderr


def test_summary_explains_itself_and_points_onwards(tmp_path: Path) -> None:
    out = tmp_path / "f.json"
    r = flashevolve(
        "demo", "--clock", "virtual", "--minutes", "3", "--no-progress", "--json", str(out)
    )
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "What the terms mean:" in text
    for term in ("failed proposals", "passed the gate", "validation sweeps",
                 "stale detections", "early releases", "held-out test"):  # fmt: skip
        assert any(ln.startswith(f"  {term}") for ln in text.splitlines()), (
            f"{term!r} has no legend line"
        )
    assert "async: stopped because its budget of 3 simulated minutes ran out" in text
    assert "max_sim_seconds" not in text
    assert "Next:" in text and "flashevolve demo --compare" in text and "notebooks/" in text
    # the machine-readable reason stays as it was
    assert json.loads(out.read_text())[0]["finish_reason"] == "max_sim_seconds=180 reached"


def test_progress_bar_shows_no_nan_before_the_first_score() -> None:
    r = flashevolve("demo", "--clock", "virtual", "--minutes", "2")
    assert r.returncode == 0, r.stderr
    progress = [ln for ln in r.stderr.splitlines() if "sim-min" in ln]
    assert progress, r.stderr
    assert "best   -  " in progress[0]
    assert not any("nan" in ln for ln in progress)


def test_staleness_lab_summary_names_the_fixed_controller(tmp_path: Path) -> None:
    out = tmp_path / "lab.json"
    r = flashevolve(
        "demo", "--staleness-lab", "--clock", "virtual", "--minutes", "3", "--no-progress",
        "--json", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "control (async): fixed controller, 0 actions" in r.stdout
    assert "adaptive controller" not in r.stdout
    assert json.loads(out.read_text())[0]["controller"] == "fixed"


def test_held_out_scores_are_one_per_prompt(tmp_path: Path) -> None:
    # Two proposals at most and none admitted before the end: the best is the seed.
    out = tmp_path / "f.json"
    r = flashevolve(
        "demo", "--compare", "--clock", "virtual", "--minutes", "0.5", "--no-progress",
        "--json", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    a, s = json.loads(out.read_text())
    assert a["seed_test_score"] == s["seed_test_score"]  # the same prompt, the same score
    for f in (a, s):
        if f["best_score"] == f["seed_score"]:
            assert f["best_test_score"] == f["seed_test_score"], f


def test_virtual_clock_without_looptime_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['looptime'] = None\n"  # as if it were not installed
        "from flashevolve_nb.cli import main\n"
        "sys.exit(main(['demo', '--clock', 'virtual', '--minutes', '1']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith("usage: flashevolve demo"), r.stderr
    assert "pip install 'flashevolve_nb[virtual]'" in r.stderr
    assert "sim-min" not in r.stderr  # refused before the run
