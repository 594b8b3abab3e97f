"""The code stays ruff- and mypy-clean, and importing it pulls in no Jupyter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    r = run(sys.executable, "-m", "ruff", "check", "flashevolve_nb", "tests")
    assert r.returncode == 0, r.stdout + r.stderr
    r = run(sys.executable, "-m", "ruff", "format", "--check", "flashevolve_nb", "tests")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict_is_clean() -> None:
    r = run(sys.executable, "-m", "mypy", "flashevolve_nb")
    assert r.returncode == 0, r.stdout + r.stderr


def test_import_pulls_in_no_jupyter_module() -> None:
    code = (
        "import json, sys, flashevolve_nb, flashevolve_nb.engine, flashevolve_nb.sim, "
        "flashevolve_nb.workloads.gepa, flashevolve_nb.cli\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    r = run(sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    modules = json.loads(r.stdout)
    jupyter = [
        m
        for m in modules
        if m.split(".")[0]
        in {
            "IPython",
            "ipykernel",
            "ipywidgets",
            "jupyter_client",
            "jupyterlab",
            "nbformat",
            "plotly",
            "anywidget",
            "traitlets",
            "nest_asyncio",
            "nest_asyncio2",
        }
    ]
    assert jupyter == []
