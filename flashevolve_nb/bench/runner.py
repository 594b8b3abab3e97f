"""Profiles x time scales x seeds x systems: the benchmark's loop.

For every (profile, time scale, seed) one simulator server process starts
(:class:`~flashevolve_nb.bench.sampling.ServerProcess`) and every system runs
against it in turn, ``gepa`` first, with the same task, seed and simulated
time budget; the server's load is read between the start and the end of each
run. A second pass gives every system the same metric-call budget (the
"equal metric calls" table, one per budget), each run on a fresh server: the
simulator samples each repeat of a conversation afresh, so a server that already
served ``gepa``'s run would give the next system other draws for the same seed.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from flashevolve_nb.bench.figures import RunBudget, RunFigures
from flashevolve_nb.bench.gepa_http import TaskSizes, run_gepa
from flashevolve_nb.bench.metrics import figures, server_lag
from flashevolve_nb.bench.ours import run_ours
from flashevolve_nb.bench.sampling import ServerProcess, ServerWindow, window
from flashevolve_nb.bench.systems import OUR_SYSTEMS, check_systems
from flashevolve_nb.bench.turbo import TurboUnavailable, run_turbo
from flashevolve_nb.engine.controller import ControllerParams

__all__ = ["BenchConfig", "BenchResult", "RunRecord", "run_bench"]

BudgetKind = Literal["time", "calls"]


@dataclass(frozen=True)
class BenchConfig:
    profiles: tuple[str, ...] = ("vllm", "api")
    systems: tuple[str, ...] = ("gepa", *OUR_SYSTEMS)
    seeds: tuple[int, ...] = (0,)
    minutes: float = 10.0
    """Simulated minutes per run (the equal-time budget)."""
    time_scales: tuple[float, ...] = (30.0,)
    """Simulated seconds per real second; keep the client's CPU share (in the report)
    well under 85%, or the run measures the machine, not the scheduling."""
    equal_calls: tuple[int, ...] | None = None
    """Metric calls per run of the equal-budget tables, one table each (None: none)."""
    equal_calls_scale: float | None = None
    """Time scale of the equal-budget pass (None: the first of ``time_scales``). It
    compares sample efficiency, not speed, so a fast clock costs it nothing."""
    time_pass: bool = True
    """Run the equal-time passes (False: only the equal-calls table, e.g. over more seeds)."""
    scale_systems: tuple[str, ...] | None = None
    """Systems run at the time scales after the first (None: all of them); the
    check that ratios hold across scales needs only ``gepa`` and one of ours."""
    sizes: TaskSizes = field(default_factory=TaskSizes)
    held_out: bool = True
    command: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "systems", check_systems(self.systems))
        if self.scale_systems is not None:
            object.__setattr__(self, "scale_systems", check_systems(self.scale_systems))
            extra = set(self.scale_systems) - set(self.systems)
            if extra:
                raise ValueError(
                    f"scale_systems {', '.join(sorted(extra))} are not among the systems "
                    f"({', '.join(self.systems)})"
                )
        if self.equal_calls is not None:
            calls = tuple(dict.fromkeys(self.equal_calls))
            if not calls or any(isinstance(n, bool) or not isinstance(n, int) or n < 1
                                for n in calls):  # fmt: skip
                raise ValueError(f"equal_calls must be ints >= 1 (got {self.equal_calls!r})")
            object.__setattr__(self, "equal_calls", calls)
        if self.equal_calls_scale is not None and not self.equal_calls_scale > 0:
            raise ValueError("equal_calls_scale must be > 0")
        if not self.time_pass and self.equal_calls is None:
            raise ValueError("with no equal-time pass, give an equal-calls budget: nothing to run")
        if not self.seeds or not self.time_scales or not self.profiles:
            raise ValueError("give at least one seed, one time scale and one profile")
        if self.minutes <= 0 or any(s <= 0 for s in self.time_scales):
            raise ValueError("minutes and time scales must be > 0")


@dataclass(frozen=True)
class RunRecord:
    """One system's run: where, under which budget, and what it gave."""

    profile: str
    time_scale: float
    seed: int
    budget: BudgetKind
    system: str
    figures: dict[str, float]
    curve: tuple[tuple[float, float], ...]
    series: tuple[tuple[float, int, int], ...]
    notes: tuple[str, ...] = ()
    error: str = ""
    load: float = 0.0
    """The machine's 1-minute load average when the run ended (other work skews timing)."""
    call_budget: int | None = None
    """The metric-call budget of a ``calls`` run (its table); None for a ``time`` run."""


@dataclass(frozen=True)
class BenchResult:
    meta: dict[str, Any]
    records: tuple[RunRecord, ...]


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, Any]:
    """Versions, machine and load, for the report's header."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": {n: _version(n) for n in ("flashevolve_nb", "gepa", "openai", "turbo-gepa")},
        "loadavg_start": list(os.getloadavg()),
    }


def _one(
    server: ServerProcess,
    system: str,
    seed: int,
    budget: RunBudget,
    config: BenchConfig,
) -> tuple[RunFigures, ServerWindow, float, float]:
    marks: dict[str, Any] = {}

    def before() -> None:
        server.samples()  # drop the previous run's samples
        marks["start"] = server.snapshot()
        marks["cpu0"], marks["wall0"] = time.process_time(), time.perf_counter()

    def after() -> None:
        marks["cpu1"], marks["wall1"] = time.process_time(), time.perf_counter()
        marks["end"] = server.snapshot()
        marks["samples"] = server.samples()

    common: dict[str, Any] = {
        "seed": seed, "budget": budget, "time_scale": server.time_scale, "sizes": config.sizes,
        "held_out": config.held_out, "before_run": before, "after_run": after,
    }  # fmt: skip
    if system == "gepa":
        run = run_gepa(server.base_url, server.model, **common)
    elif system == "turbo-gepa":
        run = run_turbo(server.base_url, server.model, **common)
    else:
        # The server says how many sequences it serves at once (/sim/stats, as a real
        # vLLM would be asked); the adaptive controller aims its depth at that load.
        cap = int(server.snapshot().get("max_running") or 0) or None
        params = {"controller_params": ControllerParams(server_cap=cap)}
        run = run_ours(server.base_url, server.model, system=system, overrides=params, **common)
    wall = marks["wall1"] - marks["wall0"]
    client_cpu = (marks["cpu1"] - marks["cpu0"]) / wall if wall > 0 else float("nan")
    lag = server_lag(marks["start"], marks["end"])
    return run, window(marks["start"], marks["end"], marks["samples"]), client_cpu, lag


def run_bench(config: BenchConfig, progress: Callable[[str], None] = print) -> BenchResult:
    """Run everything ``config`` asks for; ``progress`` hears one line per run."""
    meta = environment()
    meta.update(
        command=config.command,
        profiles=list(config.profiles),
        systems=list(config.systems),
        seeds=list(config.seeds),
        minutes=config.minutes,
        time_scales=list(config.time_scales),
        equal_calls=list(config.equal_calls or ()),
        equal_calls_scale=config.equal_calls_scale or config.time_scales[0],
        scale_systems=list(config.scale_systems or config.systems),
        sizes={"n_train": config.sizes.n_train, "n_val": config.sizes.n_val,
               "n_test": config.sizes.n_test},
    )  # fmt: skip
    records: list[RunRecord] = []
    later = config.scale_systems or config.systems
    passes: list[tuple[BudgetKind, float, RunBudget, tuple[str, ...]]] = [
        ("time", scale, RunBudget(sim_minutes=config.minutes), config.systems if i == 0 else later)
        for i, scale in enumerate(config.time_scales)
        if config.time_pass
    ]
    for calls in config.equal_calls or ():
        # a generous time cap so a stuck system cannot hold the benchmark forever (gepa
        # takes about 20 simulated minutes per 400 calls)
        passes.append(("calls", config.equal_calls_scale or config.time_scales[0],
                       RunBudget(metric_calls=calls,
                                 sim_minutes=config.minutes * 20 * max(1, calls / 400)),
                       config.systems))  # fmt: skip
    t_start = time.perf_counter()
    for profile in config.profiles:
        for kind, scale, budget, systems in passes:
            for seed in config.seeds:
                # Equal calls compare what each system makes of the same draws: a fresh
                # server per run (see the module docstring); equal time shares one.
                for group in [[s] for s in systems] if kind == "calls" else [list(systems)]:
                    with ServerProcess(profile, seed=seed, time_scale=scale) as server:
                        for system in group:
                            records.append(_record(server, profile, kind, system, seed,
                                                   budget, config, progress))  # fmt: skip
    meta["loadavg_end"] = list(os.getloadavg())
    meta["loadavg_max"] = max((r.load for r in records), default=0.0)
    meta["wall_seconds"] = time.perf_counter() - t_start
    return BenchResult(meta, tuple(records))


def _record(
    server: ServerProcess,
    profile: str,
    kind: BudgetKind,
    system: str,
    seed: int,
    budget: RunBudget,
    config: BenchConfig,
    progress: Callable[[str], None],
) -> RunRecord:
    calls = budget.metric_calls if kind == "calls" else None
    label = f"{profile:4} {kind:5} {server.time_scale:>5g}x seed {seed} {system:16}"
    if calls is not None:
        label = f"{profile:4} {calls:>5} calls {server.time_scale:>5g}x seed {seed} {system:16}"
    t0 = time.perf_counter()
    try:
        run, win, client_cpu, lag = _one(server, system, seed, budget, config)
    except TurboUnavailable as exc:
        progress(f"{label} skipped: {exc}")
        return RunRecord(profile, server.time_scale, seed, kind, system, {}, (), (),
                         error=str(exc), call_budget=calls)  # fmt: skip
    figs = figures(run, win, client_cpu=client_cpu, server_lag=lag)
    progress(
        f"{label} {figs['proposals_per_min']:6.1f} proposals/min "
        f"{figs['accepted_per_min']:5.2f} accepted/min  in-flight {figs['mean_in_flight']:5.1f} "
        f"best val {figs['best_val']:.3f}  cpu client {figs['client_cpu']:.0%} server "
        f"{figs['server_cpu']:.0%}  ({time.perf_counter() - t0:.1f}s, "
        f"load {os.getloadavg()[0]:.1f})"
    )
    return RunRecord(
        profile=profile,
        time_scale=server.time_scale,
        seed=seed,
        budget=kind,
        system=system,
        figures=figs,
        curve=run.curve,
        series=win.series,
        notes=run.notes,
        load=os.getloadavg()[0],
        call_budget=calls,
    )
