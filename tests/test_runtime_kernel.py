"""In a real Jupyter kernel (ipykernel, driven by nbclient): what a notebook user sees.

A run started in one cell goes on while a later cell blocks, and the
dashboard's widget updates reach the front end during that blocking cell
(they are sent from the refresher thread, not from the kernel's loop).
``await run`` works in a cell; the inline mode's blocking ``wait()`` works on
the kernel's own loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]

CELLS = [
    f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
    "import threading, time, flashevolve_nb\n"
    "run = flashevolve_nb.start(minutes=600, time_scale=300, n_train=20, n_val=10, n_test=10)\n"
    "dash = run.dashboard()\n"
    "dash",
    "before = run.snapshot().events\n"
    "time.sleep(1.5)  # a cell that blocks the kernel\n"
    "print('events during the blocking cell:', run.snapshot().events - before)",
    "run.stop('drain')\nresult = await run\nprint('awaited:', run.state, result.stats.accepted)",
    "inline = flashevolve_nb.start(minutes=2, time_scale=600, n_train=20, n_val=10, n_test=10,\n"
    "                              inline=True)\n"
    "r = inline.wait(timeout=120)\n"
    "print('inline:', inline.state, inline._host.thread is threading.main_thread())",
]


class Recording(NotebookClient):  # type: ignore[misc]
    """Notes which cell was running when each widget update arrived."""

    comm_cells: list[int]

    def handle_comm_msg(self, outs: Any, msg: dict[str, Any], cell_index: int) -> None:
        self.comm_cells.append(cell_index)
        super().handle_comm_msg(outs, msg, cell_index)


def test_a_run_and_its_dashboard_live_on_while_a_cell_blocks_in_a_real_kernel() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    client = Recording(nb, timeout=180, kernel_name="python3", store_widget_state=True)
    client.comm_cells = []
    client.execute(cwd=str(ROOT))
    outputs = [[o for o in c.get("outputs", [])] for c in nb.cells]
    errors = [o for outs in outputs for o in outs if o.output_type == "error"]
    assert not errors, errors
    # The dashboard displays as a widget view.
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs[0])
    text = ["".join(o.text for o in outs if o.output_type == "stream") for outs in outputs]
    during = int(text[1].split(":")[1])
    assert during > 0  # the run went on while the cell blocked
    assert client.comm_cells.count(1) > 0  # and the dashboard's updates went out meanwhile
    assert text[2].startswith("awaited: finished")
    assert text[3].strip() == "inline: finished True"
