"""``flashevolve demo``: an offline GEPA evolution on the simulator.

With ``--compare`` the synchronous schedule runs on the same seed against a
fresh copy of the same simulated server, and both are printed side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from flashevolve_nb.cli.checks import (
    at_least,
    check_clock,
    json_target,
    new_loop,
    positive_number,
)
from flashevolve_nb.cli.progress import ClockWarning, ProgressBar
from flashevolve_nb.cli.table import format_table
from flashevolve_nb.demo import DemoConfig, HeldOut
from flashevolve_nb.engine import Pipeline, RunResult
from flashevolve_nb.engine.bus import EventBus
from flashevolve_nb.runtime.launch import demo_builder

__all__ = ["add_parser", "run_demo"]


@dataclass(frozen=True)
class DemoOutcome:
    config: DemoConfig
    result: RunResult
    real_seconds: float
    held_out: HeldOut | None
    workload: str = "gepa"
    history_dir: str = ""
    """Meta-Harness: the folder holding every candidate's code, scores and traces."""


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="run an asynchronous GEPA evolution on the offline simulator",
        description=(
            "Evolve a system prompt for the simulated 'rulebook' instruction-following task "
            "with GEPA, run asynchronously (FlashEvolve) against a simulated LLM server. No "
            "network, no GPU. Every figure is on the simulated clock."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--workload",
        default="gepa",
        choices=["gepa", "ace", "meta-harness"],
        help="what evolves: GEPA's system prompt, ACE's playbook (generator, reflector, "
        "curator; the staleness policy 'rebase' is ACE's own), or Meta-Harness's harness "
        "program (run sandboxed; every candidate's code, scores and traces kept in a folder)",
    )
    p.add_argument(
        "--profile",
        default="vllm",
        choices=["vllm", "api"],
        help="simulated server: one vLLM GPU server with continuous batching, or a hosted API",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed for the task, the simulator and the run"
    )
    p.add_argument(
        "--minutes", type=positive_number, default=30.0, help="budget in simulated minutes"
    )
    p.add_argument(
        "--time-scale",
        type=positive_number,
        default=120.0,
        help="simulated seconds per real second (real clock only)",
    )
    p.add_argument(
        "--clock",
        choices=["real", "virtual"],
        default="real",
        help="'real': the simulated clock runs time-scale times faster than the wall "
        "clock, so the engine's own overhead shows; 'virtual': time jumps "
        "whenever every task waits, so the run is exactly reproducible and as "
        "fast as the CPU allows (needs the 'virtual' extra: pip install "
        "'flashevolve_nb[virtual]')",
    )
    p.add_argument(
        "--mode",
        choices=["async", "sync"],
        default="async",
        help="asynchronous pipeline, or GEPA's synchronous schedule",
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="also run the synchronous schedule on the same seed and print both "
        "side by side with the async/sync ratio",
    )
    p.add_argument(
        "--depth",
        type=at_least(1),
        default=16,
        help="evolution steps in flight at most (async mode)",
    )
    p.add_argument("--workers", type=at_least(1), default=8, help="workers per stage (async mode)")
    p.add_argument(
        "--minibatch-size", type=at_least(1), default=3, help="training examples per reflection"
    )
    p.add_argument(
        "--request-concurrency",
        type=at_least(1),
        default=10,
        help="LLM requests one stage of one step keeps in flight (gepa's thread pool)",
    )
    p.add_argument(
        "--max-metric-calls",
        type=at_least(1),
        default=None,
        help="also stop after this many task evaluations",
    )
    p.add_argument(
        "--candidate-selection",
        type=_selection,
        default="pareto",
        help="parent selection: pareto, current_best or epsilon_greedy[:EPS]",
    )
    p.add_argument(
        "--staleness",
        type=_policy,
        default="accept",
        metavar="POLICY",
        help="staleness policy: accept, guarded[:DELTA_MAX], discard, reflective (an LLM "
        "repairs stale proposals) or meta (stale proposals distilled after an improvement)",
    )
    p.add_argument(
        "--staleness-lab",
        action="store_true",
        help="make staleness happen on purpose, for teaching: a deep pipeline (depth 32) "
        "with a slow validation stage (2 workers)",
    )
    p.add_argument(
        "--validate-workers",
        type=at_least(1),
        default=None,
        help="workers of the validation stage (default: --workers)",
    )
    p.add_argument(
        "--controller",
        choices=["fixed", "adaptive"],
        default=DemoConfig.controller,
        help="'adaptive': move workers between stages and size the pipeline as the run goes, "
        "each change an event with its reason; 'fixed': keep --workers and --depth (always "
        "for the synchronous run). Measured on the vllm profile: adaptive +13%% accepted/min",
    )
    p.add_argument(
        "--alpha",
        type=_alpha,
        default=DemoConfig.alpha,
        metavar="A|STAGE=A,...",
        help="speculative completion: a stage hands its output on once this fraction of its "
        "requests is in, the rest are folded in later (1: wait for all). A number applies to "
        "rollout and validate; e.g. 'validate=0.25,rollout=0.5' sets them one by one",
    )
    p.add_argument(
        "--speculative-validation",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="admit a candidate whose validation prefix beats its parent's before its full "
        "evaluation, then confirm or roll it back (needs validate's alpha below 1; off by "
        "default). Measured best: --controller adaptive --alpha 0.5 --speculative-validation",
    )
    p.add_argument("--no-progress", action="store_true", help="do not draw the progress bar")
    p.add_argument(
        "--json",
        type=json_target,
        default=False,
        metavar="PATH",
        help="also write the summary figures as JSON to PATH (checked before the run); "
        "'-' writes them to stdout, and the summary then goes to stderr",
    )
    p.set_defaults(handler=_handle, command_parser=p)


def _handle(args: argparse.Namespace) -> int:
    check_clock(args.clock)  # before the run: a missing extra costs no run
    base = DemoConfig(
        mode=args.mode,
        profile=args.profile,
        seed=args.seed,
        minutes=args.minutes,
        time_scale=args.time_scale,
        depth=args.depth,
        workers=args.workers,
        minibatch_size=args.minibatch_size,
        request_concurrency=args.request_concurrency,
        max_metric_calls=args.max_metric_calls,
        candidate_selection=args.candidate_selection,
        policy=args.staleness,
        staleness_lab=args.staleness_lab,
        validate_workers=args.validate_workers,
        controller=args.controller,
        alpha=args.alpha,
        speculative_validation=(
            DemoConfig.speculative_validation
            if args.speculative_validation is None
            else args.speculative_validation
        ),
    )
    configs = [base]
    if args.compare:
        configs = [_with_mode(base, "async"), _with_mode(base, "sync")]
    outcomes = []
    for c in configs:
        outcomes.append(
            run_demo(c, clock=args.clock, progress=not args.no_progress, workload=args.workload)
        )
        if _interrupted(outcomes[-1]):
            break
    to_stdout = args.json is None  # --json -
    summary = _summary(outcomes, args.clock, compared=args.compare)
    print(summary, file=sys.stderr if to_stdout else sys.stdout, flush=True)
    code = 130 if any(_interrupted(o) for o in outcomes) else 0
    if args.json is False:
        return code
    figures = json.dumps([_figures(o) for o in outcomes], indent=2)
    if to_stdout:
        print(figures, flush=True)
        return code
    try:
        args.json.write_text(figures + "\n")
    except OSError as exc:
        # Checked before the run, but the disk can still say no: keep the figures.
        print(figures, flush=True)
        print(
            f"flashevolve demo: cannot write {args.json} ({exc.strerror}); the figures are "
            "on stdout above",
            file=sys.stderr,
        )
        return code or 1
    print(f"figures written to {args.json}")
    return code


def _interrupted(o: DemoOutcome) -> bool:
    return o.result.finish_reason.startswith("interrupted")


def _selection(text: str) -> str:
    from flashevolve_nb.engine.selection import make_selector

    try:
        make_selector(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _policy(text: str) -> str:
    from flashevolve_nb.engine.staleness import make_policy

    try:
        make_policy(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _alpha(text: str) -> float | dict[str, float]:
    """``0.5`` or ``validate=0.25,rollout=0.5``."""
    hint = f"{text!r}: give a number in (0, 1] or STAGE=A pairs, e.g. validate=0.25,rollout=0.5"
    try:
        if "=" not in text:
            value = float(text)
            if not 0 < value <= 1:
                raise ValueError(value)
            return value
        out: dict[str, float] = {}
        for part in text.split(","):
            stage, _, value_text = part.partition("=")
            out[stage.strip()] = float(value_text)
            if not 0 < out[stage.strip()] <= 1:
                raise ValueError(value_text)
        return out
    except ValueError:
        raise argparse.ArgumentTypeError(hint) from None


def _with_mode(c: DemoConfig, mode: Literal["async", "sync"]) -> DemoConfig:
    return replace(c, mode=mode)


def run_demo(
    config: DemoConfig, *, clock: str = "real", progress: bool = True, workload: str = "gepa"
) -> DemoOutcome:
    """Run one demo to its budget on a fresh loop; returns its result and real duration."""
    bus = EventBus()
    if progress:
        bus.subscribe(ProgressBar(f"{config.mode:>5}", config.minutes * 60.0))
    bus.subscribe(ClockWarning(config.mode))
    demo = demo_builder(workload)(config, bus=bus)
    loop = new_loop(clock)
    t0 = time.perf_counter()
    try:
        _stop_on_ctrl_c(loop, demo.pipeline)
        result = loop.run_until_complete(demo.run())
        real = time.perf_counter() - t0
        held_out = None
        # Held-out test scores: the GEPA demo's; other workloads' demos report none yet.
        if not result.finish_reason.startswith("interrupted") and hasattr(demo, "held_out"):
            held_out = loop.run_until_complete(demo.held_out(result))
    finally:
        loop.close()
    history = str(getattr(demo, "history_dir", "") or "")
    return DemoOutcome(config, result, real, held_out, workload, history)


def _stop_on_ctrl_c(loop: asyncio.AbstractEventLoop, pipeline: Pipeline) -> None:
    """First Ctrl-C ends the run cleanly (what was admitted is still reported); a second
    one interrupts as usual."""

    def interrupted() -> None:
        loop.remove_signal_handler(signal.SIGINT)
        print("\ninterrupted: stopping the run (Ctrl-C again to abort)", file=sys.stderr)
        pipeline.stop("cancel", reason="interrupted (Ctrl-C)")

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        # Not available on Windows event loops or outside the main thread.
        loop.add_signal_handler(signal.SIGINT, interrupted)


def _figures(o: DemoOutcome) -> dict[str, Any]:
    s = o.result.stats
    return {
        "mode": o.config.mode,
        "profile": o.config.profile,
        "seed": o.config.seed,
        "sim_minutes": s.minutes,
        "real_seconds": o.real_seconds,
        "seed_score": s.seed_score,
        "best_score": s.best_score,
        "seed_test_score": o.held_out.seed if o.held_out else float("nan"),
        "best_test_score": o.held_out.best if o.held_out else float("nan"),
        "steps": s.steps,
        "proposals": s.proposals,
        "proposals_failed": s.proposals_failed,
        "gate_passed": s.gate_passed,
        "accepted": s.accepted,
        "validations": s.validations,
        "proposals_per_min": s.proposals_per_min,
        "accepted_per_min": s.accepted_per_min,
        "validations_per_min": s.validations_per_min,
        "inflight_mean": s.inflight_mean,
        "inflight_peak": s.inflight_peak,
        "tokens": s.tokens,
        "policy": o.config.policy if o.config.mode == "async" else "sync",
        "stale_seen": s.stale_seen,
        "decisions": dict(s.decisions),
        "repair_tokens": s.repair_tokens,
        "repaired_admitted": s.repaired_admitted,
        "repaired_best": s.repaired_best,
        "finish_reason": o.result.finish_reason,
        **_control_figures(o),
        **_clock_figures(o),
    }


def _clock_figures(o: DemoOutcome) -> dict[str, Any]:
    """Whether the real clock fell behind (the figures are then degraded), and by how much."""
    lag = o.result.stats.clock_behind
    return {
        "clock_behind": lag is not None,
        "clock_lag_sim_mean": lag.sim_lag_mean if lag is not None else None,
        "clock_lag_sim_p95": lag.sim_lag_p95 if lag is not None else None,
        "loop_cpu": lag.loop_cpu if lag is not None else None,
    }


def _control_figures(o: DemoOutcome) -> dict[str, Any]:
    """Adaptive control and speculation, counted from the run's events."""
    kinds: dict[str, int] = {}
    for e in o.result.events:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    c = o.config
    return {
        # the synchronous run and the staleness lab always run the fixed controller
        "controller": c.controller if c.mode == "async" and not c.staleness_lab else "fixed",
        "alpha": c.alpha if c.mode == "async" else 1.0,
        "speculative_validation": c.speculative_validation and c.mode == "async",
        "controller_actions": kinds.get("controller_action", 0),
        "partial_releases": kinds.get("partial_release", 0),
        "speculative_admitted": kinds.get("speculative_admitted", 0),
        "speculation_confirmed": kinds.get("speculation_confirmed", 0),
        "speculation_rolled_back": kinds.get("speculation_rolled_back", 0),
    }


def _control_line(f: dict[str, Any]) -> str:
    spec = ""
    if f["speculative_validation"]:
        spec = (
            f"; speculative admissions {f['speculative_admitted']} (confirmed "
            f"{f['speculation_confirmed']}, rolled back {f['speculation_rolled_back']})"
        )
    return (
        f"control ({f['mode']}): {f['controller']} controller, {f['controller_actions']} "
        f"actions; alpha {f['alpha']}, {f['partial_releases']} early releases{spec}"
    )


_ROWS: list[tuple[str, str, Callable[[float], str], bool]] = [
    ("seed score (val)", "seed_score", "{:.3f}".format, False),
    ("best score (val)", "best_score", "{:.3f}".format, False),
    ("seed score (held-out test)", "seed_test_score", "{:.3f}".format, False),
    ("best score (held-out test)", "best_test_score", "{:.3f}".format, False),
    ("evolution steps", "steps", "{:.0f}".format, True),
    ("proposals", "proposals", "{:.0f}".format, True),
    ("failed proposals", "proposals_failed", "{:.0f}".format, False),
    ("passed the gate", "gate_passed", "{:.0f}".format, True),
    ("accepted (admitted)", "accepted", "{:.0f}".format, True),
    ("proposals / min", "proposals_per_min", "{:.2f}".format, True),
    ("accepted / min", "accepted_per_min", "{:.2f}".format, True),
    ("validation sweeps / min", "validations_per_min", "{:.2f}".format, True),
    ("in-flight requests, mean", "inflight_mean", "{:.1f}".format, True),
    ("in-flight requests, peak", "inflight_peak", "{:.0f}".format, True),
    ("tokens", "tokens", "{:,.0f}".format, True),
    ("simulated minutes", "sim_minutes", "{:.1f}".format, False),
    ("real seconds", "real_seconds", "{:.1f}".format, False),
]


def _staleness_lines(f: dict[str, Any]) -> str:
    d = f["decisions"]
    kinds = ", ".join(f"{k} {d.get(k, 0)}" for k in ("accept", "patch", "discard", "defer"))
    return (
        f"staleness ({f['mode']}, policy {f['policy']}): {f['stale_seen']} stale detections; "
        f"decisions: {kinds}; repair tokens {f['repair_tokens']:,}; repaired artifacts "
        f"admitted {f['repaired_admitted']}, of which became the best {f['repaired_best']}"
    )


_LEGEND = """\
What the terms mean:
  held-out test             mean score on a test split never used during the run, at
                            temperature 0 and once per prompt: a prompt has one score
  evolution steps           select a parent, roll it out on a minibatch, reflect, propose
  failed proposals          reflection answers not adopted (no usable fenced text, or cut
                            off by the token limit); each is an event with its reason
  passed the gate           proposals that beat their parent on the same minibatch
  accepted (admitted)       proposals admitted to the pool after a full validation
  validation sweeps         full evaluations of a candidate on the validation set
  stale detections          a proposal met a decision point after other proposals were
                            admitted since it was derived (the policy then decides)
  early releases            a stage handed its output on once a fraction alpha of its
                            requests had finished (speculative completion)"""


def _stop_reason(reason: str) -> str:
    """``max_sim_seconds=1800 reached`` -> words, with the flag that sets the limit."""
    m = re.fullmatch(r"(max_\w+)=([\d.e+]+) reached", reason)
    if m is None:
        return reason
    name, value = m.group(1), float(m.group(2))
    return {
        "max_sim_seconds": f"its budget of {value / 60:g} simulated minutes ran out (--minutes)",
        "max_metric_calls": f"it used its {value:g} metric calls (--max-metric-calls)",
        "max_proposals": f"it made its {value:g} proposals",
        "max_wall_seconds": f"its {value:g} real seconds ran out",
    }.get(name, reason)


def _next_steps(outcomes: list[DemoOutcome], compared: bool) -> list[str]:
    steps: list[tuple[str, str]] = []
    if not compared:
        steps.append(
            ("flashevolve demo --compare", "the same seed under GEPA's synchronous schedule too")
        )
    if outcomes[0].config.policy == "accept":
        steps.append(("flashevolve demo --staleness reflective", "an LLM repairs stale proposals"))
    steps += [
        ("notebooks/01_quickstart.ipynb", "the same run in Jupyter, with a live dashboard"),
        ("flashevolve demo --help", "every option"),
    ]
    width = max(len(cmd) for cmd, _ in steps)
    return ["Next:", *(f"  {cmd:<{width}}  {what}" for cmd, what in steps)]


def _summary(outcomes: list[DemoOutcome], clock: str, *, compared: bool = False) -> str:
    figs = [_figures(o) for o in outcomes]
    c = outcomes[0].config
    workload = outcomes[0].workload
    what = {"gepa": ("GEPA", "prompt"), "ace": ("ACE", "playbook"),
            "meta-harness": ("Meta-Harness", "harness")}.get(workload, (workload, ""))  # fmt: skip
    head = (
        f"{what[0]} on the simulated '{'tickets' if workload == 'meta-harness' else 'rulebook'}' "
        f"task, simulated '{c.profile}' server, "
        f"seed {c.seed}, "
        f"budget {c.minutes:g} simulated minutes"
        + (f", time scale {c.time_scale:g}x" if clock == "real" else ", virtual clock")
        + ". Rates are per simulated minute."
    )
    columns = [f["mode"] for f in figs]
    ratio = len(figs) == 2
    header = ["", *columns] + (["async/sync"] if ratio else [])
    rows = []
    held_out = any(o.held_out is not None for o in outcomes)
    for label, key, fmt, show_ratio in _ROWS:
        if "held-out" in label and not held_out:
            continue  # this workload's demo has no held-out split scored (yet)
        row = [label, *(fmt(f[key]) for f in figs)]
        if ratio:
            a, b = figs[0][key], figs[1][key]
            row.append(f"{a / b:.2f}x" if show_ratio and b else "")
        rows.append(row)
    lines = [head, "", format_table(header, rows)]
    for o in outcomes:
        lines.append(f"{o.config.mode}: stopped because {_stop_reason(o.result.finish_reason)}")
    for f in figs:
        if f["mode"] == "async":
            lines += ["", _staleness_lines(f)]
    lines.append("")
    lines += [_control_line(f) for f in figs]
    best = outcomes[0].result
    lines += ["", f"best {what[1] or 'artifact'} ({outcomes[0].config.mode}, {best.best.id}):"]
    lines += ["  " + ln for ln in best.best[next(iter(best.best))].splitlines()]
    for o in outcomes:
        if o.history_dir:
            lines += ["", f"every candidate's code, scores and traces ({o.config.mode}): "
                      f"{o.history_dir}"]  # fmt: skip
    lines += ["", _LEGEND, "", *_next_steps(outcomes, compared)]
    # Last, where it cannot be missed: the figures above may not mean what they say.
    for o in outcomes:
        lag = o.result.stats.clock_behind
        if lag is not None:
            lines += ["", f"{o.config.mode}: {lag.warning()}"]
    return "\n".join(lines)
