"""The dashboard's Python side without a browser: the model it sends, and its commands.

Outside a kernel a widget gets a dummy comm; the tests record what would go
to the page (``send``), act as the page does (the ``cmd`` and ``sync``
messages it sends, through the widget's own message handler) and step the
dashboard with ``refresh()`` (``autostart=False``). The page itself is tested
by ``widgets/`` (npm test) and in a real browser by ``tests/browser``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_runtime_support import FAST, HumanToy, runs_fixture, until  # noqa: F401
from toy import ToyWorkload

from flashevolve_nb import open_run
from flashevolve_nb.demo import DemoConfig
from flashevolve_nb.engine import Pipeline, PipelineConfig
from flashevolve_nb.engine.artifact import Artifact
from flashevolve_nb.engine.events import (
    Admitted,
    ControllerAction,
    ItemQueued,
    ItemStarted,
    PolicyDecision,
    RunStarted,
    StaleDetected,
    StepFinished,
)
from flashevolve_nb.runtime import Run, start
from flashevolve_nb.runtime.history import RunHistory
from flashevolve_nb.ui import Dashboard
from flashevolve_nb.ui.model import clean

SMALL = {"n_train": 30, "n_val": 20, "n_test": 20}


class Page:
    """What the browser would get from one dashboard, and a way to talk back."""

    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash
        self.got: list[dict[str, Any]] = []
        dash.send = self._receive  # type: ignore[method-assign]
        self._n = 0

    def _receive(self, content: dict[str, Any], buffers: Any = None) -> None:
        # Through JSON as the comm would: a NaN or an object that does not serialise fails here.
        self.got.append(json.loads(json.dumps(content, allow_nan=False)))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.got if m["type"] == kind]

    def cmd(self, cmd: str, **args: Any) -> dict[str, Any]:
        self._n += 1
        self.dash._on_msg(self.dash, {"type": "cmd", "id": self._n, "cmd": cmd, "args": args}, [])
        acks = [m for m in self.of("ack") if m["id"] == self._n]
        assert len(acks) == 1, f"one ack per command, got {acks}"
        return acks[0]


@pytest.fixture
def dashboards() -> Iterator[list[Dashboard]]:
    made: list[Dashboard] = []
    yield made
    for d in made:
        d.close()


def board(run: Run, dashboards: list[Dashboard]) -> tuple[Dashboard, Page]:
    d = run.dashboard(autostart=False)
    dashboards.append(d)
    return d, Page(d)


def toy(runs: list[Run], wl: ToyWorkload | None = None, **config: Any) -> Run:
    run = start(Pipeline(wl or ToyWorkload(durations=dict(FAST)), PipelineConfig(**config)))
    runs.append(run)
    return run


def demo(runs: list[Run], **options: Any) -> Run:
    run = start(DemoConfig(**{"minutes": 60, "time_scale": 300, **SMALL, **options}))
    runs.append(run)
    return run


def test_ticks_follow_one_another_and_never_repeat_an_event(
    runs: list[Run], dashboards: list[Dashboard]
) -> None:
    run = toy(runs, ToyWorkload(durations=dict(FAST), max_steps=40), depth=4)
    dash, page = board(run, dashboards)
    assert dash.archive["v"] == 1 and dash.archive["tick"] == 0
    while not run.done:
        time.sleep(0.02)
        dash.refresh()
    dash.refresh()
    ticks = page.of("tick")
    assert ticks, "a moving run sends ticks"
    assert [t["prev"] for t in ticks] == [t["tick"] - 1 for t in ticks]
    assert [t["tick"] for t in ticks] == list(range(1, len(ticks) + 1))
    seqs = [e["seq"] for e in dash.archive["events"]] + [
        e["seq"] for t in ticks for e in t["events"]
    ]
    # The archive was taken at tick 0; each tick brings only what is new after it.
    tick_seqs = [e["seq"] for t in ticks for e in t["events"]]
    assert tick_seqs == sorted(set(tick_seqs))
    assert seqs
    assert dash.archive["snapshot"]["state"] == "finished"
    assert dash.archive["tick"] == ticks[-1]["tick"]  # the final archive follows the last tick


def test_a_dashboard_opened_late_shows_the_run_from_its_first_event(
    runs: list[Run], dashboards: list[Dashboard]
) -> None:
    run = toy(runs, depth=4)
    until(lambda: run.snapshot().stats.accepted >= 20, "the run to get going")
    dash, _ = board(run, dashboards)
    model = dash.archive
    assert model["events"][0]["kind"] == "run_started"
    assert model["series"]["t"][0] < 1.0, "the series starts at the run's start"
    assert len(model["pool"]) >= 20
    assert set(model["meta"]["stages"]) == {"a", "b", "c"}


def test_figures_stop_at_the_end_and_equal_the_result(
    runs: list[Run], dashboards: list[Dashboard]
) -> None:
    run = demo(runs, minutes=5, time_scale=600)
    result = run.wait(timeout=120)
    dash, _ = board(run, dashboards)
    snap = dash.archive["snapshot"]
    assert snap["t"] == pytest.approx(result.stats.sim_seconds)
    time.sleep(0.3)  # the simulated clock would move on by 180 s at 600x
    later = dash.model()["snapshot"]
    assert later["t"] == snap["t"]
    assert later["stats"]["proposals_per_min"] == pytest.approx(result.stats.proposals_per_min)
    assert later["stats"]["accepted_per_min"] == pytest.approx(result.stats.accepted_per_min)
    assert run.snapshot().sim_seconds == pytest.approx(result.stats.sim_seconds)
    assert dash.archive["meta"]["live"] is False


def test_stop_cancel_leaves_the_run_cancelled(runs: list[Run]) -> None:
    run = toy(runs, depth=4)
    until(lambda: run.snapshot().stats.accepted >= 2, "admissions")
    run.stop("cancel")
    run.wait(timeout=30)
    assert run.state == "cancelled"
    drained = toy(runs, depth=4)
    until(lambda: drained.snapshot().stats.accepted >= 2, "admissions")
    drained.stop("drain")
    drained.wait(timeout=30)
    assert drained.state == "finished"


def test_pausing_a_stage_is_acknowledged_and_warns_that_it_starves_the_rest(
    runs: list[Run], dashboards: list[Dashboard]
) -> None:
    run = toy(runs, depth=8)
    dash, page = board(run, dashboards)
    until(lambda: run.snapshot().stats.accepted >= 1, "a first admission")
    ack = page.cmd("pause", stage="a")
    assert ack["ok"] and ack["message"] == "'a' paused"
    until(
        lambda: all(s.busy == 0 and s.queued == 0 for s in run.snapshot().stages[1:]),
        "b and c to run dry",
    )
    dash.refresh()
    warn = page.of("tick")[-1]["snapshot"]["warnings"]
    assert any("'a' is paused" in w and "'b'" in w for w in warn), warn
    stage_a = next(s for s in page.of("tick")[-1]["snapshot"]["stages"] if s["name"] == "a")
    assert stage_a["paused"] is True
    ack = page.cmd("resume", stage="a")
    assert ack["ok"] and ack["message"] == "'a' resumed" and not ack["warning"]


def test_a_worker_count_set_by_a_person_holds_against_the_controller(
    runs: list[Run], dashboards: list[Dashboard]
) -> None:
    run = demo(runs, controller="adaptive")
    dash, page = board(run, dashboards)
    until(lambda: run.snapshot().stats.accepted >= 1, "a first admission", limit=60)
    stage = run.snapshot().stages[0].name
    ack = page.cmd("workers", stage=stage, n=6)
    assert ack["ok"] and "held" in ack["message"]
    ctrl = run.controller
    for _ in range(5):  # decisions now: none may touch the held stage
        moves = run.call(lambda p: p.controller.step())
        assert all(m.stage != stage for m in moves if m.action == "workers")
    assert run.snapshot().stage(stage).workers == 6
    dash.refresh()
    row = next(s for s in page.of("tick")[-1]["snapshot"]["stages"] if s["name"] == stage)
    assert row["held"] is True and row["workers"] == 6
    ack = page.cmd("release", stage=stage)
    assert ack["ok"] and "handed back" in ack["message"]
    assert stage not in ctrl.held
    actions = [e for e in run.events_since(0).events if isinstance(e, ControllerAction)]
    said = [a.action for a in actions if a.stage == stage and a.action in ("hold", "release")]
    assert said == ["hold", "release"]


def test_a_submission_is_acknowledged_with_its_id_and_shows_in_the_model(
    runs: list[Run], dashboards: list[Dashboard]
) -> None:
    run = toy(runs, HumanToy(durations=dict(FAST)), depth=2)
    dash, page = board(run, dashboards)
    until(lambda: run.snapshot().pool.entries, "the seed")
    seed = run.snapshot().pool.entries[0].artifact
    comp = next(iter(seed))
    run.pause("a")
    ack = page.cmd("submit", components={comp: "a <b>person's</b> text"}, parent=seed.id)
    assert ack["ok"], ack
    new_id = ack["artifact_id"]
    assert new_id in ack["message"]
    # It waits behind the paused stage, and the page is told so.
    assert "paused" in ack["warning"] and new_id in ack["warning"]
    dash.refresh()
    arts = {**dash.archive["artifacts"], **{k: v for t in page.of("tick") for k, v in
                                              t["artifacts"].items()}}  # fmt: skip
    assert arts[new_id]["origin"] == "human"
    assert arts[new_id]["components"][comp] == "a <b>person's</b> text"
    page.cmd("resume", stage="a")
    until(lambda: new_id in {e.artifact.id for e in run.snapshot().pool.entries}, "admission")


def test_bad_commands_get_a_clear_refusal_and_the_run_goes_on(
    runs: list[Run], dashboards: list[Dashboard]
) -> None:
    run = toy(runs, depth=2)
    _, page = board(run, dashboards)
    assert page.cmd("workers", stage="a", n="many")["message"] == (
        "ValueError: n must be a whole number (got 'many')"
    )
    assert "no stage 'zz'" in page.cmd("pause", stage="zz")["message"]
    gone = page.cmd("drop", item_id="i-none")
    assert not gone["ok"] and "no longer waiting" in gone["message"]
    replaced = page.cmd("replace", item_id="i-none", components={"x": "y"})
    assert not replaced["ok"] and "submit your text as a new proposal" in replaced["message"]
    assert "unknown command 'explode'" in page.cmd("explode")["message"]
    assert "alpha must be a number" in page.cmd("alpha", stage="a", alpha="half")["message"]
    assert run.state == "running"


def test_a_sync_request_gets_the_whole_model(runs: list[Run], dashboards: list[Dashboard]) -> None:
    run = toy(runs, depth=2)
    dash, page = board(run, dashboards)
    until(lambda: run.snapshot().stats.accepted >= 3, "admissions")
    dash._on_msg(dash, {"type": "sync"}, [])
    full = page.of("full")
    assert len(full) == 1
    model = full[0]["model"]
    assert model["events"][0]["kind"] == "run_started"
    assert {r["id"] for r in model["pool"]} >= {e.artifact.id for e in run.snapshot().pool.entries}


def test_the_refresher_follows_the_run_and_leaves_the_final_archive(
    runs: list[Run], dashboards: list[Dashboard]
) -> None:
    run = toy(runs, ToyWorkload(durations=dict(FAST), max_steps=60), depth=3)
    dash = run.dashboard(interval=0.05)
    dashboards.append(dash)
    run.wait(timeout=60)
    until(lambda: dash.archive["snapshot"]["state"] == "finished", "the final archive")
    assert dash.refreshes > 0 and not dash.problems
    assert dash._refresher is not None
    dash._refresher.join(timeout=10)
    assert not dash._refresher.is_alive()


def test_stored_runs_and_replays_use_the_same_model(
    runs: list[Run], dashboards: list[Dashboard], tmp_path: Path
) -> None:
    run = start(DemoConfig(minutes=10, time_scale=600, **SMALL), run_dir=tmp_path / "r")
    runs.append(run)
    result = run.wait(timeout=120)
    live = run.dashboard(autostart=False)
    dashboards.append(live)
    with open_run(tmp_path / "r") as stored:
        dash = stored.dashboard(replay=True)
        dashboards.append(dash)
        model = dash.archive
    assert model["meta"]["replay"] is True and model["meta"]["live"] is False
    assert model["snapshot"]["stats"]["accepted"] == result.stats.accepted
    assert {r["id"] for r in model["pool"]} == {r["id"] for r in live.archive["pool"]}
    assert len(model["stories"]) == len(live.archive["stories"])
    assert [e["kind"] for e in model["events"]][:3] == [e["kind"] for e in live.archive["events"]][
        :3
    ]
    assert model["series"]["t"], "series rebuilt from the stored events"
    ack = Page(dash).cmd("pause", stage="x")
    assert not ack["ok"] and "recorded run" in ack["message"]


def test_the_report_is_one_html_file_with_hostile_text_kept_inert(
    runs: list[Run], tmp_path: Path
) -> None:
    run = toy(runs, HumanToy(durations=dict(FAST)), depth=2)
    until(lambda: run.snapshot().pool.entries, "the seed")
    seed = run.snapshot().pool.entries[0].artifact
    hostile = "</script><script>alert(1)</script><img src=x onerror=alert(2)><!--"
    mine = run.submit({next(iter(seed)): hostile}, parent=seed.id)
    until(lambda: mine.id in run.history.full()[0]["artifacts"], "the submission in the model")
    run.stop("cancel")
    run.wait(timeout=30)
    path = run.report(tmp_path / "run.html")
    text = path.read_text()
    assert text.count("</script>") == 2, "only the page's own two script elements close"
    assert "<script>alert(1)" not in text and "<!--" not in text.split("<script", 1)[1]
    data = text.split('<script id="fe-data" type="application/json">', 1)[1].split("</script>")[0]
    model = json.loads(data)
    assert any(hostile in a["components"].values() for a in model["artifacts"].values())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run.report(tmp_path / "missing" / "run.html")


def test_history_stays_bounded_and_keeps_the_runs_story() -> None:
    h = RunHistory(["a"], sample_every=1.0, max_points=100, max_events=50)
    h(RunStarted(t=0.0, mode="async", seed=0, workload="w", backend="b"))
    for i in range(1, 2000):
        h(ItemQueued(t=float(i), stage="a", item_id=f"i{i}", step=i, depth=1))
        h(ItemStarted(t=float(i), stage="a", item_id=f"i{i}", step=i, waited=0.0))
        h(StepFinished(t=float(i), step=i, outcome="gated out: 0 <= 1"))
        if i % 100 == 0:
            h(Admitted(t=float(i), step=i, artifact_id=f"a{i}", parents=("a0",),
                       origin="proposal", version=i // 100, score=0.5, is_best=False))  # fmt: skip
    model, _ = h.full()
    assert len(model["series"]["t"]) <= 101
    assert model["series"]["t"][0] == 0.0, "the start survives downsampling"
    assert model["series"]["t"][-1] == 1999.0
    kinds = [e["kind"] for e in model["events"]]
    assert kinds[0] == "run_started" and kinds.count("admitted") == 19
    assert len(kinds) <= 50 * 1.2 + 20


def test_a_staleness_story_carries_what_a_teacher_shows() -> None:
    h = RunHistory(["v"])
    parent = Artifact("a1", {"p": "old"})
    stale = parent.derive("a5", {"p": "stale"}, origin="proposal", base_version=1, created_at=1)
    repair = stale.derive("a6", {"p": "fixed"}, origin="repair", base_version=3, created_at=2)
    for v, aid in ((2, "a2"), (3, "a3")):
        h(Admitted(t=float(v), step=v, artifact_id=aid, parents=("a1",), origin="proposal",
                   version=v, score=0.4 + v / 10, is_best=True))  # fmt: skip
    h(StaleDetected(t=4.0, step=9, item_id="i9", artifact_id="a5", point="admit",
                    base_version=1, pool_version=3, staleness=2))  # fmt: skip
    h(PolicyDecision(t=4.0, step=9, item_id="i9", artifact_id="a5", point="admit",
                     policy="reflective", staleness=2, decision="patch", reason="merged",
                     request="<req>", answer="<ans>", artifact=stale,
                     replacement=repair))  # fmt: skip
    h(Admitted(t=5.0, step=9, artifact_id="a6", parents=("a5",), origin="repair", version=4,
               score=0.9, is_best=True))  # fmt: skip
    (story,) = h.full()[0]["stories"]
    assert story["since_ids"] == ["a2", "a3"] and story["best_id"] == "a3"
    assert story["stale_id"] == "a5" and story["parent_id"] == "a1"
    assert story["replacement_id"] == "a6"
    assert story["outcome"] == {"status": "admitted", "artifact_id": "a6", "score": 0.9,
                                "version": 4, "is_best": True, "text": "admitted"}  # fmt: skip
    arts = h.full()[0]["artifacts"]
    assert arts["a6"]["components"] == {"p": "fixed"} and arts["a5"]["parents"] == ["a1"]


def test_non_finite_numbers_never_reach_the_page() -> None:
    assert clean({"x": math.nan, "y": [math.inf, 1.5], "z": "nan"}) == {
        "x": None, "y": [None, 1.5], "z": "nan"}  # fmt: skip


def test_speculation_controls_are_steered_from_the_page(
    runs: list[Run], dashboards: list[Dashboard]
) -> None:
    run = demo(runs)
    dash, page = board(run, dashboards)
    spec = dash.archive["snapshot"]["speculation"]
    assert "validate" in spec["partial_stages"] and spec["validation"] is False
    ack = page.cmd("alpha", stage="validate", alpha=0.25)
    assert ack["ok"] and "25%" in ack["message"]
    ack = page.cmd("speculative_validation", on=True)
    assert ack["ok"] and ack["message"] == "speculative validation on"
    # Turning validate's alpha back to 1 would break speculative validation: refused, said why.
    refused = page.cmd("alpha", stage="validate", alpha=1.0)
    assert not refused["ok"] and "turn it off first" in refused["message"]
    dash.refresh()
    snap = page.of("tick")[-1]["snapshot"]
    assert snap["speculation"]["validation"] is True
    assert next(s for s in snap["stages"] if s["name"] == "validate")["alpha"] == 0.25
    knobs = {k["name"]: k for k in dash.archive["meta"]["knobs"]}
    assert knobs["interval"]["unit"] == "s of run clock" and knobs["interval"]["help"]
    ack = page.cmd("tune", changes={"interval": 10.0})
    assert ack["ok"] and run.controller.params.interval == 10.0


def test_the_wheel_carries_the_built_front_end(tmp_path: Path) -> None:
    # `pip install` must give a working dashboard with no node: the bundle is package data.
    import subprocess
    import sys
    import zipfile

    repo = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(repo), "--no-deps", "-q", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("flashevolve_nb-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("dashboard.js", "dashboard.css"):
        packed = zipfile.ZipFile(wheel).read(f"flashevolve_nb/ui/static/{name}")
        assert packed == (repo / "flashevolve_nb/ui/static" / name).read_bytes()
    assert not [n for n in names if n.startswith("widgets/")]  # sources stay out


def test_a_workloads_change_record_reaches_the_page() -> None:
    h = RunHistory(["v"])
    seed = Artifact("a0", {"playbook": "## x\n"})
    child = seed.derive(
        "a1", {"playbook": "## x\n[b-1] helpful=0 harmful=0 :: Be brief.\n"}, origin="proposal",
        base_version=1, created_at=1.0,
        meta={"ace": {"added": ["b-1"], "delta": "ADD [x] Be brief.", "duplicates": 0}},
    )  # fmt: skip
    h.note_artifact(seed)
    h.note_artifact(child)
    arts = h.full()[0]["artifacts"]
    assert arts["a0"]["change"] == {}
    assert arts["a1"]["change"] == {"added": ["b-1"], "delta": "ADD [x] Be brief.", "duplicates": 0}


def test_the_final_view_is_written_before_the_run_is_awaited(
    runs: list[Run], dashboards: list[Dashboard]
) -> None:
    # A notebook whose last cells are quick is saved right after `await run`: the final
    # view must be in the archive by then, not one refresh later (the refresher here
    # would not look again for a minute).
    run = toy(runs, ToyWorkload(durations=dict(FAST), max_steps=30), depth=3)
    dash = run.dashboard(interval=60.0)
    dashboards.append(dash)
    result = run.wait(timeout=60)
    snap = dash.archive["snapshot"]
    assert snap["state"] == "finished" and dash.archive["meta"]["live"] is False
    assert snap["stats"]["accepted"] == result.stats.accepted
    assert not dash.problems
