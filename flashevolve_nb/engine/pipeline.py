"""The pipeline: queues, workers, the in-flight bound, select at the head, admit at the tail.

One queue and a set of worker tasks per stage. The head starts a new
evolution step whenever fewer than ``depth`` steps are in flight; items flow
from stage to stage as soon as they are ready, so the stages of different
steps overlap; the tail admits what reaches it. Staleness is checked at the
configured decision points, against the pool version at that moment.

The synchronous mode is this same pipeline with one step in flight and one
worker per stage: each stage waits for all of its requests before the next
starts (GEPA's schedule), so both modes run the very same stage code.

Everything here runs on one event loop; nothing is thread-safe by itself
(the ``Run`` handle marshals calls from other threads onto the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import traceback
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from flashevolve_nb.clock import Clock
from flashevolve_nb.clock_lag import ClockBehind, LagMonitor, LagReport
from flashevolve_nb.engine.artifact import Artifact, Origin
from flashevolve_nb.engine.budget import Budget, BudgetTracker, Reservation
from flashevolve_nb.engine.bus import EventBus, Recorder
from flashevolve_nb.engine.config import Mode, PipelineConfig
from flashevolve_nb.engine.context import StageContext
from flashevolve_nb.engine.controller import Controller
from flashevolve_nb.engine.events import (
    Admitted,
    BreakerClosed,
    BreakerHalfOpen,
    BreakerOpened,
    BudgetExhausted,
    Event,
    FrontierChanged,
    HumanSubmitted,
    ItemDropped,
    ItemFailed,
    ItemFinished,
    ItemQueued,
    ItemStarted,
    PolicyDecision,
    QueueEdited,
    RunFinished,
    RunResumed,
    RunStarted,
    StageControl,
    StageStalled,
    StaleDetected,
    StepFinished,
    StepRestarted,
    StepStarted,
    WorkerLost,
)
from flashevolve_nb.engine.items import WorkItem
from flashevolve_nb.engine.pool import Pool, PoolEntry, PoolSnapshot
from flashevolve_nb.engine.result import RunResult
from flashevolve_nb.engine.speculation import Speculation
from flashevolve_nb.engine.stage import Stage, StageSnapshot
from flashevolve_nb.engine.staleness import (
    Decision,
    ImprovementHook,
    StalenessPolicy,
    make_policy,
)
from flashevolve_nb.engine.stats import RunStats, StatsCollector
from flashevolve_nb.engine.workload import (
    HumanProposals,
    HumanReplacements,
    ResumableProgress,
    StepsFromParent,
    Workload,
    decision_points_of,
    objective_directions_of,
    objectives_for,
    validation_stage_of,
)
from flashevolve_nb.errors import FlashEvolveError

__all__ = ["ADMIT", "Pipeline", "PipelineConfig", "PipelineSnapshot", "RunFailed"]

_ERROR_STREAK = 8
_BACKOFF_BASE = 1.0
_BACKOFF_MAX = 60.0
"""Simulated seconds the head waits when every recent LLM call failed (doubling)."""

ADMIT = "admit"
"""The name of the decision point just before admission."""

_T = TypeVar("_T")


class RunFailed(FlashEvolveError, RuntimeError):
    """The run could not go on (its seed evaluation or the engine itself failed)."""


@dataclass(frozen=True, slots=True)
class PipelineSnapshot:
    """What the pipeline is doing right now; cheap, immutable, for dashboards."""

    state: str
    t: float
    mode: str
    depth: int
    steps_in_flight: int
    requests_in_flight: int
    policy: str
    stages: tuple[StageSnapshot, ...]
    pool: PoolSnapshot
    stats: RunStats
    breakers: tuple[Any, ...] = ()
    """Snapshots of the circuit breakers watching this run's backends (open, closed...)."""


@dataclass(frozen=True, slots=True)
class _Resume:
    t: float
    session: int
    redo: tuple[tuple[int, str], ...]


class _TaskSet(dict[asyncio.Task[Any], None]):
    """A set of tasks that iterates in the order they were added.

    A plain set iterates in hash order, which differs between runs, and the order
    in which a stopping run cancels its tasks is the order of their last events.
    """

    def add(self, task: asyncio.Task[Any]) -> None:
        self[task] = None

    def discard(self, task: asyncio.Task[Any]) -> None:
        self.pop(task, None)


class _Worker:
    __slots__ = ("busy", "retire", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.busy = False
        self.retire = False


class Pipeline:
    def __init__(
        self,
        workload: Workload,
        config: PipelineConfig | None = None,
        *,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.workload = workload
        self.config = config = config or PipelineConfig()
        self.clock = clock or Clock()
        self.bus = bus or EventBus()
        self.seed = config.seed
        self.mode: Mode = config.mode
        self.depth = 1 if config.mode == "sync" else config.depth
        self.policy: StalenessPolicy = make_policy(config.policy)
        self.budget = BudgetTracker(config.budget)
        self._steps_done = 0
        self._reservations: dict[int, list[Reservation]] = {}
        self._calls_before_steps = 0
        """Metric calls spent before the first step (seeding): the cost estimate
        of a step until one has finished (see :meth:`step_limit`)."""
        self.pool = Pool(workload.instance_ids(), objective_directions_of(workload))
        self.recorder = Recorder(config.event_history)
        self.collector = StatsCollector()
        self.bus.subscribe(self.recorder)
        self.bus.subscribe(self.collector)

        specs = list(workload.stages())
        names = [s.name for s in specs]
        if len(set(names)) != len(names) or ADMIT in names:
            raise ValueError(f"stage names must be unique and not {ADMIT!r}: {names}")
        unknown = set(config.workers) - set(names)
        if unknown:
            raise ValueError(
                f"workers given for unknown stage(s) {sorted(unknown)}; stages: {names}"
            )
        points = config.decision_points
        if points is None:
            points = decision_points_of(workload, (ADMIT,))
        bad_points = set(points) - {*names, ADMIT}
        if bad_points:
            raise ValueError(
                f"unknown decision point(s) {sorted(bad_points)}; use stage names {names} "
                f"or {ADMIT!r}"
            )
        self.decision_points = frozenset(points)
        self.stages: list[Stage] = []
        for spec in specs:
            n = 1 if config.mode == "sync" else config.workers.get(spec.name, spec.workers)
            if n < 1:
                # Every step passes every stage: one without workers holds the run forever.
                raise ValueError(
                    f"stage {spec.name!r} would have {n} workers, so no step could get past "
                    f"it and the run would wait forever; give it at least one (workers="
                    f"{{{spec.name!r}: 1}}). To hold a stage during a run, pause it instead"
                )
            self.stages.append(Stage(spec, n))
        self._by_name = {s.name: i for i, s in enumerate(self.stages)}
        _check_metric_budget(config.budget, workload, len(self.pool.instance_ids))

        self.requests_in_flight = 0
        self._rng = random.Random(f"{config.seed}:head")
        self._ids: dict[str, int] = {}
        self._call_id = 0
        self._next_step = 1
        self._live: dict[int, int] = {}
        self._queued_at: dict[str, float] = {}
        self._workers: list[list[_Worker]] = [[] for _ in self.stages]
        self._head_task: asyncio.Task[None] | None = None
        self.llm_error_streak = 0
        """LLM calls failed in a row (any stage); the head backs off past a threshold."""
        self._streak_seen = 0
        self._backoff_level = 0
        self._side_tasks = _TaskSet()
        self._watchdog: asyncio.Task[None] | None = None
        self._head_wakeup: asyncio.Event | None = None
        self._done: asyncio.Future[str] | None = None
        self._head_paused = False
        self._stopping = False
        self._state = "created"
        self._finish_reason = ""
        self._ended_at: float | None = None
        """The run clock when the run ended: figures read after the end stop there."""
        self._cancel_requested = False
        self._error: BaseException | None = None
        self.breakers: list[Any] = []
        """Circuit breakers on this run's backends (``CircuitBreaker.attach``); each
        one's ``snapshot()`` shows in :meth:`snapshot`."""
        self._resume: _Resume | None = None
        self._redo: list[tuple[int, str]] = []
        self._tearing_down = False
        self.speculation = Speculation(self, config.speculation)
        self.lag = LagMonitor(self.clock.time_scale, on_far_behind=self._clock_behind)
        """Whether the real clock keeps up with the simulated one (``flashevolve_nb.clock_lag``)."""
        self.controller = Controller(
            self, config.controller_params, enabled=config.controller == "adaptive"
        )

    # ---- identity and counters ------------------------------------------
    def new_id(self, prefix: str) -> str:
        n = self._ids.get(prefix, 0)
        self._ids[prefix] = n + 1
        return f"{prefix}{n}"

    def next_call_id(self) -> int:
        self._call_id += 1
        return self._call_id

    def watch_breaker(self, breaker: Any) -> None:
        """Show a circuit breaker (``flashevolve_nb.llm.breaker``) in this run's events
        and snapshots; its cool-down then runs on this run's clock."""
        if breaker not in self.breakers:
            self.breakers.append(breaker)
            breaker.bind(self.clock, self._breaker_changed)

    def _breaker_changed(self, change: str, snap: Any) -> None:
        t = self.clock.now()
        event: Event
        if change == "half_open":
            event = BreakerHalfOpen(t=t, breaker=snap.name)
        elif change == "closed":
            event = BreakerClosed(t=t, breaker=snap.name, downtime=snap.last_downtime)
        else:
            event = BreakerOpened(
                t=t, breaker=snap.name, failures=snap.consecutive_failures,
                error=snap.last_error, cooldown=snap.cooldown, reopened=change == "reopened",
            )  # fmt: skip
        self.bus.emit(event)

    def counters(self) -> tuple[int, dict[str, int], int]:
        """(next step, id counters by prefix, last LLM call id): what a resumed run
        continues from (see :meth:`restore`)."""
        return self._next_step, dict(self._ids), self._call_id

    @property
    def state(self) -> str:
        return self._state

    @property
    def steps_in_flight(self) -> int:
        return len(self._live)

    def stage(self, name: str) -> Stage:
        try:
            return self.stages[self._by_name[name]]
        except KeyError:
            raise KeyError(f"no stage {name!r}; stages: {list(self._by_name)}") from None

    def spawn(self, coro: Coroutine[Any, Any, _T], *, name: str) -> asyncio.Task[_T]:
        """Run ``coro`` beside the workers (a fold-in, the controller...); stopping cancels it."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)
        return task

    def restore(
        self,
        entries: Sequence[PoolEntry],
        *,
        version: int,
        next_step: int,
        ids: Mapping[str, int],
        call_id: int,
        metric_calls: int,
        proposals: int,
        t: float,
        wall_seconds: float,
        redo: Sequence[tuple[int, str]] = (),
        session: int = 2,
    ) -> None:
        """Continue a stored run: call before :meth:`run`, which then skips seeding.

        Restores the pool, the step, id and call counters (so ids never repeat),
        the budget already spent and the run clock (``t``, where the run was).
        ``redo`` lists ``(step, parent_id)`` of the steps that were in flight when
        the earlier process ended: they start again first, from the same parent
        when the workload has ``begin_step_from``, so no work is silently
        dropped. A workload with ``restore_progress(pool, steps)`` is told how
        many steps have begun (GEPA moves its minibatch sampler on).
        """
        if self._state != "created":
            raise RuntimeError("restore() comes before run(); this pipeline already ran")
        self.pool.restore(entries, version)
        self._next_step = max(self._next_step, next_step)
        for prefix, n in ids.items():
            self._ids[prefix] = max(self._ids.get(prefix, 0), n)
        self._call_id = max(self._call_id, call_id)
        self.budget.restore(
            metric_calls=metric_calls, proposals=proposals, wall_seconds=wall_seconds
        )
        # The earlier sessions' steps are what a step costs (see step_limit): without
        # them the first step of this session would be taken to cost everything spent.
        self._steps_done = max(0, next_step - 1 - len(redo))
        self._redo = list(redo)
        self._resume = _Resume(t, session, tuple(redo))
        if isinstance(self.workload, ResumableProgress):
            self.workload.restore_progress(self.pool, self._next_step - 1)

    # ---- running ---------------------------------------------------------
    async def run(self) -> RunResult:
        """Seed the pool, run until a budget or ``stop()`` ends it, and return the result."""
        if self._state != "created":
            raise RuntimeError("a pipeline runs once; make a new one for another run")
        loop = asyncio.get_running_loop()
        if not self.clock.started:
            self.clock.start(self._resume.t if self._resume is not None else 0.0)
        self.lag.start()
        self.budget.restart_wall_clock()
        self._done = loop.create_future()
        self._head_wakeup = asyncio.Event()
        self._state = "running"
        self.bus.emit(
            RunStarted(
                t=self.clock.now(),
                mode=self.mode,
                seed=self.seed,
                workload=self.workload.name,
                backend=self.workload.backend_name,
            )
        )
        if self._resume is not None:
            self.bus.emit(
                RunResumed(
                    t=self.clock.now(),
                    session=self._resume.session,
                    version=self.pool.version,
                    entries=len(self.pool),
                    metric_calls=self.budget.metric_calls,
                    proposals=self.budget.proposals,
                    redo_steps=tuple(s for s, _ in self._resume.redo),
                )
            )
        try:
            if not len(self.pool):  # a resumed run that ended before its seed was admitted
                await self._seed_pool()
        except asyncio.CancelledError:
            self._end("cancelled")
            raise
        except Exception as exc:
            self._end(f"failed: seed evaluation raised {type(exc).__name__}: {exc}")
            raise RunFailed(
                f"the seed evaluation failed ({type(exc).__name__}: {exc}); nothing was admitted"
            ) from exc
        for i, stage in enumerate(self.stages):
            for _ in range(stage.target_workers):
                self._spawn_worker(i)
        self._head_task = loop.create_task(self._head(), name="flashevolve-head")
        self._watchdog = loop.create_task(self._time_budget(), name="flashevolve-deadline")
        self.controller.start()
        try:
            await asyncio.shield(self._done)
        except asyncio.CancelledError:
            # Cancelled from outside: wind the tasks down before letting go, so
            # none is left pending on a loop that may be about to close.
            await self._cancel_all_and_wait()
            self._close_cancelled_steps()
            self.speculation.close()
            self._end("cancelled")
            raise
        await self._cancel_all_and_wait()
        self._close_cancelled_steps()
        self.speculation.close()
        self._end(self._finish_reason)
        if self._error is not None:
            raise RunFailed(f"the pipeline failed: {self._error!r}") from self._error
        return self.result()

    async def _seed_pool(self) -> None:
        ctx = StageContext(self, "seed", 0, "seed")
        try:
            seeds = await self.workload.seed(ctx)
        finally:
            self._release_reservations(0)
        for artifact, scores in seeds:
            self._admit_scores(0, artifact, scores)
        self._calls_before_steps = self.budget.metric_calls
        if not len(self.pool):
            raise ValueError("the workload gave no seed artifact to start from")

    def result(self) -> RunResult:
        return RunResult(
            mode=self.mode,
            seed=self.seed,
            pool=self.pool.snapshot(),
            stats=self.collector.stats(self.now()),
            events=tuple(self.recorder.events),
            finish_reason=self._finish_reason,
        )

    def now(self) -> float:
        """The run clock; once the run has ended, the moment it ended (rates stay put)."""
        return self._ended_at if self._ended_at is not None else self.clock.now()

    def snapshot(self) -> PipelineSnapshot:
        return PipelineSnapshot(
            state=self._state,
            t=self.now(),
            mode=self.mode,
            depth=self.depth,
            steps_in_flight=len(self._live),
            requests_in_flight=self.requests_in_flight,
            policy=self.policy.name,
            stages=tuple(s.snapshot() for s in self.stages),
            pool=self.pool.snapshot(),
            stats=self.collector.stats(self.now()),
            breakers=tuple(b.snapshot() for b in self.breakers),
        )

    # ---- control (call on the pipeline's loop) ---------------------------
    def pause(self, stage: str | None = None) -> None:
        """Stop a stage (or, with None, every stage and the head) taking new items.

        Items already being worked on finish; queues keep filling up to the
        in-flight bound.
        """
        self._set_paused(stage, True)

    def resume(self, stage: str | None = None) -> None:
        self._set_paused(stage, False)

    def _set_paused(self, stage: str | None, paused: bool) -> None:
        targets = self.stages if stage is None else [self.stage(stage)]
        for s in targets:
            s.queue.set_paused(paused)
        if stage is None:
            self._head_paused = paused
            self._wake_head()
        self._control(stage or "*", "pause" if paused else "resume", "")

    def set_workers(self, stage: str, n: int, *, source: str = "user") -> None:
        """Change a stage's worker count now; busy workers beyond it finish their item first."""
        if n < 0:
            raise ValueError(f"worker count must be >= 0 (got {n})")
        i = self._by_name.get(stage)
        if i is None:
            raise KeyError(f"no stage {stage!r}; stages: {list(self._by_name)}")
        st = self.stages[i]
        st.target_workers = n
        if self._state == "running":
            live = [w for w in self._workers[i] if not w.retire]
            if n > len(live):
                for _ in range(n - len(live)):
                    self._spawn_worker(i)
            else:
                # Retire idle workers first: they hold no item, so cancelling is clean.
                excess = sorted(live, key=lambda w: w.busy)[: len(live) - n]
                for w in excess:
                    w.retire = True
                    if not w.busy and w.task is not None:
                        w.task.cancel()
        self._control(stage, "workers", str(n), source)

    def set_depth(self, depth: int, *, source: str = "user") -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1 (got {depth})")
        if self.mode == "sync" and depth != 1:
            raise ValueError("the synchronous mode runs one step at a time; depth stays 1")
        self.depth = depth
        self._wake_head()
        self._control("*", "depth", str(depth), source)

    def set_policy(
        self, policy: str | StalenessPolicy, *, source: str = "user", **params: Any
    ) -> None:
        """Switch the staleness policy now; the next decision uses the new one.

        ``params`` go to a policy named by string (``delta_max=3``, ``llm=...``).
        Proposals an outgoing ``meta`` policy still held are dropped (they were
        never admitted), and the event says how many.
        """
        new = make_policy(policy, **params)
        held = len(getattr(self.policy, "buffered", ()))
        self.policy = new
        note = f" ({held} deferred proposal(s) of the old policy dropped)" if held else ""
        self._control("*", "policy", f"{new.name}{note}", source)

    def stop(self, mode: Literal["drain", "cancel"] = "drain", reason: str = "stopped") -> None:
        """End the run: ``drain`` finishes the steps in flight, ``cancel`` drops them.

        Either way every artifact already admitted stays in the pool. Draining
        resumes paused stages, since a paused stage could never drain.
        """
        if mode not in ("drain", "cancel"):
            raise ValueError(f"stop mode must be 'drain' or 'cancel' (got {mode!r})")
        if self._state != "running":
            return
        self._control("*", "stop", mode)
        self._cancel_requested = mode == "cancel"
        if mode == "drain":
            for s in self.stages:
                if s.paused:
                    self._set_paused(s.name, False)
        self._begin_stop(reason, cancel=mode == "cancel")

    # ---- a person in the loop (call on the pipeline's loop) ----------------
    def submit(self, artifact: Artifact) -> int:
        """Start a new evolution step from a person's artifact; returns the step number.

        ``artifact`` has origin ``human``, a fresh id (``new_id("a")``) and its
        parent, an admitted artifact, as ``parents[0]``. It enters at the first
        stage and meets the workload's gate and validation like any proposal
        (the workload says how, see ``HumanSteps``); the in-flight bound does
        not hold it back, a person's proposal is extra work.
        """
        if self._state != "running" or self._stopping:
            raise RuntimeError(
                f"the run is {'stopping' if self._stopping else self._state}; a human "
                "proposal can join only a running run"
            )
        if artifact.origin != Origin.HUMAN:
            raise ValueError(
                f"a submitted artifact has origin 'human' (got {artifact.origin.value!r})"
            )
        if not artifact.parents or artifact.parents[0] not in self.pool:
            raise ValueError(
                f"artifact {artifact.id!r} needs an admitted parent as parents[0] "
                f"(got {artifact.parents!r})"
            )
        if artifact.id in self.pool:
            raise ValueError(f"artifact id {artifact.id!r} is taken; use pipeline.new_id('a')")
        workload = self.workload
        if not isinstance(workload, HumanProposals):
            raise TypeError(
                f"workload {self.workload.name!r} takes no human proposals "
                "(it has no begin_human_step, see flashevolve_nb.engine.workload.HumanSteps)"
            )
        parent = self.pool.entry(artifact.parents[0]).artifact
        step = self._next_step
        # A private random stream: a person's step leaves the head's draws unchanged.
        rng = random.Random(f"{self.seed}:human:{step}")
        item = workload.begin_human_step(
            step, self.new_id("i"), artifact, self.pool, rng, self.clock.now()
        )
        self._next_step += 1
        self._live[step] = 1
        now = self.clock.now()
        self.bus.emit(
            StepStarted(t=now, step=step, parent_id=parent.id, base_version=item.base_version)
        )
        changed = tuple(k for k in artifact if parent.components.get(k) != artifact[k])
        self.bus.emit(
            HumanSubmitted(
                t=now,
                step=step,
                item_id=item.id,
                artifact_id=artifact.id,
                parent_id=parent.id,
                components=changed,
            )
        )
        self._enqueue(0, item)
        return step

    def queued(self, stage: str) -> tuple[WorkItem, ...]:
        """The items waiting in ``stage``'s queue, oldest first."""
        return self.stage(stage).queue.items()

    def drop_item(self, item_id: str) -> bool:
        """Take a waiting item out of its queue, ending its step; False if none waits.

        An item that a worker has already taken is not waiting any more.
        """
        for stage in self.stages:
            gone = stage.queue.remove_if(lambda i: i.id == item_id)
            if gone:
                item = gone[0]
                self._queued_at.pop(item.id, None)
                stage.dropped += 1
                self.bus.emit(
                    QueueEdited(
                        t=self.clock.now(),
                        stage=stage.name,
                        item_id=item.id,
                        step=item.step,
                        action="drop",
                        artifact_id=item.artifact.id,
                    )
                )
                self._end_item(item, f"dropped from the {stage.name} queue by a person")
                return True
        return False

    def replace_item(self, item_id: str, artifact: Artifact) -> bool:
        """Let a waiting item carry ``artifact`` instead; False if no such item waits.

        The workload's ``with_human_artifact`` decides what that means for the
        item (GEPA: before the proposal, ``artifact`` becomes the proposal).
        """
        for stage in self.stages:
            old = next((i for i in stage.queue.items() if i.id == item_id), None)
            if old is None:
                continue
            workload = self.workload
            new = (
                workload.with_human_artifact(old, artifact)
                if isinstance(workload, HumanReplacements)
                else old.evolve(artifact=artifact)
            )
            stage.queue.replace(item_id, new)
            self.bus.emit(
                QueueEdited(
                    t=self.clock.now(),
                    stage=stage.name,
                    item_id=item_id,
                    step=old.step,
                    action="replace",
                    artifact_id=artifact.id,
                    replaced_id=old.artifact.id,
                )
            )
            return True
        return False

    # ---- internals -------------------------------------------------------
    def _control(self, stage: str, action: str, value: str, source: str = "user") -> None:
        self.bus.emit(
            StageControl(t=self.clock.now(), stage=stage, action=action, value=value, source=source)
        )

    def _wake_head(self) -> None:
        if self._head_wakeup is not None:
            self._head_wakeup.set()

    def _begin_stop(self, reason: str, *, cancel: bool) -> None:
        if not self._finish_reason:
            self._finish_reason = reason
        self._stopping = True
        self._wake_head()
        if cancel or not self._live:
            self._resolve()

    def _resolve(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(self._finish_reason)

    def _end(self, reason: str) -> None:
        if self._state in ("finished", "failed", "cancelled"):
            return
        self._finish_reason = reason or self._finish_reason
        if self._error is not None or reason.startswith("failed"):
            self._state = "failed"
        elif reason == "cancelled" or self._cancel_requested:
            self._state = "cancelled"
        else:
            self._state = "finished"
        for step in list(self._reservations):  # steps cut off by the end keep nothing
            self._release_reservations(step)
        lag = self.lag.stop()
        self._ended_at = self.clock.now()
        if lag.behind:  # the verdict goes with the run's events, so a stored run keeps it
            self.bus.emit(ClockBehind.of(lag, t=self._ended_at, final=True))
        self.bus.emit(RunFinished(t=self._ended_at, reason=self._finish_reason))

    def _clock_behind(self, report: LagReport) -> None:
        self.bus.emit(ClockBehind.of(report, t=self.clock.now(), final=False))

    def _cancel_all(self) -> list[asyncio.Task[None]]:
        self._tearing_down = True
        tasks = [t for t in (self._head_task, self._watchdog) if t is not None]
        tasks += list(self._side_tasks)
        tasks += [w.task for ws in self._workers for w in ws if w.task is not None]
        self.lag.stop()  # before the cancel: a wake-up overdue now is lag, not a cancel
        if self.lag.task is not None:
            tasks.append(self.lag.task)
        for t in tasks:
            t.cancel()
        return tasks

    async def _cancel_all_and_wait(self) -> None:
        tasks = self._cancel_all()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _close_cancelled_steps(self) -> None:
        """Give every step cut off by a cancel its closing event, so each start has an end."""
        for step in sorted(self._live):
            self.bus.emit(StepFinished(t=self.clock.now(), step=step, outcome="cancelled"))
        self._live.clear()
        for stage in self.stages:
            stage.queue.remove_if(lambda _: True)
        self._queued_at.clear()

    def _fail(self, exc: BaseException) -> None:
        """An engine bug: stop everything and surface it from ``run()``."""
        if self._error is None:
            self._error = exc
        self._finish_reason = f"failed: {type(exc).__name__}: {exc}"
        self._stopping = True
        self._resolve()

    async def _time_budget(self) -> None:
        b = self.config.budget
        waits: list[tuple[float, str]] = []
        if b.max_sim_seconds is not None:
            waits.append(
                (
                    self.clock.to_real(b.max_sim_seconds - self.clock.now()),
                    f"max_sim_seconds={b.max_sim_seconds:g} reached",
                )
            )
        if b.max_wall_seconds is not None:
            waits.append(
                (
                    b.max_wall_seconds - self.budget.wall_seconds,
                    f"max_wall_seconds={b.max_wall_seconds:g} reached",
                )
            )
        if not waits:
            return
        delay, reason = min(waits)
        await asyncio.sleep(max(0.0, delay))
        self.bus.emit(BudgetExhausted(t=self.clock.now(), reason=reason))
        self._begin_stop(reason, cancel=True)

    async def _head(self) -> None:
        assert self._head_wakeup is not None
        try:
            while True:
                while not self._stopping and (
                    self._head_paused or len(self._live) >= self.step_limit()
                ):
                    self._head_wakeup.clear()
                    await self._head_wakeup.wait()
                if self._stopping:
                    return
                reason = self.budget.count_reason()
                if reason is not None:
                    self.bus.emit(BudgetExhausted(t=self.clock.now(), reason=reason))
                    self._begin_stop(reason, cancel=False)
                    return
                if self._live and self.budget.committed("metric_calls"):
                    # The rest of the budget is promised to steps in flight: wait, and
                    # stop above if they spend it all.
                    self._head_wakeup.clear()
                    await self._head_wakeup.wait()
                    continue
                if self.llm_error_streak < _ERROR_STREAK:
                    self._backoff_level = self._streak_seen = 0
                elif self.llm_error_streak > self._streak_seen:
                    await self._back_off()
                    continue
                step = self._next_step
                item = self._begin_step(step)
                if item is None:
                    self._begin_stop("the workload has no more steps", cancel=False)
                    return
                self._next_step += 1
                self._live[step] = 1
                self.bus.emit(
                    StepStarted(
                        t=self.clock.now(),
                        step=step,
                        parent_id=item.artifact.id,
                        base_version=item.base_version,
                    )
                )
                self._enqueue(0, item)
                # Let the new item's first worker start before the next select.
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)

    async def _back_off(self) -> None:
        """Every recent LLM call failed: wait before starting more steps.

        A backend that fails instantly (a refused connection, an immediate 429)
        would otherwise let the head start and fail steps in a tight loop with
        no time passing: a burnt CPU on a real clock, a hang on a virtual one.
        The wait doubles while failures go on and ends early on a stop.
        """
        assert self._head_wakeup is not None
        delay = min(_BACKOFF_MAX, _BACKOFF_BASE * 2 ** min(self._backoff_level, 10))
        self._backoff_level += 1
        self._control(
            "*", "backoff", f"{delay:g}s: the last {self.llm_error_streak} LLM calls failed",
            "engine",
        )  # fmt: skip
        self._head_wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._head_wakeup.wait(), self.clock.to_real(delay))
        # One more step may probe the backend; a further failure backs off again, longer.
        self._streak_seen = self.llm_error_streak

    def _begin_step(self, step: int) -> WorkItem | None:
        """A new step's first item: a step cut off by a process end first, then fresh ones."""
        item_id = self.new_id("i")
        now = self.clock.now()
        while self._redo:
            previous, parent_id = self._redo.pop(0)
            workload = self.workload
            same = isinstance(workload, StepsFromParent) and parent_id in self.pool
            item: WorkItem | None
            if isinstance(workload, StepsFromParent) and parent_id in self.pool:
                parent = self.pool.entry(parent_id).artifact
                item = workload.begin_step_from(step, item_id, parent, self.pool, self._rng, now)
            else:
                item = self.workload.begin_step(step, item_id, self.pool, self._rng, now)
            if item is None:
                continue
            self.bus.emit(
                StepRestarted(
                    t=now,
                    step=step,
                    previous_step=previous,
                    parent_id=item.artifact.id,
                    same_parent=same,
                )
            )
            return item
        return self.workload.begin_step(step, item_id, self.pool, self._rng, now)

    def _enqueue(self, idx: int, item: WorkItem) -> None:
        stage = self.stages[idx]
        stage.queue.put(item)
        self._queued_at[item.id] = self.clock.now()
        self.bus.emit(
            ItemQueued(
                t=self.clock.now(),
                stage=stage.name,
                item_id=item.id,
                step=item.step,
                depth=len(stage.queue),
            )
        )

    def _spawn_worker(self, idx: int) -> None:
        w = _Worker()
        w.task = asyncio.get_running_loop().create_task(
            self._work(idx, w), name=f"flashevolve-{self.stages[idx].name}"
        )
        self._workers[idx].append(w)

    async def _work(self, idx: int, me: _Worker) -> None:
        stage = self.stages[idx]
        item: WorkItem | None = None
        lost: BaseException | None = None
        try:
            while not me.retire:
                item = await stage.queue.get()
                me.busy = True
                try:
                    await self._process(idx, item)
                finally:
                    me.busy = False
                item = None
        except asyncio.CancelledError as exc:
            if not (me.retire or self._tearing_down or self._stopping):
                lost = exc  # cancelled by something other than the pipeline
        except Exception as exc:
            self._fail(exc)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # not an Exception: meant to end this worker
            lost = exc
        finally:
            if me in self._workers[idx]:
                self._workers[idx].remove(me)
            if lost is not None and self._state == "running":
                self._worker_lost(idx, item, lost)

    def _worker_lost(self, idx: int, item: WorkItem | None, exc: BaseException) -> None:
        """Report a worker that ended on its own; a stage left with none ends the run."""
        stage = self.stages[idx]
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        left = sum(1 for w in self._workers[idx] if not w.retire)
        self.bus.emit(
            WorkerLost(
                t=self.clock.now(),
                stage=stage.name,
                error=error,
                traceback="".join(traceback.format_exception(exc, limit=-4)),
                workers_left=left,
            )
        )
        if item is not None:
            stage.failed += 1
            self._item_failed(item, stage.name, RuntimeError(f"its worker was lost: {error}"))
        if left == 0 and stage.target_workers > 0:
            reason = (
                f"stage {stage.name!r} lost all its workers (last: {error}); "
                f"{len(stage.queue)} item(s) wait there"
            )
            self.bus.emit(
                StageStalled(
                    t=self.clock.now(), stage=stage.name, queued=len(stage.queue), reason=reason
                )
            )
            self._fail(RuntimeError(reason))

    async def _process(self, idx: int, item: WorkItem) -> None:
        stage = self.stages[idx]
        spec = stage.spec
        t0 = self.clock.now()
        waited = t0 - self._queued_at.pop(item.id, t0)
        # Committed, not just spent: calls reserved by stage runs in flight count, so a
        # budget is not overshot by every item that was queued when it ran out.
        spent = [r for r in sorted(spec.consumes) if self.budget.committed(r)]
        if spent:
            stage.dropped += 1
            self.bus.emit(
                ItemDropped(
                    t=t0,
                    stage=stage.name,
                    item_id=item.id,
                    step=item.step,
                    reason=f"budget: {spent[0]} exhausted",
                )
            )
            self._end_item(item, "dropped: budget exhausted")
            return
        stage.busy += 1
        self.bus.emit(
            ItemStarted(t=t0, stage=stage.name, item_id=item.id, step=item.step, waited=waited)
        )
        ctx = StageContext(self, stage.name, item.step, f"{item.step}:{stage.name}:{item.id}")
        try:
            outputs = list(await spec.fn(item, ctx))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling() or self._tearing_down:
                raise
            # Nobody cancelled this worker: the stage's own code let a CancelledError out
            # (a library's timeout, a cancelled shared future). Fail the item, keep the worker.
            stage.failed += 1
            self._item_failed(
                item, stage.name, RuntimeError("the stage raised CancelledError uncancelled")
            )
            return
        except Exception as exc:
            stage.failed += 1
            self._item_failed(item, stage.name, exc)
            return
        finally:
            stage.busy -= 1
        t1 = self.clock.now()
        stage.processed += 1
        self.bus.emit(
            ItemFinished(
                t=t1,
                stage=stage.name,
                item_id=item.id,
                step=item.step,
                outputs=len(outputs),
                duration=t1 - t0,
            )
        )
        if not outputs:
            self._end_item(item, ctx.outcome or f"ended at {stage.name}")
            return
        self._live[item.step] += len(outputs) - 1
        for out in outputs:
            out = out.evolve(
                tokens=item.tokens + ctx.tokens,
                history=(*item.history, (stage.name, t0, t1)),
            )
            try:
                await self._route(idx + 1, out)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A policy or admission that raises fails this item, not the run.
                self._item_failed(out, self._point(idx + 1), exc)

    def _point(self, idx: int) -> str:
        return self.stages[idx].name if idx < len(self.stages) else ADMIT

    def _item_failed(self, item: WorkItem, where: str, exc: Exception) -> None:
        self.bus.emit(
            ItemFailed(
                t=self.clock.now(),
                stage=where,
                item_id=item.id,
                step=item.step,
                error=f"{type(exc).__name__}: {exc}",
                traceback="".join(traceback.format_exception(exc, limit=-4)),
            )
        )
        self._end_item(item, f"failed at {where}")

    async def _route(self, idx: int, item: WorkItem) -> None:
        point = self._point(idx)
        if point in self.decision_points:
            staleness = self.pool.version - item.base_version
            if staleness > 0:
                now = self.clock.now()
                self.bus.emit(
                    StaleDetected(
                        t=now,
                        step=item.step,
                        item_id=item.id,
                        artifact_id=item.artifact.id,
                        point=point,
                        base_version=item.base_version,
                        pool_version=self.pool.version,
                        staleness=staleness,
                    )
                )
                policy = self.policy
                ctx = StageContext(
                    self, f"policy:{point}", item.step, f"{item.step}:{point}:{item.id}"
                )
                decision = await policy.decide(item, staleness, point, ctx)
                self._emit_decision(item, point, policy.name, staleness, decision, ctx.tokens)
                if decision.action == "discard":
                    self._end_item(item, f"discarded as stale before {point}")
                    return
                if decision.action == "defer":
                    self._end_item(item, f"deferred by the {policy.name} policy before {point}")
                    return
                if decision.action == "patch":
                    if decision.replacement is None:
                        raise ValueError(f"policy {policy.name!r} patched without a replacement")
                    item = decision.replacement
                    # A patch is a new artifact: before admission it must be validated.
                    idx = min(idx, self._reentry_index())
        if idx < len(self.stages):
            self._enqueue(idx, item)
        else:
            self._admit(item)

    def _emit_decision(
        self,
        item: WorkItem,
        point: str,
        policy: str,
        staleness: int,
        decision: Decision,
        ctx_tokens: int,
    ) -> None:
        replacement = decision.replacement
        self.bus.emit(
            PolicyDecision(
                t=self.clock.now(),
                step=item.step,
                item_id=item.id,
                artifact_id=item.artifact.id,
                point=point,
                policy=policy,
                staleness=staleness,
                decision=decision.action,
                reason=decision.reason,
                tokens=decision.tokens + ctx_tokens,
                history_ids=decision.history_ids,
                request=decision.request,
                answer=decision.answer,
                artifact=item.artifact,
                replacement=replacement.artifact if replacement is not None else None,
            )
        )

    def _reentry_index(self) -> int:
        """Where a patched item re-enters: the workload's validation stage (default: the last)."""
        name = validation_stage_of(self.workload)
        return self._by_name[name] if name in self._by_name else len(self.stages) - 1

    def _after_improvement(self) -> None:
        """Give a policy that waits for an improvement (``meta``) its turn: a step per group."""
        policy = self.policy
        if self._stopping or self._state != "running" or not isinstance(policy, ImprovementHook):
            return
        loop = asyncio.get_running_loop()
        for group in policy.take_groups(self.pool):
            if not group:
                continue
            step = self._next_step
            self._next_step += 1
            self._live[step] = 1
            best = self.pool.best()
            self.bus.emit(
                StepStarted(
                    t=self.clock.now(),
                    step=step,
                    parent_id=best.artifact.id,
                    base_version=self.pool.version,
                )
            )
            task = loop.create_task(self._distil(step, policy, group), name="flashevolve-distil")
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)

    async def _distil(self, step: int, policy: ImprovementHook, group: Sequence[WorkItem]) -> None:
        carrier = group[-1].evolve(step=step, id=self.new_id("i"))
        ctx = StageContext(self, "policy:distil", step, f"{step}:distil:{carrier.id}")
        try:
            staleness = self.pool.version - min(it.base_version for it in group)
            decision = await policy.distil(group, ctx)
            name = getattr(policy, "name", type(policy).__name__)
            self._emit_decision(carrier, "distil", name, staleness, decision, ctx.tokens)
            if decision.action == "patch" and decision.replacement is not None:
                self._enqueue(self._reentry_index(), decision.replacement.evolve(step=step))
            else:
                self._end_item(carrier, f"distillation: {decision.action}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._item_failed(carrier, "distil", exc)

    def _admit(self, item: WorkItem) -> None:
        if self.speculation.take(item):
            return  # its validation is still running: admitted (maybe speculatively) later
        scores = self.workload.admission(item)
        self._admit_scores(item.step, item.artifact, scores)
        self._end_item(item, "admitted")

    def _admit_scores(self, step: int, artifact: Artifact, scores: Sequence[float]) -> None:
        best_before = self.pool.best().score if len(self.pool) else float("-inf")
        front_before = self.pool.front_ids()
        entry = self.pool.admit(
            artifact, scores, self.clock.now(), objectives=objectives_for(self.workload, artifact)
        )
        now = self.clock.now()
        self.bus.emit(
            Admitted(
                t=now,
                step=step,
                artifact_id=artifact.id,
                parents=artifact.parents,
                origin=artifact.origin.value,
                version=entry.version,
                score=entry.score,
                is_best=entry.score > best_before,
            )
        )
        if step > 0 and entry.score > best_before:
            self._after_improvement()
        if self.pool.front_ids() != front_before:
            best = self.pool.best()
            self.bus.emit(
                FrontierChanged(
                    t=now,
                    version=self.pool.version,
                    front_size=len(self.pool.front_ids()),
                    best_id=best.artifact.id,
                    best_score=best.score,
                )
            )

    def reserve_metric_calls(self, step: int, n: int) -> Reservation:
        """Reserve ``n`` metric calls for ``step``; what it leaves unspent returns when it ends."""
        reservation = self.budget.reserve(n)
        self._reservations.setdefault(step, []).append(reservation)
        return reservation

    def _release_reservations(self, step: int) -> None:
        for r in self._reservations.pop(step, ()):
            r.release()
        self.budget.hard_cap.release(step)

    def step_limit(self) -> int:
        """Steps that may be in flight now: ``depth``, less under a metric-call budget.

        With ``max_metric_calls`` set, at most the remaining calls divided by
        (calls per step x ``call_budget_generations``): a small budget then goes
        into a chain of steps that each start from the last improvement, as
        GEPA's does, not into one wide generation off the seed that would spend
        it all at once; a large budget is not held back.
        """
        limit = self.config.budget.max_metric_calls
        generations = self.config.call_budget_generations
        if limit is None or generations is None or self.mode == "sync":
            return self.depth
        spent = self.budget.metric_calls
        # A step costs at least what seeding cost (one validation sweep): the first steps
        # to finish are the cheap ones (gated out before validating), and pricing steps at
        # their mean alone let a burst of steps start off the seed.
        per_step: float = self._calls_before_steps
        if self._steps_done:
            per_step = max(per_step, (spent - self._calls_before_steps) / self._steps_done)
        per_step = max(1.0, per_step)
        return max(1, min(self.depth, int((limit - spent) / (per_step * generations))))

    def _end_item(self, item: WorkItem, outcome: str) -> None:
        left = self._live.get(item.step, 0) - 1
        if left > 0:
            self._live[item.step] = left
            return
        self._live.pop(item.step, None)
        self._steps_done += 1
        self._release_reservations(item.step)
        self.speculation.step_ended(item.step)
        self.bus.emit(StepFinished(t=self.clock.now(), step=item.step, outcome=outcome))
        self._wake_head()
        if self._stopping and not self._live:
            self._resolve()


def _check_metric_budget(budget: Budget, workload: Workload, instances: int) -> None:
    """Refuse a metric-call budget the seed's validation sweep alone would overshoot.

    A workload with a validation stage scores the seed on every validation
    instance (one metric call each) before any step starts; that sweep is not
    cut, so a smaller ``max_metric_calls`` could not be kept.
    """
    limit = budget.max_metric_calls
    if limit is None or validation_stage_of(workload) is None or limit >= instances:
        return
    raise ValueError(
        f"max_metric_calls={limit} cannot pay for one validation sweep ({instances} examples, "
        f"one metric call each), which scores the seed before anything else; give "
        f"max_metric_calls >= {instances} (a few times more to leave room for evolution) or "
        "a smaller validation set"
    )
