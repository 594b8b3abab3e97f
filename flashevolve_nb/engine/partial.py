"""Speculative stage completion: hand a stage's output on before all its requests are in.

Inside a stage every request waits for the slowest one, and LLM output
lengths are long-tailed, so the slowest is often several times slower than
the rest. :func:`release_partial` returns once a fraction ``alpha`` of a
stage's requests has finished; the stage returns its partial output and its
worker takes the next item, while the other requests go on in a *tail* task.
Whoever needs the full result later awaits :attr:`Partial.rest` (the fold-in).

A tail belongs to its evolution step: if the step ends first (gated out,
discarded as stale...), the unfinished requests are cancelled, and a stopped
run cancels every tail. Both ends are events (``PartialRelease``,
``PartialFoldIn``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from flashevolve_nb.engine.events import PartialFoldIn, PartialRelease
from flashevolve_nb.engine.speculation import speculation_of

if TYPE_CHECKING:
    from flashevolve_nb.engine.context import StageContext

__all__ = ["Partial", "needed", "release_partial"]

T = TypeVar("T")


def needed(total: int, alpha: float) -> int:
    """How many of ``total`` requests must finish before a release at ``alpha`` (at least one)."""
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1] (got {alpha!r})")
    # The epsilon keeps 0.5 * 4 at 2, not 3, whatever the float rounding.
    return min(total, max(1, math.ceil(alpha * total - 1e-9)))


@dataclass(frozen=True, eq=False)
class Partial(Generic[T]):
    """What a stage has at release time, and a handle on the rest."""

    done: Mapping[int, T]
    """Results of the requests finished at release, by their index in the call list."""
    total: int
    rest: asyncio.Task[list[T]] | None
    """Every result, in call order, once all are in; None when nothing was left."""

    @property
    def complete(self) -> bool:
        return self.rest is None

    async def all(self) -> list[T]:
        """Every result in call order (waits for the tail: the fold-in)."""
        if self.rest is None:
            return [self.done[i] for i in range(self.total)]
        return await self.rest


async def release_partial(
    ctx: StageContext,
    calls: Sequence[Coroutine[Any, Any, T]],
    alpha: float,
    *,
    item_id: str = "",
) -> Partial[T]:
    """Run ``calls`` concurrently; return once ``alpha`` of them have finished.

    With ``alpha`` 1 (or when the rest finish at the same moment) this is a
    plain gather. A call that raises before the release fails the stage and
    cancels the others; one that raises later fails whoever folds the tail in.
    """
    total = len(calls)
    need = needed(total, alpha) if total else 0
    if need >= total:
        results = await asyncio.gather(*calls)
        return Partial(dict(enumerate(results)), total, None)
    owner = speculation_of(ctx)
    # Each request is a tail of the step: the step's end cancels it directly, and a
    # stopping run cancels and awaits it, whatever the stage awaiting it is doing.
    tasks = [owner.spawn_tail(ctx.step, c, name=f"flashevolve-request-{ctx.stage}") for c in calls]
    try:
        pending: set[asyncio.Future[T]] = set(tasks)
        while total - len(pending) < need:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in finished:
                exc = t.exception()
                if exc is not None:
                    raise exc
    except BaseException:
        _cancel(tasks)
        raise
    done = {i: t.result() for i, t in enumerate(tasks) if t.done()}
    if len(done) == total:
        return Partial(done, total, None)
    ctx.emit(
        PartialRelease(
            t=ctx.now(), stage=ctx.stage, step=ctx.step, item_id=item_id,
            released=len(done), total=total, alpha=alpha,
        )
    )  # fmt: skip
    rest = owner.spawn_tail(ctx.step, _collect(tasks), name=f"flashevolve-tail-{ctx.stage}")

    def fold_in(t: asyncio.Task[list[T]]) -> None:
        # A done callback, not code in the tail: it runs even for a tail cancelled
        # before it ever started (a step that ended at once).
        ctx.emit(
            PartialFoldIn(
                t=ctx.now(), stage=ctx.stage, step=ctx.step, item_id=item_id,
                finished=sum(1 for r in tasks if r.done() and not r.cancelled()),
                total=total, cancelled=t.cancelled(),
            )
        )  # fmt: skip

    rest.add_done_callback(fold_in)
    return Partial(done, total, rest)


async def _collect(tasks: Sequence[asyncio.Future[T]]) -> list[T]:
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        _cancel(tasks)
        raise


def _cancel(tasks: Sequence[asyncio.Future[T]]) -> None:
    """Cancel what is still running (never awaited here: a second cancellation of the
    caller could cut that short; the run awaits its tasks when it stops)."""
    for t in tasks:
        t.cancel()
