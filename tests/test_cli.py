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
    assert "minutes must be > 0" in r.stderr
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
    assert p.returncode == 0, err
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
