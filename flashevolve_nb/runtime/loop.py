"""Where a run's event loop lives, and how other threads reach it.

A notebook's own loop freezes whenever a cell blocks (notes/jupyter-async.md),
so by default a run gets a thread of its own with its own loop
(:class:`LoopThread`). :class:`InlineLoop` instead runs it on the loop of the
thread that starts it (the kernel's), for users who want that.

Either way, :meth:`call` runs a function *on* the loop and hands its result
back to any thread: that is how every ``Run`` method stays thread-safe while
the pipeline itself is not. Once the loop has closed nothing can mutate the
pipeline any more, so calls then simply run in the caller's thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from flashevolve_nb.errors import FlashEvolveError

__all__ = ["InlineLoop", "LoopHost", "LoopThread", "LoopUnresponsive"]

T = TypeVar("T")

DEFAULT_CALL_TIMEOUT = 60.0


class LoopUnresponsive(FlashEvolveError, TimeoutError):
    """The run's loop did not run a call in time: something on it blocks without awaiting."""


class LoopHost(Protocol):
    """What a ``Run`` needs from wherever its loop lives."""

    @property
    def thread(self) -> threading.Thread | None: ...

    def start(self, main: Callable[[], Coroutine[Any, Any, T]]) -> concurrent.futures.Future[T]:
        """Run ``main()`` on the loop; the future completes with its outcome."""
        ...

    def call(self, fn: Callable[[], T], timeout: float | None = DEFAULT_CALL_TIMEOUT) -> T:
        """``fn()`` run on the loop (or directly once the loop is gone); its result."""
        ...

    def block_until(self, future: concurrent.futures.Future[T], timeout: float | None) -> T:
        """Wait for ``future`` from a synchronous caller."""
        ...


class _Calls:
    """The lock-protected hand-over of calls onto a loop, shared by both hosts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.closed = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    def call(self, fn: Callable[[], T], timeout: float | None) -> T:
        if threading.current_thread() is self.thread:
            return fn()
        with self.lock:
            loop = None if self.closed else self.loop
            if loop is not None:
                done: concurrent.futures.Future[T] = concurrent.futures.Future()

                def runner() -> None:
                    if not done.set_running_or_notify_cancel():
                        return
                    try:
                        done.set_result(fn())
                    except BaseException as exc:
                        done.set_exception(exc)

                loop.call_soon_threadsafe(runner)
        if loop is None:
            return fn()
        try:
            return done.result(timeout)
        except concurrent.futures.TimeoutError:
            done.cancel()
            raise LoopUnresponsive(
                f"the run's event loop did not answer within {timeout:g} s; a stage or "
                "subscriber may be doing blocking work without awaiting"
            ) from None

    def close(self) -> None:
        with self.lock:
            self.closed = True


class LoopThread:
    """A daemon thread running one asyncio loop for one run."""

    def __init__(
        self,
        name: str,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
    ) -> None:
        self._name = name
        self._loop_factory = loop_factory
        self._calls = _Calls()

    @property
    def thread(self) -> threading.Thread | None:
        return self._calls.thread

    def start(self, main: Callable[[], Coroutine[Any, Any, T]]) -> concurrent.futures.Future[T]:
        if self._calls.thread is not None:
            raise RuntimeError("this loop thread was started already")
        outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
        outcome.set_running_or_notify_cancel()
        loop = self._loop_factory()
        self._calls.loop = loop
        thread = threading.Thread(
            target=self._main, args=(loop, main, outcome), name=self._name, daemon=True
        )
        self._calls.thread = thread
        thread.start()
        return outcome

    def _main(
        self,
        loop: asyncio.AbstractEventLoop,
        main: Callable[[], Coroutine[Any, Any, T]],
        outcome: concurrent.futures.Future[T],
    ) -> None:
        asyncio.set_event_loop(loop)
        result: T | None = None
        error: BaseException | None = None
        try:
            result = loop.run_until_complete(main())
        except BaseException as exc:
            # Caught whole: a run thread must never die silently; the handle reports it.
            error = exc
        finally:
            self._calls.close()
            try:
                # Run the calls handed over before the close, so no caller waits forever.
                loop.run_until_complete(asyncio.sleep(0))
                left = asyncio.all_tasks(loop)
                for task in left:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()
        if error is not None:
            outcome.set_exception(error)
        else:
            outcome.set_result(result)  # type: ignore[arg-type]

    def call(self, fn: Callable[[], T], timeout: float | None = DEFAULT_CALL_TIMEOUT) -> T:
        return self._calls.call(fn, timeout)

    def block_until(self, future: concurrent.futures.Future[T], timeout: float | None) -> T:
        if threading.current_thread() is self._calls.thread:
            raise RuntimeError(
                "waiting for a run from its own loop would deadlock; await it instead"
            )
        return future.result(timeout)


class InlineLoop:
    """The run on the loop already running in this thread (a notebook kernel's).

    The loop stops whenever a cell blocks, and the run with it. A blocking
    ``wait()`` from a cell needs to re-enter the running loop, which asyncio
    forbids: only here, and only then, ``nest_asyncio2`` is applied to it.
    """

    def __init__(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "inline=True runs the pipeline on this thread's running event loop (a "
                "notebook kernel's), and none is running here; call start() from a notebook "
                "cell or a coroutine, or leave inline off to give the run a thread of its own"
            ) from None
        self._calls = _Calls()
        self._calls.loop = loop
        self._calls.thread = threading.current_thread()
        self._task: asyncio.Task[Any] | None = None

    @property
    def thread(self) -> threading.Thread | None:
        return self._calls.thread

    def start(self, main: Callable[[], Coroutine[Any, Any, T]]) -> concurrent.futures.Future[T]:
        loop = self._calls.loop
        assert loop is not None
        outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
        outcome.set_running_or_notify_cancel()
        task = loop.create_task(main(), name="flashevolve-inline-run")
        self._task = task  # a reference, so that the task is not collected

        def finished(t: asyncio.Task[T]) -> None:
            if t.cancelled():
                outcome.set_exception(asyncio.CancelledError("the inline run was cancelled"))
            elif t.exception() is not None:
                outcome.set_exception(t.exception())
            else:
                outcome.set_result(t.result())

        task.add_done_callback(finished)
        return outcome

    def call(self, fn: Callable[[], T], timeout: float | None = DEFAULT_CALL_TIMEOUT) -> T:
        return self._calls.call(fn, timeout)

    def block_until(self, future: concurrent.futures.Future[T], timeout: float | None) -> T:
        loop = self._calls.loop
        assert loop is not None
        if threading.current_thread() is not self._calls.thread or not loop.is_running():
            if not loop.is_running() and not future.done():
                return loop.run_until_complete(_wait(future, timeout))
            return future.result(timeout)
        import nest_asyncio2

        nest_asyncio2.apply(loop)
        return loop.run_until_complete(_wait(future, timeout))


async def _wait(future: concurrent.futures.Future[T], limit: float | None) -> T:
    async with asyncio.timeout(limit):
        return await asyncio.wrap_future(future)
