"""A headless run from the command line with a config file, then its results read back.

The run itself is the CLI, exactly as on a server or in a batch job::

    python3 -m flashevolve_nb run --config examples/headless.toml --run-dir runs/demo

It records everything in the run directory (SQLite) and prints a line per
admission once it is durable; after a crash, ``--resume`` goes on. This
script runs that command, then opens the run directory with
``flashevolve_nb.open_run``, prints a summary and writes the plots as HTML
files beside the run. Everything here runs on the simulator: results are
simulated.

    python3 examples/headless_run.py                       # a fresh temporary run dir
    python3 examples/headless_run.py --run-dir runs/demo --config my.toml
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import flashevolve_nb
from flashevolve_nb import plots

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=HERE / "headless.toml")
    ap.add_argument("--run-dir", type=Path, default=None, help="default: a new temporary folder")
    args = ap.parse_args(argv)
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="flashevolve-headless-")) / "run"

    cmd = [sys.executable, "-m", "flashevolve_nb", "run", "--quiet"]
    cmd += ["--config", str(args.config), "--run-dir", str(run_dir)]
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, check=False)
    if done.returncode != 0:
        print(f"the run failed (exit status {done.returncode}); see its output above")
        return done.returncode

    with flashevolve_nb.open_run(run_dir) as stored:
        result = stored.result()
        events = stored.events_frame()
    s = result.stats
    print(
        f"read back from {run_dir}: simulated run, {s.proposals} proposals, {s.accepted} "
        f"accepted, best {result.best_score:.3f} in {s.minutes:.1f} simulated minutes"
    )
    print(plots.rates({"headless": events}).to_string(index=False))
    for name, fig in (
        ("score_over_time", plots.score_over_time({"headless": events})),
        ("stage_timeline", plots.stage_timeline(events)),
    ):
        path = run_dir / f"{name}.html"
        fig.write_html(path, include_plotlyjs="cdn")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
