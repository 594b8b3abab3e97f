"""``flashevolve bench``: our systems side by side with the real ``gepa`` on simulated servers.

``--quick`` (CI, about two minutes): both profiles, one seed, one time scale,
short runs. The default (full) mode is what BENCHMARKS.md holds: several
seeds, two time scales, an equal-metric-calls table. Every choice has a flag;
progress is printed one line per run, the tables at the end, and JSON,
Markdown and HTML go to ``--out``. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]

_QUICK: dict[str, Any] = {"seeds": "0", "minutes": 16.0, "time_scales": "60", "equal_calls": "0",
                          "scale_systems": "", "equal_calls_scale": 0.0}  # fmt: skip
# 30x and 15x: from 60x up the client process (ours: a few hundred requests a second
# through the openai client) is busy all along on a 2-core machine, and the figures
# measure its CPU, not scheduling (the report's "client CPU" column shows it). The
# slower scale runs gepa and flash only, the equal-calls pass (sample efficiency, not
# speed) the fast 60x: the whole full run stays near half an hour.
_FULL: dict[str, Any] = {"seeds": "0,1", "minutes": 16.0, "time_scales": "30,15",
                         "equal_calls": "400", "scale_systems": "gepa,flash",
                         "equal_calls_scale": 60.0}  # fmt: skip


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "bench",
        help="benchmark against the real gepa package on simulated servers",
        description=(
            "Run the real gepa package and this project's modes (sync, async with each "
            "staleness policy, flash) against one loopback simulator server per profile "
            "(vllm, api), same task, seeds and simulated-time budget; print figures and "
            "ratios to gepa, write JSON, Markdown and HTML. Everything is simulated."
        ),
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI size: 1 seed, 16 simulated minutes, 60x, no equal-calls table",
    )
    p.add_argument("--profiles", default="vllm,api", help="comma-separated: vllm, api")
    p.add_argument(
        "--systems",
        default="gepa,sync,async-full,async-guarded,async-reflective,flash",
        help="comma-separated; turbo-gepa reports why it cannot run",
    )
    p.add_argument("--seeds", help=f"comma-separated (full: {_FULL['seeds']})")
    p.add_argument(
        "--minutes", type=float, help=f"simulated minutes per run (full: {_FULL['minutes']:g})"
    )
    p.add_argument(
        "--time-scales",
        help=f"simulated seconds per real second, comma-separated (full: {_FULL['time_scales']})",
    )
    p.add_argument(
        "--equal-calls",
        help="metric calls per run of the equal-budget table, comma-separated for one "
        f"table per budget (e.g. 400,1000), 0 for none (full: {_FULL['equal_calls']})",
    )
    p.add_argument(
        "--scale-systems",
        help="systems run at the time scales after the first, comma-separated, '' for all "
        f"(full: {_FULL['scale_systems']})",
    )
    p.add_argument(
        "--equal-calls-scale",
        type=float,
        help=f"time scale of the equal-calls pass, 0 for the first of --time-scales "
        f"(full: {_FULL['equal_calls_scale']:g})",
    )
    p.add_argument(
        "--equal-calls-only",
        action="store_true",
        help="skip the equal-time passes: only the equal-calls table (e.g. over more seeds)",
    )
    p.add_argument("--n-val", type=int, default=40, help="validation set size")
    p.add_argument("--out", type=Path, default=Path("bench-out"), help="directory for outputs")
    p.add_argument(
        "--real-engine",
        action="store_true",
        help="the cross-check on a real vLLM CPU engine (see BENCHMARKS.md)",
    )
    p.set_defaults(handler=_run, command_parser=p)  # fmt: skip


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _budgets(text: str) -> tuple[int, ...] | None:
    """``--equal-calls``: comma-separated budgets, 0 (or nothing) for none."""
    try:
        budgets = tuple(n for n in map(int, _csv(text)) if n)
    except ValueError:
        raise ValueError(f"--equal-calls takes comma-separated ints (got {text!r})") from None
    return budgets or None


def _command(config: Any, out: Path) -> str:
    """The one-line command that runs exactly this benchmark again."""
    return shlex.join([
        "python3", "-m", "flashevolve_nb", "bench",
        "--profiles", ",".join(config.profiles), "--systems", ",".join(config.systems),
        "--seeds", ",".join(map(str, config.seeds)), "--minutes", f"{config.minutes:g}",
        "--time-scales", ",".join(f"{s:g}" for s in config.time_scales),
        "--equal-calls", ",".join(map(str, config.equal_calls or (0,))),
        "--equal-calls-scale", f"{config.equal_calls_scale or 0:g}",
        "--scale-systems", ",".join(config.scale_systems or ()),
        *([] if config.time_pass else ["--equal-calls-only"]),
        "--n-val", str(config.sizes.n_val), "--out", str(out),
    ])  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    if args.real_engine:
        try:
            from flashevolve_nb.bench import real_engine  # part D's module
        except ImportError:
            print("the real-engine cross-check is not available in this version", file=sys.stderr)
            return 2
        main: Any = getattr(real_engine, "main", None)
        if main is None:
            print("the real-engine cross-check is not wired yet", file=sys.stderr)
            return 2
        code: int = main(args)
        return code
    from flashevolve_nb.bench.gepa_http import TaskSizes
    from flashevolve_nb.bench.report import markdown, write_reports
    from flashevolve_nb.bench.runner import BenchConfig, run_bench

    mode = _QUICK if args.quick else _FULL
    seeds = args.seeds or mode["seeds"]
    scales = args.time_scales or mode["time_scales"]
    later = mode["scale_systems"] if args.scale_systems is None else args.scale_systems
    equal_scale = (
        mode["equal_calls_scale"] if args.equal_calls_scale is None else args.equal_calls_scale
    )
    try:
        config = BenchConfig(
            profiles=tuple(_csv(args.profiles)),
            systems=tuple(_csv(args.systems)),
            seeds=tuple(int(s) for s in _csv(seeds)),
            minutes=args.minutes or mode["minutes"],
            time_scales=tuple(float(s) for s in _csv(scales)),
            equal_calls=_budgets(args.equal_calls or mode["equal_calls"]),
            equal_calls_scale=equal_scale or None,
            scale_systems=tuple(_csv(later)) or None,
            time_pass=not args.equal_calls_only,
            sizes=TaskSizes(n_val=args.n_val),
        )
    except ValueError as exc:
        raise ValueError(f"bench: {exc}") from None
    config = replace(config, command=_command(config, args.out))
    for profile in config.profiles:
        if profile not in ("vllm", "api"):
            raise ValueError(f"bench: unknown profile {profile!r}; valid: vllm, api")
    if config.time_pass:
        passes = (f"{len(config.time_scales)} time scale(s), "
                  f"{config.minutes:g} simulated minutes per run")  # fmt: skip
    else:
        budgets = ", ".join(map(str, config.equal_calls or ()))
        passes = f"equal metric calls only ({budgets} per run)"
    print(f"flashevolve bench ({'quick' if args.quick else 'full'}, simulated servers): "
          f"{len(config.profiles)} profile(s) x {len(config.seeds)} seed(s) x "
          f"{len(config.systems)} systems, {passes}", flush=True)  # fmt: skip
    result = run_bench(config, progress=lambda line: print(line, flush=True))
    print()
    print(markdown(result))
    for path in write_reports(result, args.out):
        print(f"wrote {path}")
    return 0
