"""Port a ``gepa.optimize`` call to ``flashevolve_nb.optimize`` by changing one line.

The port is this, and nothing else::

    -    result = gepa.optimize(
    +    result = flashevolve_nb.optimize(
             seed_candidate=seed, trainset=train, valset=val, adapter=adapter,
             reflection_lm=reflection_lm, max_metric_calls=budget, seed=0,
         )

Below, both calls run with the very same arguments: ``gepa``'s own
``DefaultAdapter`` optimising a system prompt on the simulated rulebook task,
its task model and reflection model being plain blocking callables served by
one simulated vLLM-like GPU server each run (``SimulatedModels``: every call
blocks for the simulated latency divided by ``--time-scale``). Same budget of
metric calls, same seed. The script prints what each run took in wall time
and in simulated time, what it found (mean validation score of the best
candidate, and its score on a held-out test split), and the measured ratio.

At an equal metric-call budget the asynchronous run finishes the budget much
sooner but works on staler parents (several steps in flight start from the
same few candidates), so its best score is about gepa's, not better. What
FlashEvolve claims is better scores in the same time, so a third run (not part
of the port: ``max_wall_seconds`` in place of ``max_metric_calls``) gives
``flashevolve_nb.optimize`` the wall time gepa took (``--no-equal-time`` skips
it). README's figures for this script come from ``benchmarks/readme_figures.py``.

With a callable task model, gepa's ``DefaultAdapter`` sends one request at a
time; with a LiteLLM model string it sends ten at once. ``--threads 10``
gives both runs an adapter that does the same with the callable (a
``DefaultAdapter`` whose ``evaluate`` fans each batch out over ten threads),
which is the fairer baseline for a server-backed model.

Everything here is simulated: the numbers show the scheduling difference on
a server that batches concurrent requests, not the speed of any real model.

    python3 examples/port_from_gepa.py                 # about a minute
    python3 examples/port_from_gepa.py --json out.json # also the figures as JSON
    python3 examples/port_from_gepa.py --budget 1500 --time-scale 100
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gepa
from gepa.adapters.default_adapter.default_adapter import DefaultAdapter
from gepa.core.adapter import EvaluationBatch

import flashevolve_nb
from flashevolve_nb.compat import SimulatedModels, rulebook_for_gepa
from flashevolve_nb.compat.simulated import RulebookData


@dataclass(frozen=True)
class Outcome:
    name: str
    wall_seconds: float
    sim_seconds: float
    metric_calls: int
    candidates: int
    best_val: float
    best_test: float
    seed_test: float


class ThreadedDefaultAdapter(DefaultAdapter):
    """gepa's DefaultAdapter, evaluating a batch ``threads`` requests at a time."""

    def __init__(self, *args: Any, threads: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threads = threads

    def evaluate(
        self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False
    ) -> Any:
        if self.threads <= 1 or len(batch) <= 1:
            return super().evaluate(batch, candidate, capture_traces)
        size = -(-len(batch) // self.threads)
        parts = [batch[i : i + size] for i in range(0, len(batch), size)]
        with ThreadPoolExecutor(len(parts)) as pool:
            done = list(
                pool.map(
                    lambda p: super(ThreadedDefaultAdapter, self).evaluate(
                        p, candidate, capture_traces
                    ),
                    parts,
                )
            )
        return EvaluationBatch(
            outputs=[o for d in done for o in d.outputs],
            scores=[x for d in done for x in d.scores],
            trajectories=[t for d in done for t in d.trajectories] if capture_traces else None,
        )


_held_out: dict[tuple[tuple[str, str], ...], float] = {}


def held_out_score(data: RulebookData, candidate: dict[str, str], args: Any) -> float:
    """Mean score on the held-out test rows (outside any budget), ten requests at a time.

    Deterministic per prompt: each distinct prompt is scored once, on simulated models
    of its own (the same seed, nothing seen before), so the seed scores the same in every
    run and a best that is the seed scores what the seed does.
    """
    key = tuple(sorted(candidate.items()))
    if key not in _held_out:
        # Timing does not change a score: a faster clock only saves wall time.
        scale = args.time_scale * 10
        with SimulatedModels(profile=args.profile, seed=args.seed, time_scale=scale) as m:
            adapter = DefaultAdapter(model=m.task_lm, evaluator=data.evaluator)
            rows = list(data.test)
            chunks = [rows[i::10] for i in range(10)]
            with ThreadPoolExecutor(10) as pool:
                batches = list(pool.map(lambda c: adapter.evaluate(c, candidate), chunks))
        scores = [s for b in batches for s in b.scores]
        _held_out[key] = sum(scores) / len(scores)
    return _held_out[key]


def run(
    name: str, optimize: Callable[..., Any], data: RulebookData, args: Any, **limits: Any
) -> Outcome:
    """One optimisation on fresh simulated models; ``limits`` replace ``max_metric_calls``."""
    limits = limits or {"max_metric_calls": args.budget}
    with SimulatedModels(profile=args.profile, seed=args.seed, time_scale=args.time_scale) as m:
        adapter = ThreadedDefaultAdapter(
            model=m.task_lm, evaluator=data.evaluator, threads=args.threads
        )
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # gepa logs every iteration
            result = optimize(
                seed_candidate=data.seed_candidate,
                trainset=data.train,
                valset=data.val,
                adapter=adapter,
                reflection_lm=m.reflection_lm,
                **limits,
                seed=args.seed,
            )
        wall = time.perf_counter() - t0
        sim = m.sim_seconds
    best = dict(result.best_candidate)
    return Outcome(
        name=name,
        wall_seconds=wall,
        sim_seconds=sim,
        metric_calls=result.total_metric_calls,
        candidates=len(result.candidates),
        best_val=result.val_aggregate_scores[result.best_idx],
        best_test=held_out_score(data, best, args),
        seed_test=held_out_score(data, data.seed_candidate, args),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=int, default=800, help="max_metric_calls (default 800)")
    parser.add_argument("--profile", default="vllm", help="simulated server: vllm or api")
    parser.add_argument(
        "--time-scale", type=float, default=300.0, help="simulated seconds per real second"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="requests the adapter sends at once per evaluate call (1: DefaultAdapter as is)",
    )
    parser.add_argument(
        "--no-equal-time", action="store_true", help="skip the run given gepa's wall time"
    )
    parser.add_argument(
        "--json", metavar="PATH", default=None, help="also write the figures as JSON to PATH"
    )
    args = parser.parse_args()
    data = rulebook_for_gepa(seed=args.seed, n_train=60, n_val=40, n_test=100)

    print(
        f"GEPA with gepa's DefaultAdapter on the simulated rulebook task "
        f"({len(data.train)} train / {len(data.val)} val / {len(data.test)} test), "
        f"simulated {args.profile} server at {args.time_scale:g}x, "
        f"max_metric_calls={args.budget}, seed={args.seed}, adapter threads={args.threads}\n"
    )
    before = run("gepa.optimize", gepa.optimize, data, args)
    after = run("flashevolve_nb.optimize", flashevolve_nb.optimize, data, args)
    rows = [before, after]
    if not args.no_equal_time:
        rows.append(
            run(
                "  same wall time as gepa",
                flashevolve_nb.optimize,
                data,
                args,
                max_wall_seconds=before.wall_seconds,
            )
        )

    header = (
        f"{'':25} {'wall s':>7} {'sim min':>8} {'metric calls':>12} {'calls/wall s':>12} "
        f"{'candidates':>10} {'best val':>8} {'best test':>9}"
    )
    print(header)
    for o in rows:
        print(
            f"{o.name:25} {o.wall_seconds:7.1f} {o.sim_seconds / 60:8.1f} {o.metric_calls:12d} "
            f"{o.metric_calls / o.wall_seconds:12.1f} {o.candidates:10d} {o.best_val:8.3f} "
            f"{o.best_test:9.3f}"
        )
    print(f"{'(seed candidate)':25} {'':>7} {'':>8} {'':>12} {'':>12} {'':>10} {'':>8} "
          f"{before.seed_test:9.3f}")  # fmt: skip
    speedup = before.wall_seconds / after.wall_seconds
    throughput = (after.metric_calls / after.wall_seconds) / (
        before.metric_calls / before.wall_seconds
    )
    print(
        f"\nmeasured speed-up (gepa wall time / flashevolve wall time, same budget): {speedup:.1f}x"
    )
    print(f"metric calls per second, flashevolve / gepa: {throughput:.1f}x")
    if args.json:
        figures = {
            "args": vars(args),
            "runs": [dataclasses.asdict(o) for o in rows],
            "speedup": speedup,
            "throughput_ratio": throughput,
        }
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
