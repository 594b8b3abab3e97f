"""Calling a ``gepa`` adapter from the event loop: in threads, bounded, checked.

``gepa`` calls its adapter from one thread, one call at a time. Here the
stages of many evolution steps want evaluations at once, so every adapter
method runs in a worker thread of a pool of ``concurrency`` threads, and an
evaluation of many examples is cut into up to ``split`` ``evaluate`` calls on
consecutive slices of the batch that run side by side (``gepa``'s own default
adapter spreads a batch over a pool of 10 threads in the same way). An
adapter with ``batch_evaluate`` gets the slices in one ``batch_evaluate``
call instead, to parallelise as it likes.

Several threads may therefore be inside the adapter at once: an adapter that
is not thread-safe needs ``concurrency=1``.

Every call goes through ``StageContext.chat`` as a call of role ``task``, so it
is recorded as a pair of events and counts as a request in flight, like any
model call; its tokens are unknown (0). What comes back is checked against
the adapter contract (one output and one score per example, trajectories
aligned with them), so a broken adapter fails its step with a message naming
the rule it broke instead of failing later somewhere less obvious.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import math
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from flashevolve_nb.errors import FlashEvolveError
from flashevolve_nb.llm.protocol import Completion, Message, Usage

if TYPE_CHECKING:
    from flashevolve_nb.engine.context import StageContext

__all__ = [
    "AdapterCalls",
    "AdapterContractError",
    "CancelledInThread",
    "Evaluated",
    "MergedBatch",
    "in_thread",
]

T = TypeVar("T")


class AdapterContractError(FlashEvolveError, ValueError):
    """The adapter returned something the ``gepa`` adapter protocol does not allow."""


class CancelledInThread(FlashEvolveError, RuntimeError):
    """User code in a worker thread raised a CancelledError of its own."""


def in_thread(fn: Callable[[], T], what: str) -> Callable[[], T]:
    """``fn`` made safe to run in an executor thread.

    asyncio turns a ``CancelledError`` coming out of an executor into the awaiting
    task's own cancellation, so a worker would take an adapter's cancelled call
    for its own stop and drop the step without a word. Here it becomes an error.
    """

    def run() -> T:
        try:
            return fn()
        except (concurrent.futures.CancelledError, asyncio.CancelledError) as exc:
            raise CancelledInThread(f"{what} raised {type(exc).__name__}") from exc

    return run


@dataclass(frozen=True)
class MergedBatch:
    """The slices of one evaluation put back together, for adapters whose batch is no dataclass."""

    outputs: list[Any]
    scores: list[float]
    trajectories: list[Any] | None = None
    objective_scores: list[dict[str, float]] | None = None
    num_metric_calls: int | None = None


@dataclass(frozen=True)
class Evaluated:
    """One evaluation of a candidate: the adapter's batch object and what we read from it."""

    batch: Any
    """What ``make_reflective_dataset`` gets back: the adapter's ``EvaluationBatch``
    (or the slices merged into one of the same type)."""
    scores: tuple[float, ...]
    outputs: tuple[Any, ...]
    trajectories: tuple[Any, ...] | None
    objective_scores: tuple[dict[str, float], ...] | None
    metric_calls: int
    """As ``gepa`` counts them: the batch's ``num_metric_calls``, else one per example."""


class _Call:
    """One adapter call dressed as a model call, so ``ctx.chat`` records it."""

    simulated = False

    def __init__(self, name: str, run: Callable[[], Awaitable[Any]], now: Callable[[], float]):
        self.name = name
        self._run = run
        self._now = now
        self.result: Any = None

    async def chat(self, messages: Sequence[Message], **params: Any) -> Completion:
        t0 = self._now()
        self.result = await self._run()
        return Completion("", Usage(), self._now() - t0, "stop", self.name)


class AdapterCalls:
    """Runs one adapter's synchronous methods off the loop, at most ``concurrency`` at a time."""

    def __init__(self, adapter: Any, *, concurrency: int = 32, split: int = 10) -> None:
        if concurrency < 1:
            raise ValueError(f"adapter concurrency must be >= 1 (got {concurrency})")
        if split < 1:
            raise ValueError(f"split must be >= 1 (got {split})")
        if not callable(getattr(adapter, "evaluate", None)):
            raise TypeError(
                f"{type(adapter).__name__} is not a gepa adapter: it has no evaluate(batch, "
                "candidate, capture_traces) method"
            )
        self.adapter = adapter
        self.concurrency = concurrency
        self.split = split
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="flashevolve-adapter")
        self._slots: asyncio.Semaphore | None = None
        self.calls = 0

    @property
    def has_batch_evaluate(self) -> bool:
        return callable(getattr(self.adapter, "batch_evaluate", None))

    def close(self) -> None:
        """Wait for adapter calls still running (threads cannot be stopped) and free the pool."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the pool, without an event (for quick methods such as datasets)."""
        loop = asyncio.get_running_loop()
        name = getattr(fn, "__qualname__", "adapter method")
        return await loop.run_in_executor(self._executor, in_thread(lambda: fn(*args), name))

    async def traced(self, ctx: StageContext, what: str, role: str, fn: Callable[[], T]) -> T:
        """``fn()`` in the pool as one recorded call of ``role`` (waits for a free thread)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        loop = asyncio.get_running_loop()
        safe = in_thread(fn, what)
        call = _Call(what, lambda: loop.run_in_executor(self._executor, safe), ctx.now)
        async with self._slots:
            self.calls += 1
            await ctx.chat(call, [{"role": "user", "content": what}], role=role)
        result: T = call.result
        return result

    async def evaluate(
        self,
        ctx: StageContext,
        candidate: Mapping[str, str],
        examples: Sequence[Any],
        *,
        capture_traces: bool,
        batched: bool = True,
        spent: Callable[[int], None] | None = None,
    ) -> Evaluated:
        """Run ``candidate`` on ``examples`` (``batched``: through ``batch_evaluate`` if any).

        ``spent(n)`` hears the metric calls of every adapter call as it returns, also
        when another part of the same evaluation fails: those examples were evaluated.
        All parts have returned when this returns or raises (the first error).
        """
        n = len(examples)
        if n == 0:
            raise ValueError("an evaluation needs at least one example")
        size = -(-n // self.split)
        slices = self._slices(examples)
        if batched and self.has_batch_evaluate:
            items = [(dict(candidate), s) for s in slices]
            got = await self.traced(
                ctx,
                f"adapter.batch_evaluate: {n} examples in {len(items)} parts",
                "task",
                lambda: self.adapter.batch_evaluate(items),
            )
            parts = list(got) if got is not None else []
            if len(parts) != len(items):
                raise AdapterContractError(
                    f"adapter.batch_evaluate returned {len(parts)} results for {len(items)} "
                    "(candidate, batch) items; it must return one EvaluationBatch per item"
                )
            if spent is not None:
                spent(sum(_metric_calls(p, len(s)) for p, s in zip(parts, slices, strict=True)))
            for k, (part, s) in enumerate(zip(parts, slices, strict=True)):
                _check(part, s, "adapter.batch_evaluate", k * size, n)
        else:
            done = await asyncio.gather(
                *self._slice_calls(ctx, candidate, slices, capture_traces, spent),
                return_exceptions=True,
            )
            for r in done:
                if isinstance(r, BaseException):
                    raise r
            parts = list(done)
        return _combine(parts, [len(s) for s in slices])

    def evaluation_parts(
        self,
        ctx: StageContext,
        candidate: Mapping[str, str],
        examples: Sequence[Any],
        *,
        capture_traces: bool,
        spent: Callable[[int], None] | None = None,
    ) -> tuple[list[Coroutine[Any, Any, Evaluated]], list[int]]:
        """:meth:`evaluate` as parts that finish one by one (for a release at alpha < 1),
        with the number of examples each covers, in order. An adapter with
        ``batch_evaluate`` is one part (one call evaluates everything)."""
        n = len(examples)
        if n == 0:
            raise ValueError("an evaluation needs at least one example")
        if self.has_batch_evaluate:
            whole = self.evaluate(ctx, candidate, examples, capture_traces=capture_traces,
                                  spent=spent)  # fmt: skip
            return [whole], [n]
        slices = self._slices(examples)

        async def one(call: Coroutine[Any, Any, Any], size: int) -> Evaluated:
            return _combine([await call], [size])

        calls = self._slice_calls(ctx, candidate, slices, capture_traces, spent)
        return [one(c, len(s)) for c, s in zip(calls, slices, strict=True)], [
            len(s) for s in slices
        ]

    def _slices(self, examples: Sequence[Any]) -> list[list[Any]]:
        n = len(examples)
        size = -(-n // self.split)
        return [list(examples[i : i + size]) for i in range(0, n, size)]

    def _slice_calls(
        self,
        ctx: StageContext,
        candidate: Mapping[str, str],
        slices: Sequence[list[Any]],
        capture_traces: bool,
        spent: Callable[[int], None] | None,
    ) -> list[Coroutine[Any, Any, Any]]:
        """One ``adapter.evaluate`` call per slice, each checked and counted as it returns."""
        evaluate = self.adapter.evaluate
        n = sum(len(s) for s in slices)

        async def one(part: list[Any], offset: int) -> Any:
            got = await self.traced(
                ctx,
                f"adapter.evaluate: {len(part)} examples",
                "task",
                lambda: evaluate(part, dict(candidate), capture_traces=capture_traces),
            )
            if spent is not None:
                spent(_metric_calls(got, len(part)))
            _check(got, part, "adapter.evaluate", offset, n)
            return got

        offsets = [sum(len(s) for s in slices[:k]) for k in range(len(slices))]
        return [one(s, o) for s, o in zip(slices, offsets, strict=True)]


def _metric_calls(batch: Any, n: int) -> int:
    """As gepa counts: the batch's ``num_metric_calls`` if it says, else one per example."""
    count = getattr(batch, "num_metric_calls", None)
    return count if isinstance(count, int) and not isinstance(count, bool) else n


def _check(batch: Any, examples: Sequence[Any], where: str, offset: int, total: int) -> None:
    """``batch`` against the adapter contract; ``examples`` start at ``offset`` of ``total``."""
    n = len(examples)
    outputs = getattr(batch, "outputs", None)
    scores = getattr(batch, "scores", None)
    if outputs is None or scores is None:
        raise AdapterContractError(
            f"{where} returned {type(batch).__name__}, not an EvaluationBatch with outputs "
            "and scores"
        )
    for name, values in (("scores", scores), ("outputs", outputs)):
        if len(values) != n:
            raise AdapterContractError(
                f"{where} returned {len(values)} {name} for {n} examples; an adapter returns "
                "one per example (a failed example gets a failure score such as 0.0, it is "
                "never left out)"
            )
    for name in ("trajectories", "objective_scores"):
        values = getattr(batch, name, None)
        if values is not None and len(values) != n:
            raise AdapterContractError(
                f"{where} returned {len(values)} {name} for {n} examples; they must align "
                "one to one with the outputs"
            )
    for i, s in enumerate(scores):
        if isinstance(s, bool) or not isinstance(s, int | float):
            raise AdapterContractError(
                f"{where} returned the score {s!r}; scores must be numbers (higher is better)"
            )
        if not math.isfinite(s):
            # NaN compares false with everything: it would pass or fail gates at random
            # and make means, the best candidate and the fronts meaningless.
            shown = repr(examples[i])
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise AdapterContractError(
                f"{where} returned the non-finite score {s!r} for example {offset + i} of "
                f"{total} ({shown}); scores must be finite numbers (give a failed example a "
                "failure score such as 0.0)"
            )


def _combine(parts: Sequence[Any], sizes: Sequence[int]) -> Evaluated:
    outputs = [o for p in parts for o in p.outputs]
    scores = [float(s) for p in parts for s in p.scores]
    trajs = [getattr(p, "trajectories", None) for p in parts]
    trajectories = None if any(t is None for t in trajs) else [x for t in trajs for x in t]  # type: ignore[union-attr]
    objs = [getattr(p, "objective_scores", None) for p in parts]
    objective = None if any(o is None for o in objs) else [x for o in objs for x in o]  # type: ignore[union-attr]
    counts = [getattr(p, "num_metric_calls", None) for p in parts]
    metric_calls = sum(_metric_calls(p, n) for p, n in zip(parts, sizes, strict=True))
    if len(parts) == 1:
        batch = parts[0]
    else:
        num = None if all(c is None for c in counts) else metric_calls
        batch = _merged_like(
            parts[0],
            outputs=outputs,
            scores=scores,
            trajectories=trajectories,
            objective_scores=objective,
            num_metric_calls=num,
        )
    return Evaluated(
        batch=batch,
        scores=tuple(scores),
        outputs=tuple(outputs),
        trajectories=tuple(trajectories) if trajectories is not None else None,
        objective_scores=tuple(objective) if objective is not None else None,
        metric_calls=metric_calls,
    )


def _merged_like(first: Any, **values: Any) -> Any:
    """One batch of the adapter's own type if it is a dataclass (gepa's is), else a MergedBatch."""
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        names = {f.name for f in dataclasses.fields(first)}
        if {"outputs", "scores"} <= names:
            return dataclasses.replace(first, **{k: v for k, v in values.items() if k in names})
    return MergedBatch(**values)
