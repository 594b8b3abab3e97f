"""The dashboard without a browser: widgets outside a kernel work on a dummy comm.

A test acts as a person would, through the widgets (``Button.click()``,
setting a widget's value as the front end does) and steps the dashboard with
``refresh()`` (``autostart=False``) so that what it shows can be asserted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import ipywidgets as w
import pytest
from test_runtime_support import (  # noqa: F401
    FAST,
    HumanToy,
    kinds,
    live_before_each_start,
    runs_fixture,
    until,
)
from toy import ToyWorkload

from flashevolve_nb.demo import DemoConfig
from flashevolve_nb.engine import Decision, Origin, Pipeline, PipelineConfig, StageContext, WorkItem
from flashevolve_nb.engine.events import (
    ControllerAction,
    GateResult,
    HumanSubmitted,
    ItemStarted,
    PolicyDecision,
    StageControl,
    ValidationDone,
)
from flashevolve_nb.runtime import Run, start
from flashevolve_nb.ui import Dashboard

SMALL = {"n_train": 30, "n_val": 20, "n_test": 20}


@pytest.fixture
def dashboards() -> Iterator[list[Dashboard]]:
    made: list[Dashboard] = []
    yield made
    for d in made:
        d.close()


def board(run: Run, dashboards: list[Dashboard]) -> Dashboard:
    d = run.dashboard(autostart=False)
    dashboards.append(d)
    return d


def toy(runs: list[Run], wl: ToyWorkload | None = None, **config: Any) -> Run:
    run = start(Pipeline(wl or ToyWorkload(durations=dict(FAST)), PipelineConfig(**config)))
    runs.append(run)
    return run


def html_values(widget: Any) -> list[str]:
    """The text of every HTML widget in the tree, as it would reach the browser."""
    found = []
    if isinstance(widget, w.HTML | w.HTMLMath):
        found.append(widget.value)
    for child in getattr(widget, "children", ()):
        found += html_values(child)
    return found


def test_a_stage_pause_button_stops_that_stage_only_and_resume_continues(
    runs: list[Run], dashboards: list[Dashboard]
) -> None:
    run = toy(runs, depth=40)
    dash = board(run, dashboards)
    until(lambda: run.snapshot().stats.accepted >= 1, "a first admission")
    row = dash.stages.rows["b"]
    row.pause.click()
    assert "paused" in row.status.value
    paused_at = next(
        i for i, e in enumerate(run.events_since(0).events)
        if isinstance(e, StageControl) and e.stage == "b" and e.action == "pause"
    )  # fmt: skip

    def started_after(stage: str) -> int:
        ev = run.events_since(paused_at).events
        return sum(1 for e in ev if isinstance(e, ItemStarted) and e.stage == stage)

    until(lambda: started_after("a") >= 10, "stage a to keep taking items")
    until(lambda: run.snapshot().stage("b").queued >= 5, "items to wait before b")
    assert started_after("b") == 0
    dash.refresh()
    assert row.pause.description == "resume"
    shown = re.search(r"queue <b>\s*(\d+)</b>", row.stats.value)
    assert shown and int(shown.group(1)) >= 5  # b's queue only grows while it is paused
    row.pause.click()
    assert "resumed" in row.status.value
    until(lambda: started_after("b") > 0, "b to take items again")
    dash.refresh()
    assert row.pause.description == "pause"


def test_an_edit_in_the_editor_becomes_a_human_proposal_that_reaches_validation(
    runs: list[Run], dashboards: list[Dashboard]
) -> None:
    run = start(DemoConfig(minutes=60, time_scale=300, **SMALL))
    runs.append(run)
    dash = board(run, dashboards)
    until(lambda: run.snapshot().pool.entries, "the seed to be admitted")
    seed = run.snapshot().pool.entries[0].artifact
    dash.show("editor")
    dash.refresh()
    ed = dash.editor
    assert f"pool:{seed.id}" in [v for _, v in ed.source.options]
    ed.source.value = f"pool:{seed.id}"  # as the front end sets it when a person picks
    assert ed.text.value == seed["system_prompt"]
    ed.text.value = seed["system_prompt"] + (
        "\nEnd every answer with the word DONE.\nWrap the final answer in <answer></answer> tags."
        "\nDo not use any commas in your answer.\nNever write an exclamation mark."
        "\nNumbers must be written as digits.\nInclude a postscript starting with P.S.\n"
    )
    ed.submit.click()
    mine = ed.last_submitted
    assert mine is not None, ed.status.value
    assert mine.origin == Origin.HUMAN and mine.parents == (seed.id,)
    assert "submitted" in ed.status.value
    sub = kinds(run, HumanSubmitted)
    assert [(e.artifact_id, e.parent_id) for e in sub] == [(mine.id, seed.id)]
    until(
        lambda: any(e.artifact_id == mine.id for e in kinds(run, ValidationDone)),
        "the edit to be validated",
        limit=60,
    )
    assert [e.passed for e in kinds(run, GateResult) if e.artifact_id == mine.id] == [True]


def test_knob_changes_show_up_in_events_and_take_effect(
    runs: list[Run], dashboards: list[Dashboard]
) -> None:
    run = toy(runs, depth=6)
    dash = board(run, dashboards)
    until(lambda: run.snapshot().stats.stale_seen >= 3, "stale items")
    dash.show("controls")
    dash.refresh()
    knobs = dash.controls
    assert knobs.depth.value == 6 and knobs.policy.value == "accept"

    knobs.policy.value = "discard"  # a person picks another policy
    knobs.depth.value = 1
    controls = [(e.action, e.value, e.source) for e in kinds(run, StageControl)]
    assert ("policy", "discard", "user") in controls and ("depth", "1", "user") in controls
    events = run.events_since(0).events
    switched = next(
        i for i, e in enumerate(events) if isinstance(e, StageControl) and e.action == "policy"
    )
    until(
        lambda: any(isinstance(e, PolicyDecision) for e in run.events_since(switched).events),
        "a decision under the new policy",
    )
    after = [e for e in run.events_since(switched).events if isinstance(e, PolicyDecision)]
    assert {e.policy for e in after} == {"discard"} and {e.decision for e in after} == {"discard"}

    deepened = next(
        i for i, e in enumerate(run.events_since(0).events)
        if isinstance(e, StageControl) and e.action == "depth"
    )  # fmt: skip
    until(lambda: run.snapshot().pipeline.steps_in_flight <= 1, "in-flight steps to drain to 1")
    until(
        lambda: sum(
            1 for i, _ in live_before_each_start(run.events_since(0).events) if i > deepened
        ) >= 5,
        "new steps under depth 1",
    )  # fmt: skip
    starts = [(i, live) for i, live in live_before_each_start(run.events_since(0).events)]
    assert all(live == 0 for i, live in starts if i > deepened)  # one step at a time

    # A change made in code shows in the knob, and showing it is not taken for a request.
    run.set_depth(3)
    n = len(kinds(run, StageControl))
    dash.refresh()
    assert knobs.depth.value == 3 and knobs.policy.value == "discard"
    assert len(kinds(run, StageControl)) == n


class ScriptPolicy:
    """A staleness policy whose "LLM" answers with markup and patches in a script."""

    name = "script"

    async def decide(
        self, item: WorkItem, staleness: int, point: str, ctx: StageContext
    ) -> Decision:
        if item.artifact.origin != Origin.PROPOSAL:
            return Decision("accept", "not a proposal: used as is")
        patched = item.artifact.derive(
            ctx.new_id("a"),
            {"text": "<script>alert('patched')</script><b>bold</b>"},
            origin=Origin.REPAIR,
            base_version=ctx.pool.version,
            created_at=ctx.now(),
        )
        return Decision(
            "patch",
            "the model says <script>alert('reason')</script>",
            replacement=item.evolve(artifact=patched, base_version=ctx.pool.version),
            history_ids=tuple(e.artifact.id for e in ctx.pool.since(item.base_version)),
            request="<script>alert('request')</script>",
            answer="<img src=x onerror=alert(1)><script>alert('answer')</script>",
        )


def test_llm_text_with_markup_is_shown_escaped_everywhere(
    runs: list[Run], dashboards: list[Dashboard]
) -> None:
    run = toy(runs, HumanToy(durations=dict(FAST)), depth=4)
    dash = board(run, dashboards)
    until(lambda: run.snapshot().stats.accepted >= 1, "a first admission")
    mine = run.submit("<script>alert('human')</script> & more")
    run.set_policy(ScriptPolicy())  # type: ignore[arg-type]
    until(lambda: kinds(run, PolicyDecision), "a patch by the script policy")
    until(lambda: mine.id in {e.artifact.id for e in run.snapshot().pool.entries}, "the admission")
    run.pause()
    for tab in ("pipeline", "staleness", "pool", "editor", "controls", "events"):
        dash.show(tab)
        dash.refresh()
    dash.show("staleness")
    patch = next(key for label, key in dash.staleness.table.options if label.endswith(": patch"))
    dash.staleness.table.value = patch  # a person selects a row
    dash.refresh()
    detail = dash.staleness.detail.value
    assert "&lt;script&gt;alert(&#x27;answer&#x27;)&lt;/script&gt;" in detail
    assert "&lt;img src=x onerror=alert(1)&gt;" in detail
    assert "&lt;script&gt;alert(&#x27;patched&#x27;)" in detail  # the repair diff
    dash.show("pool")
    dash.refresh()
    assert (
        "&lt;script&gt;alert(&#x27;human&#x27;)&lt;/script&gt; &amp; more" in dash.pool.best.value
    )
    dash.show("events")
    dash.log.search.value = "model says"
    dash.refresh()
    assert "&lt;script&gt;alert(&#x27;reason&#x27;)" in dash.log.lines.value
    dash.show("editor")
    dash.refresh()
    dash.editor.source.value = f"pool:{mine.id}"
    assert dash.editor.text.value.startswith("<script>")  # a Textarea shows text as text
    for value in html_values(dash.widget):
        low = value.lower()
        assert "<script" not in low and "<img" not in low, value[:300]
    for trace in dash.pool.lineage.data:
        assert all("<" not in t for t in (trace.text or ()))


def test_errors_in_the_pipeline_show_in_the_dashboard(
    runs: list[Run], dashboards: list[Dashboard]
) -> None:
    wl = ToyWorkload(durations=dict(FAST), fail_when=lambda s, item: s == "c" and item.step == 2)
    run = toy(runs, wl, depth=2)
    dash = board(run, dashboards)
    until(lambda: run.snapshot().errors, "the item failure")
    dash.refresh()
    assert "boom in c at step 2" in dash.header.problems.value

    class Broken(ToyWorkload):
        def begin_step(self, step, item_id, pool, rng, now):  # type: ignore[no-untyped-def]
            raise ValueError("<b>no</b> more steps")

    bad = toy(runs, Broken(durations=dict(FAST)))
    bad_dash = board(bad, dashboards)
    until(lambda: bad.done, "the run to fail")
    bad_dash.refresh()
    assert "the run failed" in bad_dash.header.problems.value
    assert "&lt;b&gt;no&lt;/b&gt; more steps" in bad_dash.header.problems.value
    assert "failed" in bad_dash.header.figures.value
    assert bad_dash.header.stop_cancel.disabled


def test_the_refresher_thread_follows_the_run_and_stops_when_it_ends(
    runs: list[Run], dashboards: list[Dashboard]
) -> None:
    run = toy(runs, ToyWorkload(durations=dict(FAST), max_steps=60), depth=3)
    dash = run.dashboard(interval=0.05)
    dashboards.append(dash)
    built = dash.refreshes  # the first refresh is the dashboard's own, before display
    run.wait(timeout=60)
    assert dash._thread is not None
    dash._thread.join(timeout=30)
    assert not dash._thread.is_alive()
    assert dash.refreshes > built
    assert "finished" in dash.header.figures.value  # its last refresh showed the end
    # After the end a person's action redraws at once, in the caller's thread.
    dash.show("pool")
    assert "in the pool" in dash.pool.best.value


def test_controller_knobs_tune_the_live_controller_and_are_recorded(
    runs: list[Run], dashboards: list[Dashboard]
) -> None:
    config = DemoConfig(minutes=60, time_scale=300, controller="adaptive", **SMALL)
    run = start(config)
    runs.append(run)
    dash = board(run, dashboards)
    until(lambda: run.snapshot().state == "running", "the run to start")
    dash.show("controls")
    dash.refresh()
    c = dash.controls
    assert c.controller_on is not None and c.controller_on.value is True
    assert c.knobs["interval"].value == run.controller.params.interval
    c.knobs["interval"].value = 7.5  # as the front end sets it
    assert run.controller.params.interval == 7.5
    low = c.bounds["propose"][0].value
    c.bounds["propose"][1].value = low + 2
    assert run.controller.params.bounds["propose"] == (low, low + 2)
    c.controller_on.value = False
    assert run.controller.enabled is False
    actions = [(e.action, e.source) for e in kinds(run, ControllerAction)]
    assert actions.count(("tune", "user")) == 2 and ("disable", "user") in actions
    n = len(kinds(run, ControllerAction))
    dash.refresh()  # showing the new values is not taken for new requests
    assert len(kinds(run, ControllerAction)) == n
    assert c.knobs["interval"].value == 7.5 and c.controller_on.value is False


def test_the_stale_list_holds_still_once_a_row_is_picked(
    runs: list[Run], dashboards: list[Dashboard]
) -> None:
    # A Select syncs its choice by position: rows arriving on top while a person
    # clicks would shift what they picked. Picking a row freezes the list.
    run = toy(runs, depth=6)
    dash = board(run, dashboards)
    dash.show("staleness")
    until(lambda: run.snapshot().stats.stale_seen >= 5, "stale items")
    dash.refresh()
    view = dash.staleness
    rows = view.table.options
    picked = rows[2][1]
    view.table.value = picked
    assert view.follow.value is False
    seen = run.snapshot().stats.stale_seen
    until(lambda: run.snapshot().stats.stale_seen > seen + 5, "more stale items")
    dash.refresh()
    assert view.table.options == rows and view.table.value == picked
    assert f"step {rows[2][0].split('step ')[1].split(' ')[0]}," in view.detail.value
    view.follow.value = True
    dash.refresh()
    assert len(view.table.options) > len(rows) and view.table.value == picked
