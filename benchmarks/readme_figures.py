"""Regenerate README's figures for ``examples/port_from_gepa.py`` (section "Bring your own
gepa adapter"), so the paragraph there always comes from a command in the repository.

    python3 benchmarks/readme_figures.py              # 3 repetitions each, about 5 minutes
    python3 benchmarks/readme_figures.py --reps 1     # one of each, about 2 minutes

Runs the example with gepa's DefaultAdapter as is (one request at a time) and with an
adapter that sends ten at once, ``--reps`` times each on the real clock (timing jitter
changes which request finishes first, so figures move between runs), and prints the
median and range of every figure README quotes, with the load average, ready to paste.
Rerun it whenever the defaults of the engine, the controller or the simulator change.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "port_from_gepa.py"


def run_example(threads: int, equal_time: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="readme-figures-") as tmp:
        out = Path(tmp) / "figures.json"
        cmd = [sys.executable, str(EXAMPLE), "--threads", str(threads), "--json", str(out)]
        if not equal_time:
            cmd.append("--no-equal-time")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        figures: dict[str, Any] = json.loads(out.read_text())
        return figures


def spread(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="runs of each configuration")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    plain = [run_example(1, equal_time=True) for _ in range(args.reps)]
    threaded = [run_example(10, equal_time=False) for _ in range(args.reps)]
    load_after = os.getloadavg()[0]

    def runs(figs: list[dict[str, Any]], i: int, key: str) -> list[float]:
        return [float(f["runs"][i][key]) for f in figs]

    print(
        f"`python3 examples/port_from_gepa.py` (800 metric calls, vllm profile, 300x, seed 0; "
        f"median (min-max) of {args.reps} run(s); "
        f"{datetime.date.today():%d %b %Y}, load average {load_before:.1f}-{load_after:.1f}):"
    )
    print(
        "- same budget, DefaultAdapter as is (one request at a time): "
        f"{spread([f['speedup'] for f in plain], '.1f')}x less wall time "
        f"(gepa {spread(runs(plain, 0, 'wall_seconds'), '.1f')} s, flashevolve "
        f"{spread(runs(plain, 1, 'wall_seconds'), '.1f')} s)"
    )
    print(
        "- same budget, an adapter that sends ten at once (`--threads 10`): "
        f"{spread([f['speedup'] for f in threaded], '.1f')}x less wall time"
    )
    print(
        "- best validation score at the same budget: gepa "
        f"{spread(runs(plain, 0, 'best_val'), '.3f')}, flashevolve "
        f"{spread(runs(plain, 1, 'best_val'), '.3f')}; held-out test: gepa "
        f"{spread(runs(plain, 0, 'best_test'), '.3f')}, flashevolve "
        f"{spread(runs(plain, 1, 'best_test'), '.3f')} (seed "
        f"{plain[0]['runs'][0]['seed_test']:.3f})"
    )
    print(
        "- given gepa's wall time instead: best validation "
        f"{spread(runs(plain, 2, 'best_val'), '.3f')}, held-out test "
        f"{spread(runs(plain, 2, 'best_test'), '.3f')}, "
        f"{spread(runs(plain, 2, 'metric_calls'), '.0f')} metric calls"
    )


if __name__ == "__main__":
    main()
