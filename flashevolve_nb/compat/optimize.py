"""``flashevolve_nb.optimize``: ``gepa.optimize``'s arguments, our asynchronous engine.

Porting is one line: ``gepa.optimize(...)`` becomes ``flashevolve_nb.optimize(...)``
with the same arguments (seed candidate, datasets, adapter or task model,
reflection model, minibatch size, candidate selection, ``max_metric_calls``,
callbacks, seed, ``run_dir``...). Keyword-only extras choose the schedule:
``mode``, ``depth``, ``workers``, ``policy`` (staleness), ``controller``, and how
the adapter is called (``adapter_concurrency``, ``split_batches``).

``gepa`` options this engine does not have (merge, other frontiers, custom
samplers, caching, experiment trackers) are refused when set to anything but
``gepa``'s default, with a message saying so; options that only change
logging are accepted and ignored. Where behaviour differs on purpose:

- ``max_metric_calls`` is a hard cap (``gepa`` can overshoot by an iteration), and
  one smaller than the validation set (the seed's first evaluation) is refused;
- ``raise_on_exception`` defaults to False: an adapter that raises fails its
  step, not the run (``gepa``'s default stops the run);
- proposals identical to their parent are not evaluated;
- the adapter is called from several threads at once (``adapter_concurrency=1``
  for one that is not thread-safe).

``optimize`` blocks; inside a running event loop (a notebook cell) it runs on a
fresh loop in a helper thread. ``await optimize_async(...)`` does not block.
:func:`prepare` builds the run without starting it, for the dashboard::

    opt = flashevolve_nb.compat.prepare(...)
    run = flashevolve_nb.start(opt.pipeline); run.dashboard()
    result = opt.result()      # after the run
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
import random
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, TypeVar

from flashevolve_nb.clock import Clock
from flashevolve_nb.compat.callbacks import CallbackBridge
from flashevolve_nb.compat.calls import AdapterCalls
from flashevolve_nb.compat.data import IdSpace, as_loader
from flashevolve_nb.compat.lm import CallableLLM, as_llm
from flashevolve_nb.compat.reflection import Parse, Reflector
from flashevolve_nb.compat.result import OptimizeResult
from flashevolve_nb.compat.rundir import RunDir
from flashevolve_nb.compat.workload import AdapterConfig, AdapterWorkload
from flashevolve_nb.engine import Budget, Pipeline, PipelineConfig
from flashevolve_nb.engine.budget import HardCap
from flashevolve_nb.engine.config import Mode
from flashevolve_nb.engine.controller import ControllerParams
from flashevolve_nb.engine.speculation import SpeculationConfig
from flashevolve_nb.engine.staleness import StalenessPolicy

__all__ = ["Optimization", "optimize", "optimize_async", "prepare"]

P = ParamSpec("P")
R = TypeVar("R")

# gepa.optimize options without a counterpart here, with gepa's default: any
# other value is refused (it would silently change what the run does).
_UNSUPPORTED: dict[str, Any] = {
    "frontier_type": "instance",
    "batch_sampler": "epoch_shuffled",
    "use_merge": False,
    "max_merge_invocations": 5,
    "merge_val_overlap_floor": 5,
    "max_reflection_cost": None,
    "reflection_lm_kwargs": None,
    "use_wandb": False,
    "wandb_api_key": None,
    "wandb_init_kwargs": None,
    "wandb_attach_existing": False,
    "use_mlflow": False,
    "mlflow_tracking_uri": None,
    "mlflow_experiment_name": None,
    "mlflow_attach_existing": False,
    "tracking_key_prefix": "",
    "cache_evaluation": False,
    "val_evaluation_policy": None,
    "sampling_strategy": None,
    "selection_strategy": None,
    "reflection_strategy": None,
}
# gepa.optimize options that only change logging or pickling: accepted, ignored.
_IGNORED = frozenset({"logger", "display_progress_bar", "use_cloudpickle", "track_best_outputs"})


@dataclass
class Optimization:
    """A prepared run: the pipeline (not started) and the workload that follows it."""

    pipeline: Pipeline
    workload: AdapterWorkload
    calls: AdapterCalls
    reflection: Any = None

    async def run(self) -> OptimizeResult:
        """Run the pipeline here and return the result; adapter threads are done on return."""
        t0 = time.perf_counter()
        try:
            await self.pipeline.run()
        finally:
            await asyncio.to_thread(self.close)
        if self.workload.fatal is not None:
            raise self.workload.fatal
        return self.result(wall_seconds=time.perf_counter() - t0)

    def result(self, *, wall_seconds: float = 0.0) -> OptimizeResult:
        """The result so far (complete once the pipeline has finished)."""
        return self.workload.result(wall_seconds=wall_seconds)

    def close(self) -> None:
        """Wait for adapter and model calls still in their threads, then free the threads."""
        self.calls.close()
        if isinstance(self.reflection, CallableLLM):
            self.reflection.close()


def prepare(
    seed_candidate: Mapping[str, str],
    trainset: Any,
    valset: Any = None,
    adapter: Any = None,
    task_lm: Any = None,
    evaluator: Any = None,
    reflection_lm: Any = None,
    candidate_selection_strategy: str | Any = "pareto",
    skip_perfect_score: bool = True,
    reflection_minibatch_size: int | None = None,
    perfect_score: float = 1.0,
    reflection_prompt_template: str | Mapping[str, str] | None = None,
    custom_candidate_proposer: Callable[..., Mapping[str, str]] | None = None,
    module_selector: Literal["round_robin", "all"] = "round_robin",
    max_metric_calls: int | None = None,
    stop_callbacks: Callable[[Any], bool] | Sequence[Callable[[Any], bool]] | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    callbacks: Sequence[Any] | None = None,
    seed: int = 0,
    raise_on_exception: bool = False,
    acceptance_criterion: Literal[
        "strict_improvement", "improvement_or_equal"
    ] = "strict_improvement",
    *,
    mode: Mode = "async",
    depth: int = 16,
    workers: Mapping[str, int] | None = None,
    policy: str | StalenessPolicy = "accept",
    controller: Literal["fixed", "adaptive"] = "fixed",
    controller_params: ControllerParams | None = None,
    adapter_concurrency: int = 32,
    split_batches: int = 10,
    reflection_parse: Parse = "gepa",
    max_wall_seconds: float | None = None,
    speculation: SpeculationConfig | float | None = None,
    **gepa_options: Any,
) -> Optimization:
    """Build a ``gepa``-style run on our pipeline, without starting it.

    Arguments up to ``acceptance_criterion`` are ``gepa.optimize``'s (same names,
    same meaning, see the module docstring for where behaviour differs). Ours:

    - ``mode``: ``async`` (steps overlap) or ``sync`` (one step at a time, ``gepa``'s schedule);
    - ``depth``: evolution steps in flight at most; ``workers``: per-stage worker counts;
    - ``policy``: what to do with stale work (``accept``, ``guarded[:N]``, ``discard``,
      ``reflective``, ``meta``, or a policy object);
    - ``controller``: ``adaptive`` moves workers and sizes the pipeline as the run goes
      (``controller_params``; its ``interval`` is in wall seconds here, default 10);
    - ``adapter_concurrency``: adapter calls running at once (threads);
    - ``split_batches``: an evaluation is cut into at most this many adapter calls;
    - ``reflection_parse``: ``gepa`` (as ``gepa`` reads answers) or ``strict`` (fenced only);
    - ``max_wall_seconds``: stop after this many seconds (in-flight work is cancelled);
    - ``speculation``: speculative completion of the validation stage, as in the demo.
      A :class:`~flashevolve_nb.engine.speculation.SpeculationConfig`
      (``SpeculationConfig(alpha={"validate": 0.5}, validation=True)``), or a number
      ``alpha`` < 1 as shorthand for ``SpeculationConfig(alpha=alpha, validation=True)``:
      validation hands its output on once ``alpha`` of its adapter calls are in (the
      examples most discriminative first, cut into ``split_batches`` calls; an adapter
      with ``batch_evaluate`` is one call, so it cannot release early) and a candidate
      whose prefix beats its parent joins the pool at once, confirmed or rolled back
      when the rest is in. Only ``validate`` can release early here (the minibatch
      evaluations need the adapter's whole traces). Default None: no speculation.
    """
    _check_gepa_options(gepa_options)
    speculation_config = _speculation(speculation)
    _check_arguments(seed_candidate, max_metric_calls, reflection_minibatch_size)
    if max_metric_calls is None and not stop_callbacks and max_wall_seconds is None:
        raise ValueError(
            "give the run an end: max_metric_calls, stop_callbacks or max_wall_seconds "
            "(gepa.optimize needs one too)"
        )
    if adapter is None:
        if task_lm is None:
            raise ValueError("give an adapter, or a task_lm for gepa's DefaultAdapter")
        adapter = _default_adapter(task_lm, evaluator)
    elif task_lm is not None or evaluator is not None:
        raise ValueError(
            "task_lm and evaluator build gepa's DefaultAdapter; with your own adapter leave "
            "them out (as gepa.optimize requires)"
        )
    train_loader = as_loader(trainset, "trainset")
    train = IdSpace.of(train_loader, "trainset")
    val = IdSpace.of(as_loader(valset, "valset"), "valset") if valset is not None else train
    calls = AdapterCalls(adapter, concurrency=adapter_concurrency, split=split_batches)
    reflection = as_llm(reflection_lm, seed=seed) if reflection_lm is not None else None
    try:
        reflector = Reflector(
            adapter,
            calls,
            llm=reflection,
            template=reflection_prompt_template,
            parse=reflection_parse,
            custom_proposer=custom_candidate_proposer,
        )
        config = AdapterConfig(
            minibatch_size=3 if reflection_minibatch_size is None else reflection_minibatch_size,
            candidate_selection=_selection(candidate_selection_strategy, seed),
            module_selector=module_selector,
            skip_perfect_score=skip_perfect_score,
            perfect_score=perfect_score,
            acceptance=acceptance_criterion,
        )
        if stop_callbacks is None:
            stoppers: list[Callable[[Any], bool]] = []
        elif callable(stop_callbacks):
            stoppers = [stop_callbacks]
        else:
            stoppers = list(stop_callbacks)
        workload = AdapterWorkload(
            adapter,
            train,
            val,
            seed_candidate,
            calls=calls,
            reflector=reflector,
            config=config,
            budget=HardCap(max_metric_calls),
            callbacks=CallbackBridge(callbacks),
            stoppers=stoppers,
            run_dir=RunDir(run_dir) if run_dir is not None else None,
            seed=seed,
            raise_on_exception=raise_on_exception,
        )
        pipeline = Pipeline(
            workload,
            PipelineConfig(
                mode=mode,
                depth=depth,
                workers=dict(workers or {}),
                policy=policy,
                seed=seed,
                controller=controller,
                controller_params=controller_params or ControllerParams(interval=10.0),
                budget=Budget(
                    max_metric_calls=max_metric_calls,
                    max_wall_seconds=max_wall_seconds,
                    hard_metric_cap=True,
                ),
                speculation=speculation_config,
            ),
            clock=Clock(1.0),
        )
    except BaseException:
        calls.close()
        raise
    workload.attach(pipeline)
    return Optimization(pipeline, workload, calls, reflection)


def _as_async(fn: Callable[P, Optimization]) -> Callable[P, Coroutine[Any, Any, OptimizeResult]]:
    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> OptimizeResult:
        return await fn(*args, **kwargs).run()

    return run


def _blocking(fn: Callable[P, Optimization]) -> Callable[P, OptimizeResult]:
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> OptimizeResult:
        def main() -> Coroutine[Any, Any, OptimizeResult]:
            return fn(*args, **kwargs).run()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            in_loop = False
        else:
            in_loop = True
        if not in_loop:  # outside the except block: errors here chain to nothing of ours
            return asyncio.run(main())
        # A loop runs here already (a notebook cell): it cannot be re-entered, so run
        # on a fresh loop in a helper thread and block this one until it is done.
        with ThreadPoolExecutor(1, thread_name_prefix="flashevolve-optimize") as pool:
            return pool.submit(lambda: asyncio.run(main())).result()

    return run


optimize_async = _as_async(prepare)
optimize_async.__doc__ = """:func:`optimize` to await: ``result = await optimize_async(...)``."""
optimize = _blocking(prepare)
optimize.__doc__ = """Optimise ``seed_candidate`` with GEPA on our asynchronous engine; blocks.

Takes ``gepa.optimize``'s arguments (and ours, see :func:`prepare`) and
returns an :class:`OptimizeResult` with ``gepa``'s result fields;
``result.to_gepa()`` converts it to ``gepa``'s own ``GEPAResult``.
"""


def _check_arguments(
    seed_candidate: object, max_metric_calls: object, reflection_minibatch_size: object
) -> None:
    """Malformed arguments named, with what to give instead, before anything is built."""
    if not isinstance(seed_candidate, Mapping):
        raise TypeError(
            "seed_candidate maps component names to their texts, e.g. "
            f"{{'system_prompt': 'You are ...'}} (got {type(seed_candidate).__name__})"
        )
    for name, value, example in (
        ("max_metric_calls", max_metric_calls, "max_metric_calls=500"),
        ("reflection_minibatch_size", reflection_minibatch_size,
         "reflection_minibatch_size=3 (gepa's default)"),
    ):  # fmt: skip
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(
                f"{name} must be an int >= 1 or None (got {type(value).__name__} {value!r}); "
                f"e.g. {example}"
            )
        if value < 1:
            raise ValueError(f"{name} must be >= 1 or None (got {value}); e.g. {example}")


def _check_gepa_options(options: Mapping[str, Any]) -> None:
    for name, value in options.items():
        if name in _IGNORED:
            continue
        if name not in _UNSUPPORTED:
            raise TypeError(f"optimize() got an unexpected keyword argument {name!r}")
        default = _UNSUPPORTED[name]
        if value is not default and value != default:
            raise ValueError(
                f"{name}={value!r} is a gepa.optimize option this engine does not have; "
                f"leave it at gepa's default ({default!r}) or run gepa.optimize for it"
            )


def _speculation(value: SpeculationConfig | float | None) -> SpeculationConfig:
    """``speculation=`` as a config: None is none, a number is alpha with speculative
    validation."""
    if value is None:
        return SpeculationConfig()
    if isinstance(value, SpeculationConfig):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            "speculation is a SpeculationConfig, a number alpha in (0, 1) or None (got "
            f"{type(value).__name__} {value!r}); e.g. speculation=0.5"
        )
    if not 0 < value <= 1:
        raise ValueError(f"speculation alpha must be in (0, 1] (got {value!r}); e.g. 0.5")
    return SpeculationConfig(alpha=float(value), validation=value < 1)


def _selection(strategy: str | Any, seed: int) -> str | Any:
    if strategy == "top_k_pareto":
        module = importlib.import_module("gepa.strategies.candidate_selector")
        return module.TopKParetoCandidateSelector(k=5, rng=random.Random(seed))
    return strategy


def _default_adapter(task_lm: Any, evaluator: Any) -> Any:
    try:
        module = importlib.import_module("gepa.adapters.default_adapter.default_adapter")
    except ImportError:
        raise ImportError(
            "task_lm= builds gepa's DefaultAdapter, which needs the gepa package: "
            "pip install 'flashevolve_nb[gepa]' (or pass your own adapter)"
        ) from None
    return module.DefaultAdapter(model=task_lm, evaluator=evaluator)
