"""Every notebook in notebooks/, executed top to bottom in a real Jupyter kernel.

Each runs unattended on the simulator with its parameters cell shortened, the
widget state stored (as a saved notebook would keep it); the assertions read
what the notebook printed and displayed, the things a reader looks at.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
from notebook_kernel import NOTEBOOKS, Executed, execute, parameterised

PLOTLY = "application/vnd.plotly.v1+json"
WIDGET = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def run(name: str, tmp_path: Path, **params: object) -> Executed:
    ex = execute(parameterised(name, **params), tmp_path)
    assert not ex.errors(), ex.errors()
    stderr = "".join(
        o.get("text", "")
        for c in ex.code_cells
        for o in c.outputs
        if o.output_type == "stream" and o.name == "stderr"
    )
    # The dashboard reports its own troubles on stderr: none is expected.
    assert "Traceback" not in stderr, stderr
    return ex


def saved_dashboards(ex: Executed) -> list[dict[str, object]]:
    """The dashboards' archives as the saved notebook keeps them (what renders without a
    kernel)."""
    state = ex.book.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return [m["state"]["archive"] for m in state.values() if "archive" in m.get("state", {})]


def test_the_five_notebooks_are_there_without_outputs_and_as_built() -> None:
    assert NAMES == [
        "01_quickstart",
        "02_staleness_repair",
        "03_debug_by_hand",
        "04_sync_vs_async",
        "05_real_endpoint",
        "06_workloads",
    ]
    spec = importlib.util.spec_from_file_location("nb_build", NOTEBOOKS / "_build.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for name in NAMES:
        text = (NOTEBOOKS / f"{name}.ipynb").read_text()
        assert text == nbformat.writes(build.NOTEBOOKS[name]()) + "\n", (
            f"{name}.ipynb differs from notebooks/_build.py: run python3 notebooks/_build.py"
        )
        book = nbformat.reads(text, as_version=4)
        code = [c for c in book.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code)
        first = code[0]
        assert first.metadata.get("tags") == ["parameters"]
        for line in first.source.splitlines():  # plain assignments only
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]* = .+", line), line
        assert any("REAL ENDPOINT" in c.source for c in code)


def test_01_quickstart_runs_shows_the_dashboard_and_reports_the_results(tmp_path: Path) -> None:
    ex = run("01_quickstart", tmp_path, SIM_MINUTES=8)
    code = [c.source for c in ex.code_cells]
    assert code[2] == "run.dashboard()" and code[3] == "result = await run"
    # Background threads may print to the cell's stream while it runs (e.g. a
    # kernel warning), so look for the widget among all of the cell's outputs.
    outputs = ex.code_cells[2].outputs
    assert any(WIDGET in o.get("data", {}) for o in outputs), outputs
    # One widget, saved with the notebook: its archive is the run's final view.
    (archive,) = saved_dashboards(ex)
    snapshot = archive["snapshot"]
    assert isinstance(snapshot, dict) and snapshot["state"] == "finished"
    assert archive["meta"]["live"] is False  # type: ignore[index]
    assert archive["events"][0]["kind"] == "run_started"  # type: ignore[index]
    text = ex.text()
    assert "started run1 on simulated" in text
    m = re.search(
        r"summary \(simulated\): (\d+) proposals, (\d+) accepted, best score ([\d.]+)", text
    )
    assert m, text
    proposals, accepted, best = int(m[1]), int(m[2]), float(m[3])
    assert proposals > 0 and 0 < accepted <= proposals and 0 < best <= 1
    minutes = re.search(r"in ([\d.]+) simulated minutes", text)
    assert minutes and 8.0 <= float(minutes[1]) < 9  # the budget, plus the drain
    shape = re.search(r"pool frame: \((\d+), (\d+)\)", text)
    assert shape and int(shape[1]) == accepted + 1  # the seed and every accepted artifact
    assert re.search(r"events frame: \(\d+, \d+\)", text)
    html = "".join(ex.outputs("text/html"))
    assert "artifact_id" in html and "score" in html  # the pool DataFrame, rendered
    figures = ex.outputs(PLOTLY)
    assert len(figures) == 2
    assert "simulated" in figures[0]["layout"]["title"]["text"]
    assert figures[0]["data"][0]["name"] == "async (simulated)"
    stages = {t["name"] for t in figures[1]["data"]}
    assert {"rollout", "propose", "gate", "validate"} <= stages


def test_02_compares_policies_on_one_seed_and_opens_a_repair(tmp_path: Path) -> None:
    ex = run("02_staleness_repair", tmp_path, SIM_MINUTES=8)
    text = ex.text()
    lines = {
        m[1]: m[0] for m in re.finditer(r"^\s*(\S+) \(simulated\): (\d+) stale.*$", text, re.M)
    }
    assert set(lines) == {"accept", "guarded:2", "reflective"}, text
    assert "'patch'" in lines["reflective"] and "'patch'" not in lines["accept"]
    assert "'discard'" in lines["guarded:2"]
    n = re.search(r"(\d+) repairs with a patch decision under 'reflective'", text)
    assert n and int(n[1]) > 0
    # The first repair, opened: staleness, decision, history, answer and a diff.
    assert re.search(r"item \S+ at \w+: artifact a\d+, \d+ versions stale", text)
    assert "decision: patch by reflective" in text
    assert "judged against history: a" in text
    assert re.search(r"^--- a\d+:system_prompt \(stale\)$", text, re.M)
    assert re.search(r"^\+\+\+ a\d+:system_prompt \(repaired\)$", text, re.M)
    figures = ex.outputs(PLOTLY)
    assert len(figures) == 3  # staleness histogram, score over time, throughput
    # The replay of the reflective run, saved with the notebook: its stories hold repairs.
    (archive,) = saved_dashboards(ex)
    assert archive["meta"]["replay"] is True  # type: ignore[index]
    stories = archive["stories"]
    assert isinstance(stories, list)
    patched = [s for s in stories if s["decision"] == "patch" and s["replacement_id"]]
    assert len(patched) == int(n[1])
    score = figures[1]
    assert {t["name"] for t in score["data"] if t.get("showlegend", True)} == set(lines)
    assert "simulated" in score["layout"]["title"]["text"]


def test_03_a_hand_edited_artifact_goes_through_gate_and_validation(tmp_path: Path) -> None:
    ex = run("03_debug_by_hand", tmp_path)
    text = ex.text()
    assert re.search(r"propose is paused; \d+ item\(s\) waiting", text)
    assert "feedback: Violated rules:" in text
    m = re.search(r"injected: (a\d+)", text)
    assert m, text
    mine = m[1]
    assert f"human artifact {mine}: admitted" in text
    gate = re.search(
        r"gate \(simulated, minibatch total\): parent ([\d.]+) -> ours ([\d.]+): passed", text
    )
    assert gate and float(gate[2]) > float(gate[1])
    assert re.search(r"validation \(simulated\): score [\d.]+", text)
    assert "human artifacts in the pool: 1" in text
    (archive,) = saved_dashboards(ex)  # the dashboard, saved with its final view
    assert archive["snapshot"]["state"] in ("finished", "cancelled")  # type: ignore[index]
    assert len(ex.outputs(PLOTLY)) == 1


def test_04_async_outruns_sync_per_simulated_minute(tmp_path: Path) -> None:
    ex = run("04_sync_vs_async", tmp_path, SIM_MINUTES=10)
    text = ex.text()
    m = re.search(r"proposals per simulated minute: sync ([\d.]+), async ([\d.]+)", text)
    assert m, text
    sync, asyn = float(m[1]), float(m[2])
    assert asyn > 2 * sync > 0  # a count per simulated minute under a seeded simulator
    assert re.search(r"^ sync \(simulated\): \d+ proposals", text, re.M)
    assert re.search(r"^async \(simulated\): \d+ proposals", text, re.M)
    figures = ex.outputs(PLOTLY)
    assert len(figures) == 3  # throughput, timeline, score
    timeline = figures[1]
    axes = {t.get("yaxis", "y") for t in timeline["data"]}
    assert axes == {"y", "y2"}  # sync and async, one above the other
    titles = [a["text"] for a in timeline["layout"]["annotations"]]
    assert titles == ["sync", "async"]
    html = "".join(ex.outputs("text/html"))
    assert "proposals/min" in html and "validate" in html


def test_05_runs_through_the_openai_client_against_the_loopback_server(tmp_path: Path) -> None:
    ex = run("05_real_endpoint", tmp_path, SIM_MINUTES=5)
    text = ex.text()
    assert re.search(r"endpoint: loopback simulator server at http://127\.0\.0\.1:\d+/v1", text)
    m = re.search(r"summary \(simulated\): (\d+) LLM calls over HTTP, (\d+) failed", text)
    assert m and int(m[1]) > 0, text
    served = re.search(r"server side: (\d+) requests, (\d+) answered", text)
    assert served and int(served[2]) > 0
    assert "endpoint closed" in text
    (archive,) = saved_dashboards(ex)
    assert archive["snapshot"]["stats"]["llm_calls"] == int(m[1])  # type: ignore[index]
    assert len(ex.outputs(PLOTLY)) == 1


@pytest.mark.parametrize("name", NAMES)
def test_every_simulated_result_says_simulated(name: str) -> None:
    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    intro = book.cells[0]
    assert intro.cell_type == "markdown" and "simulat" in intro.source.lower()
    for cell in book.cells:
        if cell.cell_type == "code" and "summary" in cell.source and "print" in cell.source:
            assert "simulated" in cell.source


def test_06_runs_ace_and_meta_harness_in_the_dashboard(tmp_path: Path) -> None:
    history = tmp_path / "candidates"
    ex = run("06_workloads", tmp_path, SIM_MINUTES=8, HISTORY_DIR=str(history))
    text = ex.text()
    ace = re.search(
        r"ACE summary \(simulated\): (\d+) proposals, (\d+) accepted, best ([\d.]+) \(seed "
        r"([\d.]+)\); (\d+) deltas rebased, (\d+) duplicate bullets skipped",
        text,
    )
    assert ace, text
    assert float(ace[3]) > float(ace[4]) and int(ace[5]) > 0
    assert "## " in text  # the best playbook, printed
    mh = re.search(r"Meta-Harness summary \(simulated\): (\d+) proposals, (\d+) admitted, "
                   r"best ([\d.]+) \(seed ([\d.]+)\)", text)  # fmt: skip
    assert mh and float(mh[3]) > float(mh[4]), text
    assert f"history folder: {history} (" in text and "harness.py" in text
    assert "def build_context" in text
    (front,) = ex.outputs(PLOTLY)
    assert "accuracy vs context tokens" in front["layout"]["title"]["text"]
    archives = saved_dashboards(ex)  # both dashboards, saved with their final views
    assert [a["meta"]["stages"][0] for a in archives] == ["generate", "propose"]  # type: ignore[index]
