"""A FIFO stage queue that can be paused, inspected and edited while in use.

``asyncio.Queue`` cannot show its contents, take an item out of the middle, or
stop handing items out without cancelling its getters, and a person steering a
run needs all three (see a paused stage's queue, replace or drop an item). All
mutations here are synchronous, so they are atomic on the pipeline's loop.

There is no size limit on purpose: the pipeline bounds the number of
evolution steps in flight, which bounds every queue.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from flashevolve_nb.engine.items import WorkItem

__all__ = ["StageQueue"]


class StageQueue:
    def __init__(self) -> None:
        self._items: deque[WorkItem] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._paused = False

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> tuple[WorkItem, ...]:
        return tuple(self._items)

    @property
    def paused(self) -> bool:
        return self._paused

    def set_paused(self, paused: bool) -> None:
        """A paused queue keeps accepting items but hands none out."""
        self._paused = paused
        if not paused:
            self._wake()

    def put(self, item: WorkItem) -> None:
        self._items.append(item)
        self._wake()

    async def get(self) -> WorkItem:
        """The oldest item, once there is one and the queue is not paused.

        Cancellation-safe: a getter cancelled while waiting has taken nothing.
        """
        loop = asyncio.get_running_loop()
        while self._paused or not self._items:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return self._items.popleft()

    def remove_if(self, pred: Callable[[WorkItem], bool]) -> tuple[WorkItem, ...]:
        """Take out every queued item matching ``pred``; returns them."""
        gone = tuple(i for i in self._items if pred(i))
        if gone:
            self._items = deque(i for i in self._items if not pred(i))
        return gone

    def replace(self, item_id: str, new: WorkItem) -> bool:
        """Swap the queued item ``item_id`` for ``new`` in place; False if not queued."""
        for k, queued in enumerate(self._items):
            if queued.id == item_id:
                self._items[k] = new
                return True
        return False

    def _wake(self) -> None:
        # Wake every waiter; each re-checks, so spurious wake-ups are harmless
        # and a cancelled waiter cannot swallow an item meant for another.
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)
