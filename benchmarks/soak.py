"""Soak: memory of a long simulated run with a run store, after warm-up.

Runs the demo evolution (GEPA on the simulated rulebook task) on the virtual
clock until it has made ``--proposals`` proposals (10,000 by default), with
a run store attached, and prints the process's resident memory every
``--every`` proposals together with what legitimately grows: the pool (one
entry per admission; GEPA never forgets an admitted candidate) and the
simulator's per-conversation counter. Everything else should stay flat: the
in-memory event history is a ring, the full history is on disk.

    python3 benchmarks/soak.py                 # ~10,000 proposals, a few minutes
    python3 benchmarks/soak.py --proposals 2000 --every 250
    python3 benchmarks/soak.py --proposals 3000 --trace   # growth by source file (slower)

Figures are printed, never asserted. ``current_best`` parent selection is
used because GEPA's Pareto selection costs time quadratic in the pool, which
would make a 10,000-proposal run take hours without telling anything about
memory.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import looptime

from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine.events import Event, ProposalMade
from flashevolve_nb.store import attach, open_run
from flashevolve_nb.store.resume import plan_resume

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def pool_mb(pool: object) -> float:
    """A rough size of the pool's own data: texts, score tuples, entry objects."""
    total = 0
    for e in pool:  # type: ignore[attr-defined]
        total += sum(sys.getsizeof(t) for t in e.artifact.components.values())
        total += sys.getsizeof(e.scores) + 8 * len(e.scores) + 600  # entry, artifact, dicts
    return total / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proposals", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=1_000)
    ap.add_argument("--warmup", type=int, default=2_000, help="proposals before the baseline")
    ap.add_argument("--run-dir", type=Path, default=None, help="default: a temporary directory")
    ap.add_argument(
        "--trace",
        action="store_true",
        help="also say which source files hold the memory that grew after warm-up (tracemalloc)",
    )
    args = ap.parse_args()
    snapshots: list[tracemalloc.Snapshot] = []
    if args.trace:
        tracemalloc.start()

    tmp = tempfile.TemporaryDirectory(prefix="soak-")
    run_dir = args.run_dir or Path(tmp.name) / "run"
    config = DemoConfig(
        minutes=1e6,  # the proposal budget ends the run
        max_proposals=args.proposals,
        n_val=10,
        candidate_selection="current_best",
    )
    demo = build_demo(config)
    store = attach(demo.pipeline, run_dir, config=config)
    p = demo.pipeline
    rows: list[tuple[int, float, float, int, float, int, int, float]] = []
    t0 = time.perf_counter()
    count = 0

    def sample(e: Event) -> None:
        nonlocal count
        if not isinstance(e, ProposalMade):
            return
        count += 1
        if args.trace and count in (args.warmup, args.proposals):
            gc.collect()
            snapshots.append(tracemalloc.take_snapshot())
        if count % args.every == 0:
            gc.collect()
            rows.append(
                (
                    count,
                    time.perf_counter() - t0,
                    rss_mb(),
                    len(p.pool),
                    pool_mb(p.pool),
                    len(demo.simulator._seen),
                    len(p.recorder.events),
                    (run_dir / "run.sqlite").stat().st_size / 2**20,
                )
            )
            r = rows[-1]
            print(
                f"{r[0]:>7,} {r[1]:>8.1f} {r[2]:>8.1f} {r[3]:>7,} {r[4]:>8.1f} "
                f"{r[5]:>9,} {r[6]:>8,} {r[7]:>8.1f}",
                flush=True,
            )

    p.bus.subscribe(sample)
    print(
        f"soak: GEPA demo on the simulator, virtual clock, run store in {run_dir}\n"
        f"{'props':>7} {'real s':>8} {'RSS MB':>8} {'pool':>7} {'pool MB':>8} "
        f"{'sim convs':>9} {'events':>8} {'db MB':>8}",
        flush=True,
    )
    loop = looptime.new_event_loop(start=0.0)
    try:
        result = loop.run_until_complete(demo.run())
    finally:
        loop.close()
    wall = time.perf_counter() - t0
    print(f"finished: {result.finish_reason}; {result.stats.proposals:,} proposals in {wall:.0f} s")
    assert store.closed

    base = next((r for r in rows if r[0] >= args.warmup), rows[0])
    last = rows[-1]
    grew = last[2] - base[2]
    pool_grew = last[4] - base[4]
    span = (last[0] - base[0]) / 1000 or 1
    print(
        f"\nafter warm-up ({base[0]:,} -> {last[0]:,} proposals): RSS {base[2]:.1f} -> "
        f"{last[2]:.1f} MB (+{grew:.1f} MB, {grew / span:.2f} MB per 1,000 proposals); "
        f"of that the pool's own data ~{pool_grew:.1f} MB ({last[3] - base[3]:,} admissions); "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MB; "
        f"events in memory capped at {last[6]:,}"
    )

    if len(snapshots) == 2:
        print(f"\ngrowth after warm-up by source file (tracemalloc, {args.warmup:,} -> "
              f"{args.proposals:,} proposals):")  # fmt: skip
        for stat in snapshots[1].compare_to(snapshots[0], "filename")[:12]:
            name = "/".join(Path(str(stat.traceback[0].filename)).parts[-3:])
            print(f"  {stat.size_diff / 2**20:+7.2f} MB  {stat.count_diff:+9,} blocks  {name}")
        tracemalloc.stop()

    t = time.perf_counter()
    with open_run(run_dir) as stored:
        n = len(stored.events)
        frame_rows = len(stored.events_frame())
    t_open = time.perf_counter() - t
    t = time.perf_counter()
    import sqlite3

    with sqlite3.connect(run_dir / "run.sqlite") as conn:
        plan = plan_resume(conn)
    t_plan = time.perf_counter() - t
    print(
        f"store: {last[7]:.1f} MB, {n:,} events; open_run + all events + frame "
        f"({frame_rows:,} rows) {t_open:.1f} s; resume plan {t_plan:.2f} s "
        f"(pool version {plan.version})"
    )
    tmp.cleanup()


if __name__ == "__main__":
    main()
