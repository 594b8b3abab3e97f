"""A damaged write-ahead log is found out, and the run it holds is refused, untouched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from toy import ToyWorkload

from flashevolve_nb import open_run
from flashevolve_nb.engine import Budget, Pipeline, PipelineConfig
from flashevolve_nb.store import CorruptRunDir, attach
from flashevolve_nb.store.schema import DB_NAME

ROOT = Path(__file__).resolve().parents[1]

KILLED_RUN = """
import asyncio, os, sys
from toy import ToyWorkload
from flashevolve_nb.clock import Clock
from flashevolve_nb.engine import Budget, Pipeline, PipelineConfig
from flashevolve_nb.engine.events import Admitted
from flashevolve_nb.store import attach

p = Pipeline(ToyWorkload(), PipelineConfig(depth=3, budget=Budget(max_sim_seconds=200_000)),
             clock=Clock(5000.0))
attach(p, sys.argv[1])

def kill(e):
    if isinstance(e, Admitted):
        print("durable", e.version, flush=True)
        if e.version >= 6:
            os._exit(0)  # as a SIGKILL: no checkpoint, the WAL stays as it is

p.bus.subscribe(kill)
asyncio.run(p.run())
"""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_damaged_wal_is_refused_on_resume_and_left_untouched(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_RUN), str(run_dir)],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "durable 6" in r.stdout
    wal = run_dir / (DB_NAME + "-wal")
    size = wal.stat().st_size
    assert size > 20_000, "the killed run left its commits in the WAL"
    with open(wal, "r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(4096))
    kept = {p.name: digest(p) for p in (run_dir / DB_NAME, wal)}

    for resume in (True, False):
        with pytest.raises(
            CorruptRunDir, match=r"version 6 were committed.*write-ahead log.*damaged"
        ):
            attach(Pipeline(ToyWorkload(), PipelineConfig(budget=Budget(max_sim_seconds=9))),
                   run_dir, resume=resume)  # fmt: skip
    with pytest.raises(CorruptRunDir, match="write-ahead log"):
        open_run(run_dir)
    assert {p.name: digest(p) for p in (run_dir / DB_NAME, wal)} == kept
