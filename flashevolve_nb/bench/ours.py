"""This project's systems against any OpenAI-compatible server over HTTP.

The same demo the CLI runs (:func:`~flashevolve_nb.demo.build_demo`), with
every role's model an :class:`~flashevolve_nb.llm.openai_backend.OpenAIBackend`
pointed at the benchmark's server: the rulebook task, seed and budget are the
ones ``gepa`` gets in :func:`~flashevolve_nb.bench.gepa_http.run_gepa`, and
the held-out score comes from the very same function.

Figures come from the run's own events (:class:`~flashevolve_nb.engine.stats.RunStats`):
proposals (``ProposalMade``), accepted (``Admitted``, the seed excluded),
validation sweeps (``ValidationDone``), metric calls (the budget tracker).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from flashevolve_nb.bench.figures import RunBudget, RunFigures
from flashevolve_nb.bench.gepa_http import (
    DEFAULT_SIZES,
    HttpChat,
    RequestExtra,
    TaskSizes,
    held_out_score,
)
from flashevolve_nb.bench.systems import OUR_SYSTEMS
from flashevolve_nb.clock import Clock
from flashevolve_nb.compat.simulated import rulebook_for_gepa
from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine.events import Admitted, Event, LLMCallFinished, ValidationDone
from flashevolve_nb.llm.openai_backend import OpenAIBackend
from flashevolve_nb.llm.protocol import LLM

__all__ = ["run_ours", "wasted_tokens"]

_NO_TIME_LIMIT_MINUTES = 1e6


def wasted_tokens(events: tuple[Event, ...] | list[Event]) -> int:
    """Completion tokens of steps that admitted nothing (gated out, stale, discarded...).

    A step's LLM calls carry its number; the steps with an ``Admitted`` event
    (the seed's included) did useful work, every other step's tokens were spent
    for nothing. Calls cut short by speculation report no tokens here; the
    server-side figures count what they decoded.
    """
    useful = {e.step for e in events if isinstance(e, Admitted)}
    return sum(
        e.completion_tokens
        for e in events
        if isinstance(e, LLMCallFinished) and e.step not in useful
    )


def _per_request(
    request_extra: RequestExtra | None, role: str
) -> Callable[[], Mapping[str, Any]] | None:
    if request_extra is None:
        return None
    return lambda: request_extra(role)


def run_ours(
    base_url: str,
    model: str,
    *,
    system: str = "flash",
    seed: int,
    budget: RunBudget,
    time_scale: float = 1.0,
    request_extra: RequestExtra | None = None,
    sizes: TaskSizes = DEFAULT_SIZES,
    api_key: str | None = None,
    held_out: bool = True,
    max_concurrency: int = 256,
    after_run: Callable[[], None] | None = None,
    before_run: Callable[[], None] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RunFigures:
    """Run one of our systems on the rulebook task against ``base_url``; block.

    What part D (and anyone else) may rely on, as a stable contract:

    - ``system``: a name of :data:`~flashevolve_nb.bench.systems.OUR_SYSTEMS`
      (``flash`` is the default configuration); ``overrides`` change more
      :class:`~flashevolve_nb.demo.DemoConfig` fields.
    - Same task (``rulebook_for_gepa(seed, **sizes)``'s splits), seed and
      ``budget`` semantics as :func:`~flashevolve_nb.bench.gepa_http.run_gepa`;
      ``time_scale=1`` against a real engine.
    - ``request_extra(kind)`` is merged into every request of that role
      (``task``, ``reflection``, ``repair``), e.g. ``max_tokens`` and
      ``extra_body={"ignore_eos": True}``; the held-out evaluation uses ``task``.
    - At most ``max_concurrency`` requests in flight per role.
    - Returns :class:`RunFigures` with ``system`` set to the name; ``before_run()``
      is called just before the run starts, ``after_run()`` once it ended, before
      the held-out evaluation.

    Runs its own event loop: call it from a thread without a running loop.
    """
    if system not in OUR_SYSTEMS:
        raise ValueError(f"unknown system {system!r}; ours are: {', '.join(OUR_SYSTEMS)}")
    return asyncio.run(
        _run(base_url, model, system, seed, budget, time_scale, request_extra, sizes,
             api_key, held_out, max_concurrency, after_run, before_run, overrides or {})
    )  # fmt: skip


async def _run(
    base_url: str,
    model: str,
    system: str,
    seed: int,
    budget: RunBudget,
    time_scale: float,
    request_extra: RequestExtra | None,
    sizes: TaskSizes,
    api_key: str | None,
    held_out: bool,
    max_concurrency: int,
    after_run: Callable[[], None] | None,
    before_run: Callable[[], None] | None,
    overrides: Mapping[str, Any],
) -> RunFigures:
    clock = Clock(time_scale)
    real = budget.real_seconds(time_scale)
    minutes = real * time_scale / 60.0 if real is not None else _NO_TIME_LIMIT_MINUTES
    config = DemoConfig(
        **{**OUR_SYSTEMS[system], **overrides},
        seed=seed,
        minutes=minutes,
        time_scale=time_scale,
        max_metric_calls=budget.metric_calls,
        n_train=sizes.n_train,
        n_val=sizes.n_val,
        n_test=sizes.n_test,
    )
    backends: dict[str, OpenAIBackend] = {
        role: OpenAIBackend(
            model=model,
            base_url=base_url,
            api_key=api_key,
            clock=clock,
            max_concurrency=max_concurrency,
            name=f"{role}: {model}",
            # Called per request, not once per role: a replayed length differs per request.
            request_extra=_per_request(request_extra, role),
        )
        for role in ("task", "reflection", "repair")
    }
    llms: dict[str, LLM] = dict(backends)
    try:
        demo = build_demo(config, clock=clock, llms=llms)
        if before_run is not None:
            before_run()
        t0 = time.perf_counter()
        result = await demo.run()
        wall = time.perf_counter() - t0
        if after_run is not None:
            after_run()
    finally:
        for b in backends.values():
            await b.aclose()
    events = result.events
    stats = result.stats
    curve: list[tuple[float, float]] = []
    best = float("-inf")
    for e in events:
        if isinstance(e, Admitted) and e.score > best:
            best = e.score
            curve.append((e.t, e.score))
    best_test = seed_test = None
    if held_out:
        data = rulebook_for_gepa(seed=seed, n_train=sizes.n_train, n_val=sizes.n_val,
                                 n_test=sizes.n_test)  # fmt: skip
        chat = HttpChat(base_url, model, api_key=api_key, request_extra=request_extra)
        try:
            best_components = dict(result.best.components)
            best_test, seed_test = await asyncio.gather(
                asyncio.to_thread(held_out_score, chat, data, best_components),
                asyncio.to_thread(held_out_score, chat, data, data.seed_candidate),
            )
        finally:
            chat.close()
    return RunFigures(
        system=system,
        seed=seed,
        time_scale=time_scale,
        wall_seconds=wall,
        sim_seconds=wall * time_scale,
        proposals=stats.proposals,
        accepted=stats.accepted,
        val_sweeps=sum(1 for e in events if isinstance(e, ValidationDone)),
        metric_calls=demo.pipeline.budget.metric_calls,
        llm_requests=stats.llm_calls,
        prompt_tokens=stats.prompt_tokens,
        completion_tokens=stats.completion_tokens,
        wasted_tokens=wasted_tokens(events),
        seed_val=stats.seed_score,
        best_val=result.best_score,
        best_test=best_test,
        seed_test=seed_test,
        curve=tuple(curve),
        notes=(f"finish: {result.finish_reason}",),
        client_lag=demo.pipeline.lag.report().sim_lag_mean,
    )
