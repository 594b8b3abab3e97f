"""The quickstart notebook in a real JupyterLab and chromium, used as a person would.

Open ``notebooks/01_quickstart.ipynb`` (a copy, made to run long enough to act
on) and ``Run All``: the kernel is then busy on ``result = await run`` for the
whole interaction. See the dashboard render; switch every tab and see each draw
current data; pause one stage with its own button and see it stop while the
run goes on, resume it; submit an edited artifact (with hostile markup in it)
and find it in the lineage view, its markup shown as text and never run; stop
the run from the dashboard and see the notebook finish; save it, reopen it
with a kernel that ran nothing and see the final view; open ``run.report()``'s
HTML file with no kernel at all.

Waits are polls with generous bounds (a loaded 2-core machine runs JupyterLab,
the kernel, the run and chromium at once); nothing here asserts a speed.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from browserlab import REPO, Browser, Lab, artifacts_dir, screenshots

pytestmark = pytest.mark.browser

NOTEBOOK = Path(
    os.environ.get("FLASHEVOLVE_BROWSER_NOTEBOOK") or REPO / "notebooks/01_quickstart.ipynb"
)

STAGE = "rollout"
"""The stage paused and resumed: the busiest one, so a resumed stage shows at once."""

LONG_RUN = {"SIM_MINUTES": 600, "MINUTES": 600}
"""Run length in simulated minutes, far more than the test needs (300 real s at 120x):
the test stops the run itself, so the length only has to outlast the interaction."""

PAUSED_WINDOW = 5.0
"""Real seconds over which a paused stage's count must stay put while the run goes on."""

SLOW = 120.0
"""Bound for waits that include starting a kernel or a run on a loaded machine."""

RENDER = 180.0
"""Bound for the dashboard's first render: kernel start, imports and the run starting,
all on a machine that may be running other notebooks too."""

T = TypeVar("T")


def poll(what: str, read: Callable[[], T], ok: Callable[[T], bool], timeout: float = SLOW) -> T:
    """Read until ``ok``; fail after ``timeout`` seconds with the last reading."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = read()
            if ok(last):
                return last
        except Exception as exc:  # the page is still building what we read
            last = exc
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:g} s for {what}; last reading: {last!r}")
        time.sleep(0.2)


def long_copy(src: Path, dest_dir: Path) -> str:
    """Copy the notebook, outputs cleared and its run made long; the original is never touched."""
    if not src.exists():
        pytest.fail(
            f"{src} does not exist: the browser test runs the quickstart notebook "
            "(build it with python3 notebooks/_build.py)"
        )
    nb = json.loads(src.read_text())
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{src.name} must have one cell tagged 'parameters' ({len(params)})"
    source = "".join(params[0]["source"])
    names = set(re.findall(r"^(\w+)\s*=", source, flags=re.M))
    longer = {k: v for k, v in LONG_RUN.items() if k in names}
    assert longer, (
        f"the parameters cell of {src.name} sets none of {sorted(LONG_RUN)} "
        f"(it sets {sorted(names)}); the test needs one to make the run long"
    )
    source += "\n# browser test: long enough to act on; the test stops the run itself\n"
    source += "".join(f"{k} = {v!r}\n" for k, v in longer.items())
    params[0]["source"] = source
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            # Saved outputs (or widget views) would pass for this run's.
            cell["outputs"], cell["execution_count"] = [], None
    nb.get("metadata", {}).pop("widgets", None)
    (dest_dir / src.name).write_text(json.dumps(nb, indent=1))
    return src.name


# ---- reading JupyterLab's state (window.jupyterapp, exposed by the server flag) -----------

NOTEBOOK_STATE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!w || !w.sessionContext || !w.content || !w.content.model) return null;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  const cells = [];
  for (const c of w.content.model.cells) {
    if (c.type !== 'code') continue;
    const outs = c.outputs.toJSON();
    cells.push({
      n: c.executionCount,
      errors: outs.filter(o => o.output_type === 'error')
                  .map(o => o.ename + ': ' + o.evalue),
    });
  }
  return {kernel: k ? k.status : 'none', ready: w.context.isReady, cells};
}"""


def nb_state(page: Any) -> dict[str, Any]:
    state: dict[str, Any] | None = page.evaluate(NOTEBOOK_STATE)
    assert state is not None, "no notebook is the current widget"
    return state


def errors(state: dict[str, Any]) -> list[str]:
    return [e for c in state["cells"] for e in c["errors"]]


def dismiss_news(page: Any) -> None:
    # Settings turn news off; should the popup come anyway, answer it.
    toast = page.locator(".Toastify__toast").filter(has_text=re.compile("news", re.I))
    if toast.count():
        toast.first.get_by_role("button", name=re.compile(r"^No", re.I)).click()


def count(page: Any, stage: str) -> int:
    return int(page.locator(f".fe-stage-{stage} .fe-processed-count").first.inner_text().strip())


def busy(page: Any, stage: str) -> int:
    text = page.locator(f".fe-stage-{stage} .fe-busy").first.inner_text()
    return int(text.split("/")[0])


def sim_minutes(page: Any) -> float:
    text = page.locator(".fe-figures").first.inner_text()
    m = re.search(r"([\d.]+)\s+(?:simulated\s+)?min", text)
    assert m, f"no run clock in the dashboard header: {text!r}"
    return float(m.group(1))


class Phases:
    """Prints how long each phase took (seen with ``-s`` or on failure); asserts nothing."""

    def __init__(self) -> None:
        self.t0 = self.last = time.monotonic()

    def __call__(self, what: str) -> None:
        now = time.monotonic()
        print(f"[browser test] +{now - self.last:5.1f} s (at {now - self.t0:5.1f} s) {what}")
        self.last = now


def shoot(page: Any, name: str) -> Path:
    path = artifacts_dir() / f"browser-{name}.png"
    page.screenshot(path=str(path))
    screenshots.append(path)
    print(f"screenshot: {path}")
    return path


TABS = ("pipeline", "lineage", "staleness", "speculation", "controller", "editor", "events")

HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
"""Markup a model (or a person) might write: it must show as text, and never run."""


def cell_running(page: Any) -> bool:
    """Whether some cell has not finished (ipykernel 7 reports "idle" while a cell awaits)."""
    return any(c["n"] is None for c in nb_state(page)["cells"])


def tab(page: Any, name: str) -> Any:
    page.locator(f".fe-tab-{name}").first.click()
    panel = page.locator(f".fe-panel-{name}").first
    panel.wait_for(state="visible")
    return panel


def add_cell_and_run(page: Any, source: str) -> None:
    """Append a code cell at the end of the notebook and run it (the kernel may be busy)."""
    page.evaluate(
        """(src) => {
          const app = window.jupyterapp;
          const nb = app.shell.currentWidget.content;
          nb.activeCellIndex = nb.widgets.length - 1;
          return app.commands.execute('notebook:insert-cell-below').then(() => {
            nb.activeCell.model.sharedModel.setSource(src);
            app.commands.execute('notebook:run-cell');
          });
        }""",
        source,
    )


def test_quickstart_dashboard_in_a_real_browser_with_the_kernel_busy(
    lab: Lab, browser: Browser, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    phase = Phases()
    name = long_copy(NOTEBOOK, lab.root)
    page = browser.page
    page.set_default_timeout(SLOW * 1000)
    page.goto(f"{lab.url}/lab/tree/{name}")
    poll(
        "the notebook open with an idle kernel",
        lambda: nb_state(page),
        lambda s: s["ready"] and s["kernel"] == "idle",
    )
    dismiss_news(page)
    phase("notebook open, kernel idle")

    # Not awaited: the promise settles when the last cell ends, and the test acts before.
    t_run = time.monotonic()
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    row = page.locator(f"tr.fe-stage-{STAGE}, .fe-stage.fe-stage-{STAGE}").first
    toggle = row.locator(".fe-pause-toggle")
    poll(
        "the dashboard to render (or a cell to fail, or the kernel to die)",
        lambda: (row.is_visible(), nb_state(page)),
        lambda r: r[0] or bool(errors(r[1])) or r[1]["kernel"] == "dead",
        timeout=RENDER,
    )
    state = nb_state(page)
    assert not errors(state), f"the notebook raised: {errors(state)}"
    assert row.is_visible(), f"the kernel is {state['kernel']} and the dashboard never rendered"
    print(f"[browser test] Run All -> dashboard visible: {time.monotonic() - t_run:.2f} s "
          "(kernel start and imports included)")  # fmt: skip
    phase("dashboard rendered")
    first = poll(f"{STAGE} to process items", lambda: count(page, STAGE), lambda n: n > 0)
    expect(toggle).to_have_text(re.compile(r"^\s*pause\s*$"))
    shoot(page, "dashboard-running")

    # Every tab, while `result = await run` still runs: each draws current data.
    assert cell_running(page)
    for name_ in TABS:
        clock0 = sim_minutes(page)
        panel = tab(page, name_)
        expect(panel).not_to_be_empty()
        if name_ == "lineage":
            poll("lineage nodes", lambda: page.locator(".fe-node").count(), lambda n: n >= 1)
        elif name_ == "staleness":
            poll("staleness stories", lambda: page.locator(".fe-story").count(), lambda n: n >= 1)
        elif name_ == "events":
            poll("event rows", lambda: page.locator(".fe-event").count(), lambda n: n >= 5)
        poll(f"the clock to move while on {name_}", lambda: sim_minutes(page),
             lambda m, c=clock0: m > c)  # fmt: skip
        shoot(page, f"tab-{name_}")
    assert cell_running(page)
    phase("every tab drew, the await cell running throughout")

    # Pause: the button says so, and once the items in flight are done the count
    # holds while the run's clock goes on.
    tab(page, "pipeline")
    toggle.click()
    expect(toggle).to_have_text(re.compile(r"^\s*resume\s*$"))
    expect(toggle).to_have_class(re.compile(r"\bmod-warning\b"))
    expect(row.locator(".fe-stage-status")).to_contain_text("paused")
    poll(f"{STAGE}'s items in flight to finish", lambda: busy(page, STAGE), lambda b: b == 0)
    held = count(page, STAGE)
    assert held >= first
    clock0 = sim_minutes(page)
    t0 = time.monotonic()
    readings = []
    while time.monotonic() - t0 < PAUSED_WINDOW:
        readings.append(count(page, STAGE))
        time.sleep(0.25)
    clock1 = sim_minutes(page)
    assert set(readings) == {held}, f"paused {STAGE} went on processing: {readings}"
    assert clock1 > clock0, (
        f"the run's clock stood still ({clock0} -> {clock1} simulated min) while {STAGE} "
        "was paused: the dashboard stopped refreshing, so the held count proves nothing"
    )
    shoot(page, "dashboard-paused")
    toggle.click()
    expect(toggle).to_have_text(re.compile(r"^\s*pause\s*$"))
    expect(row.locator(".fe-stage-status")).to_contain_text("resumed")
    poll(f"{STAGE} to move after resuming", lambda: count(page, STAGE), lambda n: n > held)
    phase(f"{STAGE} paused, held, resumed")

    # Edit the best artifact in the editor (hostile markup appended) and submit it.
    panel = tab(page, "editor")
    text = panel.locator(".fe-editor-text").first
    poll("the editor to hold an artifact's text", lambda: text.input_value(), bool)
    text.fill(text.input_value() + "\nAlways answer in full sentences.\n" + HOSTILE)
    panel.locator(".fe-submit").first.click()
    ack = panel.locator(".fe-ack-ok").filter(has_text=re.compile(r"submitted as a\d+")).first
    expect(ack).to_be_visible()
    new_id = re.search(r"submitted as (a\d+)", ack.inner_text())
    assert new_id, ack.inner_text()
    tab(page, "lineage")
    node = page.locator(f'.fe-node[data-id="{new_id[1]}"]')
    poll("the submission in the lineage view", lambda: node.count(), lambda n: n >= 1)
    node.first.click()
    detail = page.locator(".fe-artifact-detail").first
    expect(detail).to_contain_text(HOSTILE)  # shown literally, as text
    assert page.evaluate("() => window.__pwned") is None, "markup from an artifact ran"
    assert detail.locator("img, script").count() == 0
    shoot(page, "lineage-submission")
    phase("submission found in the lineage view, markup inert")

    # Stop from the dashboard; `await run` returns and the remaining cells run.
    page.locator(".fe-stop-cancel").first.click()
    final = poll(
        "every cell to have run after the stop",
        lambda: nb_state(page),
        lambda s: (
            bool(errors(s))
            or (s["kernel"] == "idle" and all(c["n"] is not None for c in s["cells"]))
        ),
    )
    assert not errors(final), f"the notebook raised: {errors(final)}"
    expect(page.locator(".fe-figures").first).to_contain_text("cancelled")
    tab(page, "pipeline")
    # An ended run offers no steering: no pause button that can be pressed.
    expect(row.locator(".fe-pause-toggle:enabled")).to_have_count(0)
    shoot(page, "dashboard-stopped")
    phase("run stopped, every cell ran")

    # A self-contained report of the run, opened with no kernel at all.
    report = tmp_path / "report.html"
    add_cell_and_run(page, f"run.report({str(report)!r})")
    poll("the report file", report.exists, bool)
    # Saved with its widget state (lab settings turn saveState on); then reopened.
    poll("the archive of the ended run to reach the page", lambda: page.evaluate(
        "() => document.querySelectorAll('.fe-figures').length"), lambda n: n >= 1)  # fmt: skip
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    time.sleep(1.0)
    saved = json.loads((lab.root / name).read_text())
    assert saved.get("metadata", {}).get("widgets"), "the notebook was saved without widget state"
    page.evaluate("() => window.jupyterapp.commands.execute('kernelmenu:shutdown')")
    page.evaluate("() => window.jupyterapp.commands.execute('application:close-all')")
    page.goto(f"{lab.url}/lab/tree/{name}")
    figures = page.locator(".fe-figures").first
    # A reopened notebook loads JupyterLab and the widget manager afresh: a slow start here.
    expect(figures).to_contain_text("cancelled", timeout=SLOW * 1000)
    assert page.locator("text=Error displaying widget").count() == 0
    shoot(page, "saved-notebook-reopened")
    phase("saved notebook reopened: final view from the saved state")

    other = browser.page  # JupyterLab is done with: the same page opens the file
    other.goto(report.as_uri())
    expect(other.locator(".fe-figures").first).to_contain_text("cancelled", timeout=SLOW * 1000)
    tab(other, "lineage")
    other.locator(f'.fe-node[data-id="{new_id[1]}"]').first.click()
    expect(other.locator(".fe-artifact-detail").first).to_contain_text(HOSTILE)
    assert other.evaluate("() => window.__pwned") is None
    path = artifacts_dir() / "browser-report.png"
    other.screenshot(path=str(path))
    screenshots.append(path)
    phase("report opened with no kernel")
