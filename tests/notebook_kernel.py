"""Executing a notebook in a real Jupyter kernel of *this* interpreter, for the tests.

The kernel is pinned to ``sys.executable`` through a kernelspec written to a
temporary folder, so a stale user-level ``python3`` kernelspec pointing at
another Python cannot be picked up (in a fresh venv where only
``pip install -e .[test]`` ran, this is the venv's Python). The repository
root goes on the kernel's ``PYTHONPATH`` so the notebooks import this
checkout even when the package was installed from elsewhere.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "flashevolve-test"


def kernel_manager(folder: Path) -> KernelManager:
    spec_dir = folder / "kernels" / KERNEL
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"flashevolve tests ({sys.executable})",
        "language": "python",
        "env": {"PYTHONPATH": str(ROOT)},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    ksm = KernelSpecManager(kernel_dirs=[str(folder / "kernels")])
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=ksm)


def parameterised(name: str, **values: Any) -> nbformat.NotebookNode:
    """The notebook with ``values`` appended to its ``parameters`` cell."""
    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "".join(f"\n{k} = {v!r}" for k, v in values.items())
    return book


@dataclass
class Executed:
    """An executed notebook and what its cells put out."""

    book: nbformat.NotebookNode

    @property
    def code_cells(self) -> list[nbformat.NotebookNode]:
        return [c for c in self.book.cells if c.cell_type == "code"]

    def text(self, index: int | None = None) -> str:
        """Printed text (streams) of one code cell, or of all of them."""
        cells = self.code_cells if index is None else [self.code_cells[index]]
        return "".join(
            o.get("text", "") for c in cells for o in c.outputs if o.output_type == "stream"
        )

    def outputs(self, mime: str) -> list[Any]:
        """Every rich output of that MIME type, in order."""
        return [
            o["data"][mime]
            for c in self.code_cells
            for o in c.outputs
            if o.output_type in ("display_data", "execute_result") and mime in o.get("data", {})
        ]

    def errors(self) -> list[str]:
        return [
            f"{o.ename}: {o.evalue}"
            for c in self.code_cells
            for o in c.outputs
            if o.output_type == "error"
        ]


def execute(book: nbformat.NotebookNode, folder: Path, timeout: int = 300) -> Executed:
    client = NotebookClient(
        book,
        timeout=timeout,
        km=kernel_manager(folder),
        store_widget_state=True,
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    return Executed(book)
