"""The quickstart notebook in a real JupyterLab and chromium, steered as a person would.

Open ``notebooks/01_quickstart.ipynb`` (a copy, made to run long enough to act
on), run every cell, see the dashboard render, pause one stage with its own
button and see it stop while the run goes on, resume it and see it move, stop
the run from the dashboard and see the notebook finish without an error.

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
    return int(page.locator(f".fe-stage-{stage} .fe-processed-count").inner_text().strip())


def busy(page: Any, stage: str) -> int:
    text = page.locator(f".fe-stage-{stage} .fe-busy").inner_text()
    return int(text.split("/")[0])


def sim_minutes(page: Any) -> float:
    text = page.locator(".fe-figures").inner_text()
    m = re.search(r"([\d.]+) (?:simulated )?min", text)
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


def test_quickstart_dashboard_pause_and_resume_a_stage_in_a_real_browser(
    lab: Lab, browser: Browser
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
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    row = page.locator(f".fe-stage-{STAGE}")
    toggle = row.locator(".fe-pause-toggle")
    # Most of this wait is the kernel: imports, and building the dashboard while the
    # run's thread competes for the GIL (the browser renders it in well under a second).
    poll(
        "the dashboard to render (or a cell to fail, or the kernel to die)",
        lambda: (row.is_visible(), nb_state(page)),
        lambda r: r[0] or bool(errors(r[1])) or r[1]["kernel"] == "dead",
        timeout=RENDER,
    )
    state = nb_state(page)
    assert not errors(state), f"the notebook raised: {errors(state)}"
    assert row.is_visible(), f"the kernel is {state['kernel']} and the dashboard never rendered"
    row.scroll_into_view_if_needed()
    # The live plot is a plotly FigureWidget (an anywidget): its subplot titles show
    # once its own state reached the page (once it stayed blank: keep this check).
    expect(page.locator(".fe-pipeline-plot")).to_contain_text("queue depth")
    phase("dashboard rendered")
    first = poll(f"{STAGE} to process items", lambda: count(page, STAGE), lambda n: n > 0)
    expect(toggle).to_have_text(re.compile(r"^\s*pause\s*$"))
    shoot(page, "dashboard-running")
    phase(f"{STAGE} processing")

    # Pause: the button says so, and once the items in flight are done the count
    # holds while the run's clock goes on.
    toggle.click()
    expect(toggle).to_have_text(re.compile(r"^\s*resume\s*$"))
    expect(toggle).to_have_class(re.compile(r"\bmod-warning\b"))
    expect(row.locator(".fe-stage-status")).to_have_text("paused")
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
    phase(f"{STAGE} paused and held")

    # Resume: the button says so and the count moves again.
    toggle.click()
    expect(toggle).to_have_text(re.compile(r"^\s*pause\s*$"))
    expect(row.locator(".fe-stage-status")).to_have_text("resumed")
    poll(f"{STAGE} to move after resuming", lambda: count(page, STAGE), lambda n: n > held)
    shoot(page, "dashboard-resumed")
    phase(f"{STAGE} resumed and moving")

    # Stop from the dashboard; `await run` returns and the remaining cells run.
    page.locator(".fe-stop-cancel").click()
    final = poll(
        "every cell to have run after the stop",
        lambda: nb_state(page),
        lambda s: (
            bool(errors(s))
            or (s["kernel"] == "idle" and all(c["n"] is not None for c in s["cells"]))
        ),
    )
    assert not errors(final), f"the notebook raised: {errors(final)}"
    expect(page.locator(".fe-figures")).to_contain_text(re.compile("cancelled|finished"))
    expect(toggle).to_be_disabled()
    shoot(page, "dashboard-stopped")
    phase("run stopped, every cell ran")
