"""Each workload, synchronous vs asynchronous, at equal simulated time; and ACE's rebase.

Workloads: GEPA (a system prompt), ACE (a playbook) and Meta-Harness (a
harness program, each candidate run in a sandboxed process).

Every workload that has a simulated demo (``start(workload=...)``) runs on the
offline simulator (simulated vLLM server) on the virtual clock, so each run is
exactly reproducible and its figures do not depend on how busy the machine
is. For each workload and seed: the synchronous schedule (one step at a time,
each stage waiting for all its requests) and the asynchronous pipeline (the
demo's defaults), with the same simulated-time budget. Printed: proposals per
simulated minute, the async/sync ratio, and the best validation score.

For ACE, the staleness policies ``accept`` and ``rebase`` are compared too: a
stale delta taken as it is, or replayed onto the newest playbook, where
bullets that repeat one added meanwhile are detected and skipped. Printed:
duplicates detected by rebasing, duplicate bullets left in the best playbook,
and the best score.

    python3 benchmarks/workloads.py                  # 3 seeds, 30 simulated minutes
    python3 benchmarks/workloads.py --seeds 5 --minutes 60

A benchmark, not a test: it prints what it measures and asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from flashevolve_nb.cli.table import format_table
from flashevolve_nb.clock import virtual_event_loop
from flashevolve_nb.demo import DemoConfig
from flashevolve_nb.runtime.launch import DEMOS, demo_builder


@dataclass(frozen=True)
class Outcome:
    proposals_per_min: float
    accepted: int
    seed_score: float
    best_score: float
    demo: Any


def run(workload: str, config: DemoConfig) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="flashevolve-bench-") as scratch:
        # Meta-Harness keeps every candidate in a folder: here, one that goes afterwards.
        extra = {"history_dir": scratch} if workload == "meta-harness" else {}
        demo = demo_builder(workload)(config, **extra)
        loop = virtual_event_loop()
        try:
            result = loop.run_until_complete(demo.run())
        finally:
            loop.close()
    s = result.stats
    return Outcome(s.proposals_per_min, s.accepted, s.seed_score, s.best_score, demo)


def _median(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"


def sync_vs_async(workloads: list[str], seeds: int, minutes: float) -> None:
    rows = []
    for w in workloads:
        sync_rate, async_rate, sync_best, async_best, ratios = [], [], [], [], []
        for seed in range(seeds):
            base = DemoConfig(seed=seed, minutes=minutes)
            s = run(w, replace(base, mode="sync"))
            a = run(w, replace(base, mode="async"))
            sync_rate.append(s.proposals_per_min)
            async_rate.append(a.proposals_per_min)
            ratios.append(a.proposals_per_min / s.proposals_per_min)
            sync_best.append(s.best_score)
            async_best.append(a.best_score)
            print(f"  {w} seed {seed}: sync {s.proposals_per_min:.2f}/min best "
                  f"{s.best_score:.3f}; async {a.proposals_per_min:.2f}/min best "
                  f"{a.best_score:.3f}", flush=True)  # fmt: skip
        rows.append([
            w, f"{statistics.median(sync_rate):.2f}", f"{statistics.median(async_rate):.2f}",
            f"{statistics.median(ratios):.2f}x", _median(sync_best), _median(async_best),
        ])  # fmt: skip
    print(f"\nSync vs async at {minutes:g} simulated minutes, {seeds} seed(s), median (range):")
    print(format_table(
        ["workload", "sync proposals/min", "async proposals/min", "async/sync",
         "sync best val", "async best val"], rows,
    ))  # fmt: skip


def _duplicates(playbook_text: str) -> int:
    from flashevolve_nb.workloads.ace.playbook import Playbook, normalise

    counts = Counter(normalise(b.content) for b in Playbook.parse(playbook_text))
    return sum(n - 1 for n in counts.values() if n > 1)


def ace_policies(seeds: int, minutes: float) -> None:
    rows = []
    for policy in ("accept", "rebase"):
        best, left, detected, rebased, accepted = [], [], [], [], []
        for seed in range(seeds):
            o = run("ace", DemoConfig(seed=seed, minutes=minutes, mode="async", policy=policy))
            best.append(o.best_score)
            accepted.append(o.accepted)
            pool = o.demo.pipeline.pool
            left.append(_duplicates(pool.best().artifact["playbook"]))
            counts = o.demo.workload.rebase_counts
            detected.append(counts.duplicates)
            rebased.append(counts.rebased)
        rows.append([
            policy, _median(best), f"{statistics.median(accepted):g}",
            f"{statistics.median(rebased):g}", f"{statistics.median(detected):g}",
            f"{statistics.median(left):g} ({min(left)}-{max(left)})",
        ])  # fmt: skip
    print(f"\nACE, async, at {minutes:g} simulated minutes, {seeds} seed(s), median (range):")
    print(format_table(
        ["policy", "best val", "accepted", "deltas rebased", "duplicates skipped",
         "duplicate bullets in best"], rows,
    ))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=30.0, help="simulated minutes per run")
    ap.add_argument("--workloads", default=",".join(DEMOS), help="comma-separated")
    args = ap.parse_args(argv)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    t0 = time.perf_counter()
    print(f"Workloads on the simulator (vllm profile), virtual clock: {', '.join(workloads)}")
    sync_vs_async(workloads, args.seeds, args.minutes)
    if "ace" in workloads:
        ace_policies(args.seeds, args.minutes)
    print(f"\n({time.perf_counter() - t0:.0f} s of real time)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
