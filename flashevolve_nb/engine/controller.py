"""Adaptive workflow control (PAPER.md, Mechanism 4): move workers, size the pipeline.

Every ``interval`` simulated seconds the controller observes the run (see
:mod:`flashevolve_nb.engine.signals`) and decides with :func:`decide`, a
pure function of one observation and the parameters:

- **workers**: a stage whose rate is under ``low`` x the median stage rate and
  that has items waiting gains one worker; one over ``high`` x the median with
  nothing waiting loses one. Within per-stage bounds and a total cap; at the
  cap, a gain is paid for by the stage with the most spare capacity. Below the
  cap, any stage of the slower half with items waiting also gains one, so a
  pipeline short everywhere grows instead of staying evenly short.
- **depth** (steps in flight): grows by ``depth_step`` while every slot is busy,
  no stage is short of workers (none gained one, queues hold at most a quarter
  of the depth), the backend's latency per token has not risen past
  ``latency_limit`` x the lowest seen, and the admitted artifacts' staleness,
  projected to the larger depth, stays within ``staleness_budget``; shrinks
  when the projection for the current depth is over it. The projection uses
  staleness *per step in flight* (staleness is about the admitted fraction
  times the depth): staleness itself answers a depth change only a whole step
  latency later, and a controller steering by it overshoots both ways.
- **depth, with the server's cap known** (``server_cap``): steps are a poor unit
  of load (a step validating holds many requests, one proposing holds one), so
  the depth aims at ``server_fill`` x the cap in *requests* in flight: the
  target over the requests one step holds (smoothed over intervals), up to
  double per decision while the same guards allow growth; it comes down when
  the mean is well over the target (the rest only waits in the server's queue)
  or the staleness projection is over the budget.
- **back-off**: rate-limit answers (HTTP 429) multiply the depth by
  ``backoff`` and hold growth for ``cooldown`` seconds.

Each change is a ``ControllerAction`` event with its reason, followed by the
pipeline's own ``StageControl``. ``fixed`` mode is the same object, disabled:
it still observes (for the dashboard) but never acts. Every parameter can be
changed while the run goes on with :meth:`Controller.tune`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from flashevolve_nb.engine.events import ControllerAction
from flashevolve_nb.engine.signals import Observation, Signals, StageObservation

if TYPE_CHECKING:
    from flashevolve_nb.engine.pipeline import Pipeline

__all__ = [
    "Controller",
    "ControllerMode",
    "ControllerParams",
    "ControllerSnapshot",
    "Move",
    "decide",
]

ControllerMode = Literal["fixed", "adaptive"]


@dataclass(frozen=True)
class ControllerParams:
    """Everything the controller decides with; all of it live-tunable."""

    interval: float = 30.0
    """Simulated seconds between decisions."""
    low: float = 0.5
    """A stage under ``low`` x the median rate (and with a backlog) gains a worker."""
    high: float = 2.0
    """A stage over ``high`` x the median rate (and with nothing queued) loses one."""
    min_workers: int = 1
    max_workers: int = 32
    bounds: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """Per-stage ``(min, max)`` workers, overriding ``min_workers`` / ``max_workers``."""
    max_total_workers: int = 96
    """Cap on the sum of all stages' workers."""
    adjust_depth: bool = True
    min_depth: int = 4
    max_depth: int = 64
    depth_step: int = 2
    staleness_budget: float = 32.0
    """Mean pool versions an admitted artifact may have missed. 32, not less: with
    reflective repair the stale work still pays, and a tighter budget stopped the
    depth (and the backend's load) at about two-thirds of capacity
    (``flashevolve bench``, vllm profile, BENCHMARKS.md)."""
    latency_limit: float = 2.5
    """Latency per token, as a multiple of the lowest seen, past which depth stops growing.
    A batching server's per-token latency rises with its batch; with 2.5x the lowest (and
    the staleness budget of 32) a simulated vLLM server ran at 81-82% of its token
    capacity, where 1.6 (and 16) held it near two-thirds (BENCHMARKS.md)."""
    server_cap: int | None = None
    """Sequences the backend serves at once, when known (vLLM's ``max_num_seqs``; the
    simulator's ``/sim/stats`` says ``max_running``). Set, the depth aims at
    ``server_fill`` x this many LLM requests in flight instead of growing step by step.
    None: the depth grows by ``depth_step`` while every slot is busy."""
    server_fill: float = 1.25
    """Requests in flight to aim at, as a multiple of ``server_cap``. Over 1: the load
    swings (a validation sweep holds many requests, a proposal one), and a batch that
    is full on average is partly empty half the time. On the simulated vLLM server
    (virtual clock, seeds 0-2) 1.25 used 85-89% of its token capacity, 1.0 84-88%;
    1.5 added nothing but requests waiting in its queue."""
    backoff: float = 0.5
    """Depth multiplier after rate-limit answers."""
    cooldown: float = 120.0
    """Simulated seconds without depth growth after a back-off."""
    smoothing: float = 0.5
    """Weight of the past in a stage's mean service time (0: last interval only)."""

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"ControllerParams.{name} {why} (got {getattr(self, name)!r})")

        if not self.interval > 0:
            raise bad("interval", "must be > 0")
        if not 0 < self.low < 1:
            raise bad("low", "must be in (0, 1)")
        if not self.high > 1:
            raise bad("high", "must be > 1")
        if self.min_workers < 0:
            raise bad("min_workers", "must be >= 0")
        if self.max_workers < max(1, self.min_workers):
            raise bad("max_workers", "must be >= max(1, min_workers)")
        for stage, (lo, hi) in self.bounds.items():
            if not 0 <= lo <= hi or hi < 1:
                raise ValueError(
                    f"ControllerParams.bounds[{stage!r}] must be (min, max) with "
                    f"0 <= min <= max and max >= 1 (got {(lo, hi)!r})"
                )
        if self.max_total_workers < 1:
            raise bad("max_total_workers", "must be >= 1")
        if self.min_depth < 1:
            raise bad("min_depth", "must be >= 1")
        if self.max_depth < self.min_depth:
            raise bad("max_depth", "must be >= min_depth")
        if self.depth_step < 1:
            raise bad("depth_step", "must be >= 1")
        if not self.staleness_budget >= 0:
            raise bad("staleness_budget", "must be >= 0")
        if not self.latency_limit > 1:
            raise bad("latency_limit", "must be > 1")
        if self.server_cap is not None and self.server_cap < 1:
            raise bad("server_cap", "must be >= 1 or None")
        if not self.server_fill > 0:
            raise bad("server_fill", "must be > 0")
        if not 0 < self.backoff < 1:
            raise bad("backoff", "must be in (0, 1)")
        if not self.cooldown >= 0:
            raise bad("cooldown", "must be >= 0")
        if not 0 <= self.smoothing < 1:
            raise bad("smoothing", "must be in [0, 1)")

    def bounds_for(self, stage: str) -> tuple[int, int]:
        return self.bounds.get(stage, (self.min_workers, self.max_workers))

    @property
    def request_target(self) -> int | None:
        """Mean LLM requests in flight the depth aims at (None: no server cap known)."""
        if self.server_cap is None:
            return None
        return max(1, math.ceil(self.server_cap * self.server_fill))


@dataclass(frozen=True, slots=True)
class Move:
    """One decision: a stage's workers (or, for stage ``*``, the depth) from before to after."""

    action: Literal["workers", "depth", "backoff"]
    stage: str
    before: int
    after: int
    reason: str


@dataclass(frozen=True, slots=True)
class ControllerSnapshot:
    """What the controller saw and did last (for the dashboard)."""

    enabled: bool
    params: ControllerParams
    observation: Observation | None
    moves: tuple[Move, ...]
    """What the last decision did (empty: nothing needed changing)."""
    decisions: int
    actions: int
    held: Mapping[str, int] = field(default_factory=dict)
    """Stages whose worker count a person set: the controller leaves them as they are."""


def decide(obs: Observation, params: ControllerParams) -> tuple[Move, ...]:
    """The controller's decision for one observation: a pure function, easy to test."""
    if obs.rate_limited > 0:
        after = max(params.min_depth, int(obs.depth * params.backoff))
        if after >= obs.depth:
            return ()
        return (
            Move(
                "backoff", "*", obs.depth, after,
                f"{obs.rate_limited} rate-limit answer(s) (429) in the last {obs.interval:.0f}s: "
                f"fewer steps in flight, no growth for {params.cooldown:.0f}s",
            ),
        )  # fmt: skip
    moves = list(_worker_moves(obs, params))
    if params.adjust_depth:
        short = any(m.after > m.before for m in moves) or _backlog(obs) > obs.depth // 4
        depth = _depth_move(obs, params, workers_short=short)
        if depth is not None:
            moves.append(depth)
    return tuple(moves)


def _worker_moves(obs: Observation, params: ControllerParams) -> list[Move]:
    known = [(s, r) for s in obs.stages if (r := s.rate) is not None]
    if len(known) < 2:
        return []
    median = statistics.median(r for _, r in known)
    if median <= 0:
        return []
    workers = {s.name: s.workers for s in obs.stages}
    total = sum(workers.values())
    moves: list[Move] = []

    def move(s: StageObservation, delta: int, reason: str) -> None:
        nonlocal total
        before = workers[s.name]
        workers[s.name] = before + delta
        total += delta
        moves.append(Move("workers", s.name, before, before + delta, reason))

    for s, r in sorted(known, key=lambda sr: -sr[1]):
        lo, _ = params.bounds_for(s.name)
        if r > params.high * median and workers[s.name] > lo and s.queued == 0:
            move(s, -1, f"can produce {r:.1f}/min, over {params.high:g}x the median "
                        f"{median:.1f}/min, with nothing queued")  # fmt: skip
    losing = {m.stage for m in moves}
    for s, r in sorted(known, key=lambda sr: sr[1]):
        _, hi = params.bounds_for(s.name)
        if not (r < params.low * median and s.queued > 0 and workers[s.name] < hi):
            continue
        if total >= params.max_total_workers:
            donors = [
                (d, dr) for d, dr in known
                if d.name != s.name and d.name not in losing and dr > median
                and d.queued == 0 and workers[d.name] > params.bounds_for(d.name)[0]
            ]  # fmt: skip
            if not donors:
                continue
            donor, dr = max(donors, key=lambda dd: dd[1])
            losing.add(donor.name)
            move(donor, -1, f"gives a worker to {s.name!r} (total cap {params.max_total_workers}): "
                            f"can produce {dr:.1f}/min, nothing queued")  # fmt: skip
        move(s, +1, f"can produce {r:.1f}/min, under {params.low:g}x the median "
                    f"{median:.1f}/min, with {s.queued} queued")  # fmt: skip
    # The median rule only balances stages against each other: when every stage is
    # short (a pipeline started with one worker each), none is under half the
    # median and it would stay short for good. So, while under the cap, every stage
    # in the slower half that has items waiting gains one as well.
    gained = {m.stage for m in moves if m.after > m.before}
    for s, r in sorted(known, key=lambda sr: sr[1]):
        _, hi = params.bounds_for(s.name)
        if total >= params.max_total_workers:
            break
        if s.name in gained or s.name in losing or r > median or s.queued == 0:
            continue
        if workers[s.name] < hi:
            move(s, +1, f"{s.queued} queued and can produce {r:.1f}/min, not more than the "
                        f"median {median:.1f}/min; {total} of {params.max_total_workers} "
                        "workers in use")  # fmt: skip
    return moves


def _backlog(obs: Observation) -> int:
    return sum(s.queued for s in obs.stages)


def _depth_move(obs: Observation, params: ControllerParams, *, workers_short: bool) -> Move | None:
    target = params.request_target
    if target is not None and obs.requests_per_step is not None:
        return _depth_to_target(obs, params, target, workers_short=workers_short)
    d = obs.depth
    k = obs.staleness_per_depth
    budget = params.staleness_budget
    if k is None:
        return None  # nothing admitted yet: no idea what a deeper pipeline costs
    if k * d > budget:
        if d <= params.min_depth:
            return None
        after = max(params.min_depth, d - params.depth_step)
        return Move(
            "depth", "*", d, after,
            f"staleness at admission, {k:.2f} versions per step in flight, comes to "
            f"{k * d:.1f} at depth {d}: over the budget {budget:g}",
        )  # fmt: skip
    # More steps in flight only help when steps, not workers, are what is missing:
    # with stages short of workers they would just wait in queues, staler.
    if obs.cooling or workers_short or d >= params.max_depth or obs.steps_in_flight < d:
        return None
    ratio = obs.latency_ratio
    if ratio is not None and ratio > params.latency_limit:
        return None
    after = min(params.max_depth, d + params.depth_step)
    if k * after > budget:
        return None
    lat = "no latency yet" if ratio is None else f"latency per token {ratio:.2f}x the lowest seen"
    return Move(
        "depth", "*", d, after,
        f"all {d} slots busy, {lat}, staleness at depth {after} projected "
        f"{k * after:.1f} ({k:.2f} per step in flight): within the budget {budget:g}",
    )  # fmt: skip


_TARGET_BAND = 0.15
"""How far over the request target the mean may be before the depth comes down: the
load swings within an interval, and a dead band keeps the depth from chasing it."""


def _depth_to_target(
    obs: Observation, params: ControllerParams, target: int, *, workers_short: bool
) -> Move | None:
    """Depth aimed at ``target`` requests in flight, within the staleness and latency guards.

    Steps are a poor unit of load: a step validating holds many requests, one
    proposing holds one, so a fixed depth leaves a batching server now idle, now
    queueing. Requests per step, measured and smoothed over intervals, turn the target
    into a depth, reached in a few decisions instead of ``depth_step`` at a time. A cut
    takes effect only as steps end, so no second cut comes before the first has.
    """
    d = obs.depth
    rps = obs.requests_per_step
    assert rps is not None
    k = obs.staleness_per_depth
    budget = params.staleness_budget
    mean = obs.inflight_mean
    want = max(params.min_depth, min(params.max_depth, math.ceil(target / rps)))
    if k is not None and k > 0:
        # Never aim past what the staleness budget allows.
        want = max(params.min_depth, min(want, math.floor(budget / k)))
    stale = "" if k is None else f", staleness projected {k * want:.1f} (budget {budget:g})"
    load = f"{mean:.0f} requests in flight on average, {rps:.1f} per step"
    if k is not None and k * d > budget:
        if d <= params.min_depth:
            return None
        after = max(params.min_depth, want, d - max(params.depth_step, d // 4))
        return Move(
            "depth", "*", d, after,
            f"staleness at admission, {k:.2f} versions per step in flight, comes to "
            f"{k * d:.1f} at depth {d}: over the budget {budget:g}",
        )  # fmt: skip
    if want < d and mean > target * (1 + _TARGET_BAND):
        if obs.steps_in_flight > d:
            return None  # the last cut has not taken effect yet: steps end, none are cut
        # Over the target the extra requests wait in the server's queue: no throughput,
        # only staleness. Come down gently, the load swings.
        after = max(want, d - max(params.depth_step, d // 4))
        return Move(
            "depth", "*", d, after,
            f"{load}: over the target {target}; the rest would wait in the server's queue",
        )  # fmt: skip
    if want <= d or mean >= target:
        return None
    if obs.cooling or workers_short or obs.steps_in_flight < d:
        return None
    ratio = obs.latency_ratio
    if ratio is not None and ratio > params.latency_limit:
        return None
    # At most double per decision: requests per step moves with the depth (queues form).
    after = min(want, 2 * d, params.max_depth)
    if after <= d:
        return None
    lat = "no latency yet" if ratio is None else f"latency per token {ratio:.2f}x the lowest seen"
    return Move(
        "depth", "*", d, after,
        f"{load}, under the target {target}: {after} steps aim at it; {lat}{stale}",
    )  # fmt: skip


class Controller:
    """The pipeline's controller; ``pipeline.controller``. Runs on the pipeline's loop."""

    def __init__(self, pipeline: Pipeline, params: ControllerParams, *, enabled: bool) -> None:
        if enabled and pipeline.mode == "sync":
            raise ValueError(
                "the synchronous mode runs one step with one worker per stage; "
                "use controller='fixed' with it"
            )
        self._p = pipeline
        self._params = params
        self._enabled = enabled
        self._signals = Signals([s.name for s in pipeline.stages], pipeline.depth)
        pipeline.bus.subscribe(self._signals)
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._cool_until = float("-inf")
        self._last: Observation | None = None
        self._moves: tuple[Move, ...] = ()
        self._decisions = 0
        self._actions = 0
        self._held: dict[str, int] = {}

    @property
    def params(self) -> ControllerParams:
        return self._params

    @property
    def enabled(self) -> bool:
        return self._enabled

    def set_enabled(self, on: bool, *, source: str = "user") -> None:
        """Switch between adaptive (on) and fixed (off) worker counts, live."""
        if on and self._p.mode == "sync":
            raise ValueError("the synchronous mode cannot be controlled adaptively")
        if on == self._enabled:
            return
        self._enabled = on
        word = "enable" if on else "disable"
        self._emit(word, "*", str(not on), str(on), f"{word}d by {source}", source)
        if on:
            self.start()
        elif self._task is not None:
            self._task.cancel()
            self._task = None

    @property
    def held(self) -> Mapping[str, int]:
        """Stages held at a person's worker count (stage -> count)."""
        return MappingProxyType(dict(self._held))

    def hold(self, stage: str, workers: int, *, source: str = "user") -> None:
        """Keep ``stage`` at ``workers``: the controller neither adds nor takes one.

        A person who sets a worker count means it; without this the next decision
        would undo it. :meth:`release` hands the stage back.
        """
        before = self._held.get(stage)
        self._held[stage] = workers
        if before != workers:
            self._emit(
                "hold", stage, "" if before is None else str(before), str(workers),
                f"held at {workers} worker(s) by {source} until released", source,
            )  # fmt: skip

    def release(self, stage: str, *, source: str = "user") -> bool:
        """Let the controller move ``stage``'s workers again; False if it was not held."""
        n = self._held.pop(stage, None)
        if n is None:
            return False
        why = f"handed back to the controller by {source}"
        self._emit("release", stage, str(n), "", why, source)
        return True

    def _decision_params(self) -> ControllerParams:
        if not self._held:
            return self._params
        bounds = {**self._params.bounds, **{s: (n, max(n, 1)) for s, n in self._held.items()}}
        return dataclasses.replace(self._params, bounds=bounds)

    def tune(self, *, source: str = "user", **changes: Any) -> ControllerParams:
        """Change parameters now (e.g. ``tune(interval=10, staleness_budget=8)``)."""
        names = {f.name for f in dataclasses.fields(ControllerParams)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(
                f"unknown controller parameter(s) {', '.join(unknown)}; "
                f"parameters: {', '.join(sorted(names))}"
            )
        new = dataclasses.replace(self._params, **changes)
        before = ", ".join(f"{k}={getattr(self._params, k)!r}" for k in sorted(changes))
        after = ", ".join(f"{k}={getattr(new, k)!r}" for k in sorted(changes))
        self._params = new
        self._emit("tune", "*", before, after, f"tuned by {source}", source)
        if self._wake is not None:
            self._wake.set()
        return new

    def start(self) -> None:
        """Begin deciding every ``interval`` (the pipeline calls this when it starts)."""
        if not self._enabled or self._task is not None or self._p.state != "running":
            return
        self._task = self._p.spawn(self._loop(), name="flashevolve-controller")

    async def _loop(self) -> None:
        wake = self._wake = asyncio.Event()
        clock = self._p.clock
        last = clock.now()
        try:
            while self._enabled:
                wake.clear()
                remaining = last + self._params.interval - clock.now()
                due = remaining <= 0
                if not due:
                    try:
                        await asyncio.wait_for(wake.wait(), clock.to_real(remaining))
                    except TimeoutError:
                        # Decide on every timeout, however small the remainder was:
                        # a virtual clock may not resolve it, and must not spin.
                        due = True
                if due:
                    last = clock.now()
                    self.step()
                # Woken by tune(): go round, with the (possibly new) interval.
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    def step(self) -> tuple[Move, ...]:
        """Observe and decide now; apply the moves if enabled. Returns the moves."""
        now = self._p.clock.now()
        obs = self._signals.observe(
            self._p.snapshot(), smoothing=self._params.smoothing, cooling=now < self._cool_until
        )
        moves = decide(obs, self._decision_params()) if self._enabled else ()
        # Bounds cannot say "exactly 0" (a stage's max is at least 1): filter as well.
        moves = tuple(m for m in moves if m.action != "workers" or m.stage not in self._held)
        for m in moves:
            self._apply(m)
        self._last = obs
        self._moves = moves
        self._decisions += 1
        return moves

    def _apply(self, m: Move) -> None:
        self._emit(m.action, m.stage, str(m.before), str(m.after), m.reason, "controller")
        self._actions += 1
        if m.action == "workers":
            self._p.set_workers(m.stage, m.after, source="controller")
        else:
            self._p.set_depth(m.after, source="controller")
        if m.action == "backoff":
            self._cool_until = self._p.clock.now() + self._params.cooldown

    def _emit(
        self, action: str, stage: str, before: str, after: str, reason: str, source: str
    ) -> None:
        self._p.bus.emit(
            ControllerAction(
                t=self._p.clock.now(), action=action, stage=stage, before=before, after=after,
                reason=reason, source=source,
            )
        )  # fmt: skip

    def snapshot(self) -> ControllerSnapshot:
        obs = self._last
        if obs is None or not self._enabled:
            # Disabled (fixed mode): show what it would see now, without moving its mark.
            obs = self._signals.observe(
                self._p.snapshot(), smoothing=self._params.smoothing, advance=False
            )
        return ControllerSnapshot(
            enabled=self._enabled,
            params=self._params,
            observation=obs,
            moves=self._moves,
            decisions=self._decisions,
            actions=self._actions,
            held=MappingProxyType(dict(self._held)),
        )
