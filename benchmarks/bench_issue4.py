"""Adaptive control and speculative completion, measured (issue 4; PAPER.md, Mechanisms 3-4).

Runs the offline demo (GEPA on the simulated rulebook task against one
simulated server, 30 simulated minutes, virtual clock so every run is exactly
reproducible) over several seeds and prints two tables, median and
[min-max] over the seeds:

1. **Controller**: accepted proposals/min with fixed 1 worker per stage, fixed
   16 rollout / 8 validate workers (propose and gate 8, the reference code's
   default), fixed 8 per stage (this project's default), and the adaptive
   controller (starting from 8 per stage, and from 1 per stage).
   Paper (IFBench, real hardware): 0.140, 0.239, 0.310.
2. **Speculation**: validation sweeps/min without speculation, and with alpha
   0.5 and 0.25 (rollout and validate release early), each with and without
   speculative validation, under the adaptive controller and under fixed
   8-per-stage workers. Paper: 2.62 (adaptive, no speculation), 0.50
   (alpha 0.5), 3.15 (alpha 0.25).

    python3 benchmarks/bench_issue4.py                 # 5 seeds, vllm profile, ~6 min on 2 cores
    python3 benchmarks/bench_issue4.py --seeds 3 --minutes 15 --only controller
    python3 benchmarks/bench_issue4.py --clock real --time-scale 120   # engine overhead included

A benchmark, not a test: it prints what it measures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from flashevolve_nb.cli.table import format_table
from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine.events import Admitted, StepStarted
from flashevolve_nb.workloads.gepa import GepaConfig

STAGES = ("rollout", "propose", "gate", "validate")


@dataclass(frozen=True)
class System:
    name: str
    controller: str = "fixed"
    workers: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 8))
    alpha: float = 1.0
    speculative_validation: bool = False


CONTROLLER = [
    System("fixed 1/stage", workers=dict.fromkeys(STAGES, 1)),
    System("fixed 16 rollout/8 validate", workers={**dict.fromkeys(STAGES, 8), "rollout": 16}),
    System("fixed 8/stage (default)"),
    System("adaptive (from 8/stage)", controller="adaptive"),
    System("adaptive (from 1/stage)", controller="adaptive", workers=dict.fromkeys(STAGES, 1)),
]


def _speculation(controller: str) -> list[System]:
    tag = "adaptive" if controller == "adaptive" else "fixed 8"
    out = [System(f"{tag}, no speculation", controller=controller)]
    for alpha in (0.5, 0.25):
        out.append(System(f"{tag}, alpha {alpha:g}", controller=controller, alpha=alpha))
        out.append(
            System(
                f"{tag}, alpha {alpha:g} + spec. validation",
                controller=controller,
                alpha=alpha,
                speculative_validation=True,
            )
        )
    return out


SPECULATION = _speculation("adaptive") + _speculation("fixed")


def run_one(system: System, seed: int, base: DemoConfig, clock: str) -> dict[str, Any]:
    """One run; returns only figures (small to send back from a worker process)."""
    cfg = replace(
        base,
        seed=seed,
        controller=system.controller,  # type: ignore[arg-type]
        alpha=system.alpha,
        speculative_validation=system.speculative_validation,
        gepa=GepaConfig(workers=dict(system.workers)),
    )
    demo = build_demo(cfg)
    if clock == "virtual":
        import looptime

        loop: asyncio.AbstractEventLoop = looptime.new_event_loop(start=0.0)
    else:
        loop = asyncio.new_event_loop()
    t0 = time.perf_counter()
    try:
        result = loop.run_until_complete(demo.run())
        real = time.perf_counter() - t0
        held = loop.run_until_complete(demo.held_out(result))
    finally:
        loop.close()
    s = result.stats
    base_of: dict[int, int] = {}
    missed: list[int] = []
    kinds: dict[str, int] = {}
    for e in result.events:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
        if isinstance(e, StepStarted):
            base_of[e.step] = e.base_version
        elif isinstance(e, Admitted) and e.step in base_of:
            missed.append(e.version - 1 - base_of[e.step])
    p = demo.pipeline
    return {
        "accepted_per_min": s.accepted_per_min,
        "proposals_per_min": s.proposals_per_min,
        "validations_per_min": s.validations_per_min,
        "best": s.best_score,
        "test": held.best,
        "inflight": s.inflight_mean,
        "staleness": statistics.mean(missed) if missed else math.nan,
        "tokens_per_accepted": s.tokens / s.accepted if s.accepted else math.nan,
        "depth": p.depth,
        "workers": "/".join(str(st.target_workers) for st in p.stages),
        "actions": kinds.get("controller_action", 0),
        "spec_admitted": kinds.get("speculative_admitted", 0),
        "confirmed": kinds.get("speculation_confirmed", 0),
        "rolled_back": kinds.get("speculation_rolled_back", 0),
        "releases": kinds.get("partial_release", 0),
        "real_seconds": real,
    }


def _cell(xs: list[float], fmt: str) -> str:
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return "-"
    med = statistics.median(xs)
    if len(xs) == 1:
        return format(med, fmt)
    return f"{med:{fmt}} [{min(xs):{fmt}}-{max(xs):{fmt}}]"


Column = tuple[str, Callable[[list[dict[str, Any]]], str]]


def _num(key: str, fmt: str) -> Callable[[list[dict[str, Any]]], str]:
    return lambda runs: _cell([float(r[key]) for r in runs], fmt)


def _last(key: str) -> Callable[[list[dict[str, Any]]], str]:
    return lambda runs: ", ".join(sorted({str(r[key]) for r in runs}))


CONTROLLER_COLUMNS: list[Column] = [
    ("accepted/min", _num("accepted_per_min", ".2f")),
    ("proposals/min", _num("proposals_per_min", ".2f")),
    ("val. sweeps/min", _num("validations_per_min", ".2f")),
    ("best val", _num("best", ".3f")),
    ("best held-out", _num("test", ".3f")),
    ("staleness", _num("staleness", ".1f")),
    ("in flight", _num("inflight", ".0f")),
    ("final depth", _last("depth")),
    ("final workers r/p/g/v", _last("workers")),
]

SPECULATION_COLUMNS: list[Column] = [
    ("val. sweeps/min", _num("validations_per_min", ".2f")),
    ("accepted/min", _num("accepted_per_min", ".2f")),
    ("best val", _num("best", ".3f")),
    ("best held-out", _num("test", ".3f")),
    ("spec. admitted", _num("spec_admitted", ".0f")),
    ("rolled back", _num("rolled_back", ".0f")),
    ("in flight", _num("inflight", ".0f")),
    ("tokens/accepted", _num("tokens_per_accepted", ",.0f")),
]


def _table(
    title: str, systems: list[System], runs: dict[str, list[dict[str, Any]]], cols: list[Column]
) -> str:
    header = ["system", *(c for c, _ in cols)]
    rows = [[s.name, *(f(runs[s.name]) for _, f in cols)] for s in systems]
    return f"{title}\n\n{format_table(header, rows)}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--minutes", type=float, default=30.0, help="simulated minutes per run")
    ap.add_argument("--profile", default="vllm", choices=["vllm", "api"])
    ap.add_argument("--only", choices=["controller", "speculation"], default=None)
    ap.add_argument("--clock", choices=["virtual", "real"], default="virtual")
    ap.add_argument("--time-scale", type=float, default=120.0, help="real clock only")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs in parallel")
    args = ap.parse_args(argv)
    if args.clock == "real" and args.jobs > 1:
        print("note: real-clock runs share the CPU when run in parallel; use --jobs 1 to keep "
              "the engine's overhead honest", file=sys.stderr)  # fmt: skip
    base = DemoConfig(profile=args.profile, minutes=args.minutes, time_scale=args.time_scale)
    tables: list[tuple[str, list[System], list[Column]]] = []
    if args.only in (None, "controller"):
        tables.append(("Controller", CONTROLLER, CONTROLLER_COLUMNS))
    if args.only in (None, "speculation"):
        tables.append(("Speculation", SPECULATION, SPECULATION_COLUMNS))
    systems = {s.name: s for _, ss, _ in tables for s in ss}
    t0 = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        futures = {
            ex.submit(run_one, s, seed, base, args.clock): name
            for name, s in systems.items()
            for seed in range(args.seeds)
        }
        for fut, name in futures.items():
            runs[name].append(fut.result())
    took = time.perf_counter() - t0
    clock = "virtual clock" if args.clock == "virtual" else f"real clock at {args.time_scale:g}x"
    print(
        f"GEPA on the simulated rulebook task, simulated '{args.profile}' server, "
        f"{args.minutes:g} simulated minutes per run, seeds 0-{args.seeds - 1}, {clock}. "
        "Cells: median [min-max] over seeds; rates per simulated minute; staleness = pool "
        "versions an admitted artifact had missed (mean); in flight = mean LLM requests.\n"
    )
    for title, ss, cols in tables:
        print(_table(title, ss, runs, cols))
        print()
    print(f"({sum(len(v) for v in runs.values())} runs in {took:.0f} s real)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
