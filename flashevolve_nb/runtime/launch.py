"""``start()``: one call from a notebook cell to a run going on in the background."""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import os
from pathlib import Path
from typing import Any

from flashevolve_nb.demo import Demo, DemoConfig
from flashevolve_nb.engine.pipeline import Pipeline
from flashevolve_nb.runtime.loop import InlineLoop, LoopHost, LoopThread
from flashevolve_nb.runtime.run import Run

__all__ = ["start"]

_numbers = itertools.count(1)


def start(
    what: Pipeline | Demo | DemoConfig | None = None,
    *,
    name: str | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    inline: bool = False,
    workload: str = "gepa",
    **demo_options: Any,
) -> Run:
    """Start a run in the background and return its :class:`Run` handle at once.

    ``what`` is a ready :class:`Pipeline` (not yet run), a built ``Demo``, or
    a ``DemoConfig``; with nothing, the simulated GEPA demo, whose settings can
    be given here by name (``start(minutes=10, seed=1)``). ``workload`` picks
    another algorithm's simulated demo for a ``DemoConfig`` or settings
    (``start(workload="ace")``: ACE's playbook evolution). Each run gets a
    thread with its own event loop, so a blocking cell never stalls it and
    several runs can go on side by side. ``inline=True`` runs it on the loop
    of the calling thread instead (a notebook kernel's: it then pauses while a
    cell blocks).

    ``run_dir`` writes the run to disk through the run store
    (``flashevolve_nb.store``); with ``resume=True`` a run found there goes on
    where it stopped.
    """
    demo: Any = None
    config: dict[str, Any] = {}
    if isinstance(what, Pipeline):
        if demo_options:
            raise TypeError(
                f"demo options {sorted(demo_options)} apply to the demo, not to a ready "
                "Pipeline; configure the pipeline before passing it"
            )
        pipeline = what
    else:
        if isinstance(what, Demo):
            if demo_options:
                raise TypeError("a built Demo takes no options; pass a DemoConfig instead")
            demo = what
        else:
            cfg = what if what is not None else DemoConfig()
            if not isinstance(cfg, DemoConfig):
                raise TypeError(
                    f"start() takes a Pipeline, a Demo or a DemoConfig (got {type(what).__name__})"
                )
            extra: dict[str, Any] = {}
            if workload == "meta-harness" and run_dir is not None:
                # The candidates' history lives with the run, so a resume reads it all again.
                from flashevolve_nb.store.schema import WORKLOAD_DIR

                extra["history_dir"] = Path(run_dir) / WORKLOAD_DIR / "candidates"
            demo = demo_builder(workload)(dataclasses.replace(cfg, **demo_options), **extra)
        pipeline = demo.pipeline
        config = {k: v for k, v in dataclasses.asdict(demo.config).items() if k != "gepa"}
        if workload != "gepa":
            config["workload"] = workload
    if pipeline.state != "created":
        raise RuntimeError(
            f"this pipeline is {pipeline.state}; a pipeline runs once, build a new one"
        )
    if resume and run_dir is None:
        raise ValueError("resume=True needs the run_dir of the run to resume")
    store = _attach_store(pipeline, run_dir, resume, config) if run_dir is not None else None
    name = name or f"run{next(_numbers)}"
    host: LoopHost = InlineLoop() if inline else LoopThread(f"flashevolve-{name}")
    run = Run(pipeline, host, name=name, demo=demo, store=store, own_loop=not inline)
    run._start()
    return run


DEMOS = {
    "gepa": ("flashevolve_nb.demo", "build_demo"),
    "ace": ("flashevolve_nb.workloads.ace.demo", "build_ace_demo"),
    "meta-harness": ("flashevolve_nb.workloads.meta_harness.demo", "build_meta_harness_demo"),
}
"""The simulated demo of each workload: ``start(workload=...)``, ``flashevolve demo --workload``."""


def demo_builder(workload: str) -> Any:
    """The function that builds ``workload``'s demo from a :class:`DemoConfig`."""
    where = DEMOS.get(workload)
    if where is None:
        raise ValueError(
            f"unknown workload {workload!r}; workloads with a demo: {', '.join(DEMOS)}"
        )
    module, name = where
    return getattr(importlib.import_module(module), name)


def _attach_store(
    pipeline: Pipeline,
    run_dir: str | os.PathLike[str],
    resume: bool,
    config: dict[str, Any],
) -> Any:
    try:
        store = importlib.import_module("flashevolve_nb.store")
    except ModuleNotFoundError as exc:
        if exc.name != "flashevolve_nb.store":
            raise
        raise RuntimeError(
            "run_dir= needs the run store (flashevolve_nb.store), which this version of "
            "flashevolve_nb does not have yet; start without run_dir"
        ) from exc
    return store.attach(pipeline, os.fspath(run_dir), resume=resume, config=config)
