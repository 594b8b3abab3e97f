"""The ``Run`` handle: a pipeline running in the background, steered from any thread.

The pipeline lives on one event loop (its own thread's, see ``loop.py``) and
is not thread-safe; every method here marshals onto that loop and returns
once the change is made, so ``run.pause("propose")`` has taken effect when it
returns. Widget callbacks, notebook cells and tests all use these same
methods: there is no other way in.

Errors::

    RuntimeError
     ├── RunEnded       a control (pause, submit...) asked of a run that has ended
     └── RunFailed      (engine) the run itself failed; raised by wait() and await
    TimeoutError
     └── LoopUnresponsive   the run's loop did not answer a call in time
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from flashevolve_nb.engine.artifact import Artifact, Origin
from flashevolve_nb.engine.bus import events_frame
from flashevolve_nb.engine.items import WorkItem
from flashevolve_nb.engine.pipeline import Pipeline
from flashevolve_nb.engine.result import RunResult
from flashevolve_nb.engine.staleness import StalenessPolicy, policy_names
from flashevolve_nb.errors import FlashEvolveError
from flashevolve_nb.runtime.history import Probe, RunHistory
from flashevolve_nb.runtime.loop import LoopHost
from flashevolve_nb.runtime.snapshot import QueuedItem, RunSnapshot
from flashevolve_nb.runtime.tap import EventBatch, EventTap

if TYPE_CHECKING:
    import concurrent.futures

    import pandas as pd

    from flashevolve_nb.ui import Dashboard

__all__ = ["Run", "RunEnded"]

T = TypeVar("T")

log = logging.getLogger("flashevolve_nb.runtime")

_ENDED = ("finished", "failed", "cancelled")

END_HOOK_SECONDS = 10.0
"""Real seconds an end hook (``Run.on_end``) may take before the run stops waiting for it."""


class RunEnded(FlashEvolveError, RuntimeError):
    """A control was asked of a run that has already ended."""


class Run:
    """A running evolution. Make one with :func:`flashevolve_nb.start`.

    Every method may be called from any thread. ``wait()`` blocks (a notebook
    cell that calls it blocks too; the run goes on regardless), ``await run``
    does not.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        host: LoopHost,
        *,
        name: str,
        demo: Any = None,
        store: Any = None,
        own_loop: bool = True,
    ) -> None:
        self.pipeline = pipeline
        """The pipeline itself. Not thread-safe: touch it only through :meth:`call`."""
        self.name = name
        self.demo = demo
        """The :class:`flashevolve_nb.demo.Demo` the run was built from, if any."""
        self.store = store
        """The run store writing this run to disk, if ``run_dir`` was given."""
        self._host = host
        self._own_loop = own_loop
        self._tap = EventTap()
        pipeline.bus.subscribe(self._tap)
        self.history = RunHistory([s.name for s in pipeline.stages], probe=self._probe)
        """The run as the dashboard shows it, from its first event (any thread may read)."""
        pipeline.bus.subscribe(self.history)
        pipeline.pool.listeners.append(self.history.pool_changed)
        self._t0 = time.monotonic()
        self._t1: float | None = None
        self._stop_requested = ""
        self._future: concurrent.futures.Future[RunResult] | None = None
        self._end_hooks: list[Callable[[], None]] = []

    def _start(self) -> None:
        self._t0 = time.monotonic()
        self._future = self._host.start(self._main)

    async def _main(self) -> RunResult:
        if self._own_loop:
            asyncio.get_running_loop().set_exception_handler(self._loop_error)
        try:
            return await self.pipeline.run()
        except BaseException as exc:
            # Nobody may be waiting on the handle: say it where it will be seen.
            self._tap.note_error(f"the run failed: {exc!r}")
            log.error("run %r failed: %r", self.name, exc, exc_info=exc)
            raise
        finally:
            self._t1 = time.monotonic()
            close = getattr(self.store, "close", None)
            if callable(close):
                close()
            await self._run_end_hooks()

    def on_end(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` once the run has ended, before ``wait()`` / ``await run`` return.

        It runs in a worker thread while the run's loop waits for it (so it may read
        the run: ``snapshot()``, ``result()``), at most ``END_HOOK_SECONDS`` each. A
        dashboard writes its final view here: a notebook whose last cells are quick
        would otherwise be saved before that view reached it.
        """
        self._end_hooks.append(hook)

    async def _run_end_hooks(self) -> None:
        for hook in tuple(self._end_hooks):
            try:
                await asyncio.wait_for(asyncio.to_thread(hook), END_HOOK_SECONDS)
            except Exception as exc:  # a hook's trouble must not change how the run ended
                log.warning("run %r: an end hook failed: %r", self.name, exc, exc_info=exc)

    def _probe(self) -> Probe:
        # Called by the history inside emit, on the run's loop: reading is safe here.
        p = self.pipeline
        return Probe(
            workers={s.name: s.target_workers for s in p.stages},
            queued={s.name: len(s.queue) for s in p.stages},
            depth=p.depth,
        )

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        self._tap.note_error(f"event loop: {context.get('message', '')} {exc!r}".strip())
        loop.default_exception_handler(context)

    # ---- state -------------------------------------------------------------
    @property
    def state(self) -> str:
        """``starting``, ``running``, ``paused``, ``stopping``, ``finished``, ``failed``
        or ``cancelled``."""
        ps = self.pipeline.state
        f = self._future
        if f is not None and f.done():
            if ps in _ENDED:
                return ps
            return "failed" if f.cancelled() or f.exception() is not None else "finished"
        if ps == "created":
            return "starting"
        if ps in _ENDED:
            return ps  # the thread is still closing its loop
        if self._stop_requested:
            return "stopping"
        if self.pipeline.stages and all(s.paused for s in self.pipeline.stages):
            return "paused"
        return ps

    @property
    def done(self) -> bool:
        return self._future is not None and self._future.done()

    @property
    def error(self) -> BaseException | None:
        """Why the run failed, once it has; None while it runs or when it ended well."""
        f = self._future
        if f is None or not f.done() or f.cancelled():
            return None
        return f.exception()

    @property
    def real_seconds(self) -> float:
        return (self._t1 or time.monotonic()) - self._t0

    # ---- waiting -----------------------------------------------------------
    def wait(self, timeout: float | None = None) -> RunResult:
        """Block until the run ends and return its result (raises its error if it failed).

        Raises ``TimeoutError`` if it is still going after ``timeout`` seconds;
        the run is not touched by that.
        """
        future = self._started()
        try:
            return self._host.block_until(future, timeout)
        except TimeoutError:
            if future.done():
                raise
            raise TimeoutError(
                f"run {self.name!r} is still {self.state} after {timeout:g} s"
            ) from None

    def __await__(self) -> Generator[Any, None, RunResult]:
        return asyncio.wrap_future(self._started()).__await__()

    def result(self) -> RunResult:
        """The result: final once the run has ended (after a failure too: what was
        admitted stays, and :attr:`error` says what broke); so far, while it runs."""
        f = self._started()
        if f.done() and not f.cancelled() and f.exception() is None:
            return f.result()
        return self._host.call(self.pipeline.result)

    def _started(self) -> concurrent.futures.Future[RunResult]:
        if self._future is None:
            raise RuntimeError("this run was never started; use flashevolve_nb.start()")
        return self._future

    # ---- reading -------------------------------------------------------------
    def snapshot(self, *, controller: bool = True) -> RunSnapshot:
        """Everything about the run right now, as one immutable value.

        ``controller=False`` leaves out the controller's own snapshot, which can
        cost as much as the rest (a dashboard not showing it skips it).
        """
        asked = time.monotonic()
        snap = self._host.call(lambda: self._snapshot_now(controller))
        return dataclasses.replace(snap, answer_seconds=time.monotonic() - asked)

    def _snapshot_now(self, with_controller: bool = True) -> RunSnapshot:
        p = self.pipeline
        ps = p.snapshot()
        version = ps.pool.version
        queued = tuple(
            QueuedItem(
                s.name,
                i.id,
                i.step,
                i.artifact.id,
                i.base_version,
                version - i.base_version,
                str(i.artifact.origin),
            )
            for s in p.stages
            for i in s.queue.items()
        )
        ctrl = getattr(p, "controller", None)
        ctrl_view: Any = None
        if ctrl is not None and with_controller:
            try:
                ctrl_view = ctrl.snapshot()
            except Exception as exc:
                self._tap.note_error(f"controller snapshot: {exc!r}")
        error = self.error
        return RunSnapshot(
            name=self.name,
            state=self.state,
            workload=p.workload.name,
            backend=p.workload.backend_name,
            time_scale=p.clock.time_scale,
            real_seconds=self.real_seconds,
            pipeline=ps,
            queued=queued,
            requests=self._tap.requests(),
            events=self._tap.total,
            errors=self._tap.errors(),
            error="" if error is None else f"{type(error).__name__}: {error}",
            finish_reason=ps.stats.finish_reason,
            policies=policy_names(),
            policy_params=_settings(p.policy),
            controller=ctrl_view,
            controller_params=getattr(ctrl, "params", None),
            controller_enabled=getattr(ctrl, "enabled", None),
            held=dict(ctrl.held) if ctrl is not None else {},
            speculation=p.speculation.snapshot(),
            partial_stages=tuple(p.speculation.partial_stages),
            clock=p.lag.report(),
        )

    def events_since(self, seq: int) -> EventBatch:
        """Events numbered ``seq`` and later; pass ``batch.next_seq`` next time."""
        return self._tap.since(seq)

    @property
    def events(self) -> pd.DataFrame:
        """Every event the run kept, one row each (``PipelineConfig.event_history`` bounds it)."""
        return events_frame(self._host.call(lambda: list(self.pipeline.recorder.events)))

    def queued(self, stage: str | None = None) -> tuple[WorkItem, ...]:
        """Items waiting in ``stage``'s queue (every stage's with None), oldest first."""
        p = self.pipeline
        if stage is None:
            return self._host.call(lambda: tuple(i for s in p.stages for i in s.queue.items()))
        return self._host.call(lambda: p.queued(stage))

    def artifact(self, artifact_id: str) -> Artifact:
        """An admitted artifact, or one carried by a queued item, by id."""

        def find() -> Artifact:
            p = self.pipeline
            if artifact_id in p.pool:
                return p.pool.entry(artifact_id).artifact
            for s in p.stages:
                for item in s.queue.items():
                    if item.artifact.id == artifact_id:
                        return item.artifact
            raise KeyError(f"no artifact {artifact_id!r} in the pool or in a queue")

        return self._host.call(find)

    def call(self, fn: Callable[[Pipeline], T]) -> T:
        """Run ``fn(pipeline)`` on the run's loop and return its result: for anything
        the methods here do not cover. Keep it short; the run waits meanwhile."""
        return self._host.call(lambda: fn(self.pipeline))

    # ---- steering --------------------------------------------------------------
    def pause(self, stage: str | None = None) -> None:
        """Stop ``stage`` (every stage and new steps, with None) taking new items;
        items already being worked on finish."""
        self._control(lambda: self.pipeline.pause(stage))

    def resume(self, stage: str | None = None) -> None:
        self._control(lambda: self.pipeline.resume(stage))

    def set_workers(self, stage: str, n: int, *, hold: bool = True) -> None:
        """Give ``stage`` ``n`` workers now.

        With ``hold`` (the default) the adaptive controller leaves that count as
        it is until :meth:`release_workers`: a person's setting is not undone by
        the next decision.
        """
        p = self.pipeline

        def do() -> None:
            p.set_workers(stage, n)
            if hold:
                p.controller.hold(stage, n)

        self._control(do)

    def release_workers(self, stage: str) -> bool:
        """Hand ``stage``'s worker count back to the adaptive controller; False if not held."""
        p = self.pipeline
        p.stage(stage)  # an unknown stage is an error, not a silent False
        return self._control(lambda: p.controller.release(stage))

    def set_alpha(self, stage: str, alpha: float) -> None:
        """Speculative completion: ``stage`` hands its output on once ``alpha`` (0 < alpha
        <= 1) of its requests are in; 1 waits for all of them."""
        self._control(lambda: self.pipeline.speculation.set_alpha(stage, alpha))

    def set_speculative_validation(self, on: bool) -> None:
        """Admit candidates on a validation prefix (confirmed or rolled back later)."""
        self._control(lambda: self.pipeline.speculation.set_validation(on))

    def set_depth(self, depth: int) -> None:
        """How many evolution steps may be in flight at once."""
        self._control(lambda: self.pipeline.set_depth(depth))

    def set_policy(self, policy: str | StalenessPolicy, **params: Any) -> None:
        """Switch the staleness policy (``set_policy("guarded", delta_max=3)``)."""
        set_policy: Callable[..., None] = self.pipeline.set_policy
        self._control(lambda: set_policy(policy, **params))

    @property
    def controller(self) -> Any:
        """The run's adaptive controller, or None when it has none."""
        return getattr(self.pipeline, "controller", None)

    def tune(self, **changes: Any) -> None:
        """Change controller parameters now (``run.tune(interval=5.0)``)."""
        ctrl = self._need_controller()
        self._control(lambda: ctrl.tune(**changes))

    def set_controller(self, enabled: bool) -> None:
        """Switch the adaptive controller on or off (the controller records it as an event)."""
        ctrl = self._need_controller()
        self._control(lambda: ctrl.set_enabled(enabled))

    def _need_controller(self) -> Any:
        ctrl = self.controller
        if ctrl is None:
            raise RuntimeError(
                f"run {self.name!r} has no adaptive controller; start it with one to tune it"
            )
        return ctrl

    def submit(
        self,
        changes: Mapping[str, str] | str,
        *,
        parent: str | None = None,
        extra_parents: tuple[str, ...] = (),
        note: str = "",
    ) -> Artifact:
        """Send a person's artifact into the run as a new proposal; returns it.

        The artifact is ``parent`` (an admitted artifact's id; the current best
        if None) with ``changes`` (component -> text; a plain string when the
        artifact has one component). It gets its own id and lineage, origin
        ``human``, and must pass the gate and validation like any proposal.
        """
        p = self.pipeline

        def do() -> Artifact:
            base = p.pool.entry(parent).artifact if parent is not None else p.pool.best().artifact
            art = base.derive(
                p.new_id("a"),
                _changes(base, changes),
                origin=Origin.HUMAN,
                base_version=p.pool.version,
                created_at=p.clock.now(),
                extra_parents=extra_parents,
                note=note or "written by a person",
            )
            p.submit(art)
            self.history.note_artifact(art)  # the views show it before any admission
            return art

        return self._control(do)

    def replace(
        self, item_id: str, changes: Mapping[str, str] | str, *, note: str = ""
    ) -> Artifact | None:
        """Edit the artifact of a queued item: the item goes on with a new artifact
        (origin ``human``, parent: the artifact it carried). None if the item is no
        longer waiting (a worker took it)."""
        p = self.pipeline

        def do() -> Artifact | None:
            item = next(
                (i for s in p.stages for i in s.queue.items() if i.id == item_id),
                None,
            )
            if item is None:
                return None
            art = item.artifact.derive(
                p.new_id("a"),
                _changes(item.artifact, changes),
                origin=Origin.HUMAN,
                base_version=p.pool.version,
                created_at=p.clock.now(),
                note=note or "edited by a person in a queue",
            )
            if not p.replace_item(item_id, art):
                return None
            self.history.note_artifact(art)
            return art

        return self._control(do)

    def drop(self, item_id: str) -> bool:
        """Take a queued item out, ending its step; False if it is no longer waiting."""
        return self._control(lambda: self.pipeline.drop_item(item_id))

    def stop(self, mode: Literal["drain", "cancel"] = "drain", *, reason: str = "") -> None:
        """End the run: ``drain`` lets the steps in flight finish, ``cancel`` drops them.

        Returns at once; ``wait()`` or ``await run`` for the end. Admitted
        artifacts are never lost. Stopping an ended run does nothing.
        """
        if mode not in ("drain", "cancel"):
            raise ValueError(f"stop mode must be 'drain' or 'cancel' (got {mode!r})")
        if self.done:
            return
        self._stop_requested = mode
        why = reason or f"stopped by the user ({mode})"
        self._host.call(lambda: self.pipeline.stop(mode, reason=why))

    def _control(self, fn: Callable[[], T]) -> T:
        if self.done:
            reason = self.pipeline.result().finish_reason
            raise RunEnded(
                f"run {self.name!r} has ended ({self.state}: {reason}); controls act on a "
                "running run, start a new one to go on"
            )
        return self._host.call(fn)

    # ---- showing ---------------------------------------------------------------
    def dashboard(self, **options: Any) -> Dashboard:
        """The dashboard of this run, live while it runs; display it in a cell.

        It shows the whole run from its first event however late it is opened,
        and keeps working while a cell runs (looking around never needs the
        kernel). ``interval`` sets its refresh period (0.25 s).
        """
        from flashevolve_nb.ui import Dashboard, LiveSource

        return Dashboard(LiveSource(self), **options)

    def report(self, path: str | os.PathLike[str]) -> Path:
        """Write the dashboard's view of this run as one self-contained HTML file."""
        from flashevolve_nb.ui import LiveSource, write_report

        return write_report(LiveSource(self).model(), path)

    def __repr__(self) -> str:
        try:
            s = self.snapshot()
        except Exception:
            return f"<Run {self.name!r} {self.state}>"
        best = s.pool.best_score
        err = f" error={s.error!r}" if s.error else ""
        return (
            f"<Run {self.name!r} {s.state}: {s.sim_seconds / 60:.1f} sim-min, "
            f"{s.stats.proposals} proposals, {s.stats.accepted} accepted, best {best:.3f}, "
            f"{s.workload} on {s.backend}{err}>"
        )


def _settings(policy: object) -> Mapping[str, Any]:
    """A policy's plain settings (numbers, switches, names), read-only."""
    if not dataclasses.is_dataclass(policy):
        return MappingProxyType({})
    plain = (bool, int, float, str)
    values = {f.name: getattr(policy, f.name) for f in dataclasses.fields(policy)}
    return MappingProxyType({k: v for k, v in values.items() if isinstance(v, plain)})


def _changes(base: Artifact, changes: Mapping[str, str] | str) -> dict[str, str]:
    if isinstance(changes, str):
        if len(base) != 1:
            raise ValueError(
                f"artifact {base.id!r} has components {list(base)}; pass a dict "
                "{component: text} naming the one(s) you change"
            )
        return {next(iter(base)): changes}
    return dict(changes)
