"""``flashevolve run``: a headless, resumable run recorded in a run directory.

The configuration file (TOML or JSON) holds the demo's settings as top-level
keys (``minutes``, ``seed``, ``depth``, ``profile``... see ``DemoConfig``)
plus ``clock`` (``real`` or ``virtual``). Every admission is printed as one
line once it is durable in the run store, so a log of the output never
claims more than the store holds. After a crash or a kill, ``--resume``
continues the stored run with the budget that is left.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import difflib
import json
import signal
import sys
import tomllib
from pathlib import Path
from typing import Any

from flashevolve_nb.cli.checks import check_clock, new_loop
from flashevolve_nb.cli.progress import ClockWarning
from flashevolve_nb.demo import DemoConfig
from flashevolve_nb.engine import Pipeline, RunFailed
from flashevolve_nb.engine.bus import EventBus
from flashevolve_nb.engine.events import Admitted, Event, RunResumed, StepRestarted
from flashevolve_nb.runtime.launch import demo_builder
from flashevolve_nb.store import attach, open_run
from flashevolve_nb.store.schema import WORKLOAD_DIR

__all__ = ["add_parser", "load_config"]

_SKIP = {"gepa", "controller_params"}  # objects, not settings a file can hold
_EXTRA = {"clock": ("real", "virtual"), "workload": ("gepa", "ace", "meta-harness")}


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run an evolution headless, recorded in a run directory (resumable)",
        description=(
            "Run a demo evolution (GEPA by default; workload = 'ace' or 'meta-harness' in the "
            "file picks another) from a configuration "
            "file, recording everything in a run directory (SQLite). Each admission is printed "
            "once it is durable. After a crash or a kill, --resume continues the stored run."
        ),
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="TOML or JSON file of run settings (DemoConfig fields, workload = 'gepa', 'ace' "
        "or 'meta-harness', plus clock = 'real' or "
        "'virtual'); with --resume it may be left out to reuse the stored settings",
    )
    p.add_argument(
        "--run-dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="where the run is recorded: a new or empty directory, or with --resume the "
        "directory of the run to continue",
    )
    p.add_argument("--resume", action="store_true", help="continue the run stored in --run-dir")
    p.add_argument("--quiet", action="store_true", help="do not print a line per admission")
    p.set_defaults(handler=_handle, command_parser=p)


def load_config(path: Path) -> dict[str, Any]:
    """The run settings in ``path``, checked key by key (a typo is named, with a guess)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read the config file {path}: {exc.strerror}") from None
    try:
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(
            f"{path} is not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}"
        ) from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a table of settings at the top level")
    return check_settings(raw, str(path))


def check_settings(raw: dict[str, Any], where: str) -> dict[str, Any]:
    known = [f.name for f in dataclasses.fields(DemoConfig) if f.name not in _SKIP]
    allowed = [*known, *_EXTRA]
    for key, value in raw.items():
        if key not in allowed:
            guess = difflib.get_close_matches(key, allowed, n=1)
            hint = (
                f"; did you mean {guess[0]!r}?" if guess else f"; known keys: {', '.join(allowed)}"
            )
            raise ValueError(f"{where}: unknown setting {key!r}{hint}")
        if key in _EXTRA and value not in _EXTRA[key]:
            options = " or ".join(repr(v) for v in _EXTRA[key])
            raise ValueError(f"{where}: {key} must be {options} (got {value!r})")
    return dict(raw)


def _handle(args: argparse.Namespace) -> int:
    if args.config is not None:
        settings = load_config(args.config)
    elif args.resume:
        with open_run(args.run_dir) as stored:
            settings = check_settings(dict(stored.config.get("run") or {}), str(args.run_dir))
    else:
        raise ValueError("--config FILE is needed to start a run (only --resume can do without)")
    clock = settings.pop("clock", "real")
    workload = settings.pop("workload", "gepa")
    check_clock(clock)  # before the run directory is touched
    try:
        config = DemoConfig(**settings)
    except TypeError as exc:
        raise ValueError(f"run settings: {exc}") from None
    bus = EventBus()
    if not args.quiet:
        bus.subscribe(_print_progress)
    bus.subscribe(ClockWarning(stream=sys.stderr, fix=_CLOCK_FIX))
    extra: dict[str, Any] = {}
    if workload == "meta-harness":  # its candidates' history lives with the run
        extra["history_dir"] = Path(args.run_dir) / WORKLOAD_DIR / "candidates"
    demo = demo_builder(workload)(config, bus=bus, **extra)
    store = attach(
        demo.pipeline,
        args.run_dir,
        resume=args.resume,
        config={**settings, "clock": clock, "workload": workload},
    )
    loop = new_loop(clock)
    try:
        _stop_on_signals(loop, demo.pipeline)
        try:
            result = loop.run_until_complete(demo.run())
        except RunFailed as exc:
            print(f"run failed: {exc}", file=sys.stderr)
            return 1
    finally:
        store.close()
        loop.close()
    s = result.stats
    print(
        f"finished: {result.finish_reason}\n"
        f"session {store.session}; pool version {result.pool.version}, "
        f"{len(result.pool.entries)} artifacts; best {result.pool.best_id} "
        f"score {result.best_score:.4f}; {s.proposals} proposals, {s.accepted} accepted "
        f"over {s.minutes:.1f} simulated minutes\nrecorded in {args.run_dir}",
        flush=True,
    )
    if s.clock_behind is not None:  # last, where it cannot be missed; the run store keeps it too
        print(s.clock_behind.warning(_CLOCK_FIX), file=sys.stderr, flush=True)
    return 130 if result.finish_reason.startswith("interrupted") else 0


_CLOCK_FIX = "Lower time_scale in the run's config, or set its clock to 'virtual'."


def _print_progress(e: Event) -> None:
    # Admitted is emitted only after the run store has made the admission durable.
    if isinstance(e, Admitted):
        print(
            f"admitted v{e.version} {e.artifact_id} step={e.step} score={e.score:.4f}", flush=True
        )
    elif isinstance(e, RunResumed):
        print(
            f"resumed session {e.session} at pool version {e.version}; "
            f"re-deriving {len(e.redo_steps)} step(s) cut off",
            flush=True,
        )
    elif isinstance(e, StepRestarted):
        print(f"step {e.step} re-derives step {e.previous_step}", flush=True)


def _stop_on_signals(loop: asyncio.AbstractEventLoop, pipeline: Pipeline) -> None:
    """Ctrl-C or SIGTERM ends the run cleanly: it is recorded as interrupted, resumable."""

    def stop(name: str) -> None:
        print(f"\n{name}: stopping the run; continue it later with --resume", file=sys.stderr)
        pipeline.stop("cancel", reason=f"interrupted ({name})")

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop, sig.name)
