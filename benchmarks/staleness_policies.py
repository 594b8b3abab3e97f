"""Staleness policies compared: best validation score at a fixed simulated time.

Runs the offline demo (GEPA on the simulated rulebook task, simulated vLLM
server, virtual clock so every run is exactly reproducible) for the
synchronous schedule and for the asynchronous pipeline under each staleness
policy, over several seeds, and prints the median and spread of the best
validation score (and the held-out test score of that best artifact).

    python3 benchmarks/staleness_policies.py              # 5 seeds, 30 simulated minutes
    python3 benchmarks/staleness_policies.py --lab        # staleness on purpose

A benchmark, not a test: it prints what it measures and asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace

from flashevolve_nb.cli.demo import run_demo
from flashevolve_nb.cli.table import format_table
from flashevolve_nb.demo import DemoConfig

SYSTEMS = ("sync", "accept", "guarded", "discard", "reflective", "meta")


def _spread(xs: list[float]) -> str:
    return f"{min(xs):.3f}-{max(xs):.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--minutes", type=float, default=30.0, help="simulated minutes per run")
    ap.add_argument("--profile", default="vllm", choices=["vllm", "api"])
    ap.add_argument("--lab", action="store_true", help="the demo's --staleness-lab setting")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    args = ap.parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    base = DemoConfig(profile=args.profile, minutes=args.minutes, staleness_lab=args.lab)
    rows = []
    t0 = time.perf_counter()
    for system in systems:
        vals, tests, accepted, stale, patched, rtok = [], [], [], [], [], []
        for seed in range(args.seeds):
            if system == "sync":
                cfg = replace(base, mode="sync", seed=seed)
            else:
                cfg = replace(base, mode="async", policy=system, seed=seed)
            o = run_demo(cfg, clock="virtual", progress=False)
            s = o.result.stats
            vals.append(s.best_score)
            tests.append(o.held_out.best if o.held_out else float("nan"))
            accepted.append(s.accepted)
            stale.append(s.stale_seen)
            patched.append(s.repaired_admitted)
            rtok.append(s.repair_tokens)
            print(
                f"  {system:>10} seed {seed}: best val {s.best_score:.3f}, "
                f"accepted {s.accepted}, stale {s.stale_seen}, decisions {s.decisions}",
                file=sys.stderr,
            )
        rows.append(
            [
                system,
                f"{statistics.median(vals):.3f}",
                _spread(vals),
                f"{statistics.median(tests):.3f}",
                _spread(tests),
                f"{statistics.median(accepted):.0f}",
                f"{statistics.median(stale):.0f}",
                f"{statistics.median(patched):.0f}",
                f"{statistics.median(rtok):,.0f}",
            ]
        )
    lab = ", staleness lab (depth 32, 2 validation workers)" if args.lab else ""
    print(
        f"Best validation score after {args.minutes:g} simulated minutes, simulated "
        f"'{args.profile}' server{lab}, seeds 0-{args.seeds - 1}, virtual clock "
        f"({time.perf_counter() - t0:.0f} s real)."
    )
    header = [
        "system", "val median", "val min-max", "test median", "test min-max",
        "accepted", "stale seen", "repairs admitted", "repair tokens",
    ]  # fmt: skip
    print(format_table(header, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
