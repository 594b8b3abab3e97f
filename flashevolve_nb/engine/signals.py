"""What the adaptive controller sees: per-stage rates, queues and backend signals.

:class:`Signals` is an event subscriber that keeps running totals (cheap:
a few additions per event); :meth:`Signals.observe` turns the totals since
the last observation, plus the pipeline's snapshot, into one immutable
:class:`Observation`. The controller decides from observations only, so
its decisions can be tested on synthetic ones.

A stage's *rate* is what it could produce per minute with its current
workers (workers / mean service time), not what it did produce: in a
pipeline every stage passes on what it receives, so measured throughputs are
nearly equal and cannot point at the bottleneck, while the capacity can.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flashevolve_nb.engine.events import (
    Admitted,
    Event,
    ItemFinished,
    LLMCallFinished,
    LLMCallStarted,
    StageControl,
    StepFinished,
    StepStarted,
)

if TYPE_CHECKING:
    from flashevolve_nb.engine.pipeline import PipelineSnapshot

__all__ = ["Observation", "Signals", "StageObservation", "is_rate_limit"]

_MIN_TOKENS = 500
"""Completion tokens an interval needs before its latency per token counts as a baseline."""


@dataclass(frozen=True, slots=True)
class StageObservation:
    name: str
    workers: int
    busy: int
    queued: int
    finished: int
    """Items the stage finished during the interval."""
    service_time: float | None
    """Smoothed seconds per item (None until one finished)."""

    @property
    def rate(self) -> float | None:
        """Items per minute the stage can produce with its workers (None: not measured yet)."""
        if self.workers == 0:
            return 0.0
        if self.service_time is None:
            return None
        return self.workers * 60.0 / max(self.service_time, 1e-9)


@dataclass(frozen=True, slots=True)
class Observation:
    """One interval of a run, as the controller sees it."""

    t: float
    interval: float
    stages: tuple[StageObservation, ...]
    depth: int
    steps_in_flight: int
    requests_in_flight: int
    inflight_mean: float
    """Mean LLM requests in flight over the interval."""
    latency_per_token: float | None
    """Seconds per completion token over the interval's finished calls (queueing included)."""
    latency_baseline: float | None
    """The lowest ``latency_per_token`` of any interval so far."""
    rate_limited: int
    """Rate-limit answers (HTTP 429), failed calls or retries, during the interval."""
    admitted: int
    staleness: float | None
    """Mean pool versions an admitted artifact had missed, over the interval's admissions."""
    staleness_per_depth: float | None = None
    """Smoothed versions missed per step in flight (staleness / depth while the step ran)."""
    cooling: bool = False
    """A back-off happened recently: no growth yet."""
    steps_mean: float | None = None
    """Mean evolution steps in flight over the interval (None: not measured)."""
    requests_per_step: float | None = None
    """LLM requests one step in flight keeps at the backend, smoothed over intervals
    (None: no step with a request seen yet). What turns a target of requests in flight
    into a depth: the stages' mix (a validation sweep holds many requests, a proposal
    one) is in it. Smoothed because a step's requests come in waves: steps started
    together hold few requests while they roll out and many while they validate."""

    @property
    def latency_ratio(self) -> float | None:
        if self.latency_per_token is None or not self.latency_baseline:
            return None
        return self.latency_per_token / self.latency_baseline

    def stage(self, name: str) -> StageObservation:
        return next(s for s in self.stages if s.name == name)


def is_rate_limit(text: str) -> bool:
    low = text.lower()
    return "429" in low or "rate limit" in low or "ratelimit" in low or "rate_limit" in low


class Signals:
    """Running totals from the event stream; observations are differences between marks."""

    def __init__(self, stage_names: Sequence[str], depth: int) -> None:
        self._names = tuple(stage_names)
        self._depth = depth
        self._finished: Counter[str] = Counter()
        self._busy_time: dict[str, float] = {}
        self._service: dict[str, float] = {}
        self._latency = 0.0
        self._tokens = 0
        self._rate_limited = 0
        self._admitted = 0
        self._missed = 0
        self._per_depth = 0.0
        self._per_depth_smooth: float | None = None
        self._per_step_smooth: float | None = None
        self._base: dict[int, tuple[int, int]] = {}
        self._inflight = 0
        self._area = 0.0
        self._steps = 0
        self._steps_area = 0.0
        self._t_last = 0.0
        self._baseline: float | None = None
        self._mark = _Mark(0.0, Counter(), {}, 0.0, 0, 0, 0, 0, 0.0, 0.0, 0.0)

    def _advance(self, t: float) -> None:
        """Integrate requests and steps in flight up to ``t`` (before either changes)."""
        dt = t - self._t_last
        if dt > 0:
            self._area += self._inflight * dt
            self._steps_area += self._steps * dt
            self._t_last = t

    def __call__(self, e: Event) -> None:
        if isinstance(e, LLMCallStarted | LLMCallFinished):
            self._advance(e.t)
            if isinstance(e, LLMCallStarted):
                self._inflight += 1
                return
            self._inflight -= 1
            if e.ok and e.completion_tokens > 0:
                self._latency += e.latency
                self._tokens += e.completion_tokens
            elif not e.ok and is_rate_limit(e.error):
                self._rate_limited += 1
        elif isinstance(e, ItemFinished):
            self._finished[e.stage] += 1
            self._busy_time[e.stage] = self._busy_time.get(e.stage, 0.0) + e.duration
        elif isinstance(e, StepStarted):
            self._advance(e.t)
            self._steps += 1
            self._base[e.step] = (e.base_version, self._depth)
        elif isinstance(e, StepFinished):
            self._advance(e.t)
            if self._base.pop(e.step, None) is not None:
                self._steps -= 1
        elif isinstance(e, Admitted):
            started = self._base.get(e.step)
            if started is not None and e.step > 0:
                base, depth = started
                missed = max(0, e.version - 1 - base)
                self._admitted += 1
                self._missed += missed
                # Staleness grows with the steps in flight while this one ran; per unit
                # of depth it is a property of the workload that does not lag behind a
                # depth change the way staleness itself does (by a whole step latency).
                self._per_depth += missed / max(1.0, (depth + self._depth) / 2)
        elif isinstance(e, StageControl):
            if e.action == "depth" and e.value.isdigit():
                self._depth = int(e.value)
        elif e.kind == "llm_retry":
            status = getattr(e, "status", None)
            if status == 429 or is_rate_limit(str(getattr(e, "cause", ""))):
                self._rate_limited += 1

    def observe(
        self,
        snap: PipelineSnapshot,
        *,
        smoothing: float = 0.5,
        cooling: bool = False,
        advance: bool = True,
    ) -> Observation:
        """What happened since the last mark; ``advance`` moves the mark to now."""
        now = snap.t
        m = self._mark
        interval = max(0.0, now - m.t)
        gap = max(0.0, now - self._t_last)
        area = self._area + self._inflight * gap
        steps_area = self._steps_area + self._steps * gap
        service = dict(self._service)
        stages = []
        by_name = {s.name: s for s in snap.stages}
        for name in self._names:
            s = by_name[name]
            n = self._finished[name] - m.finished[name]
            if n > 0:
                mean = (self._busy_time.get(name, 0.0) - m.busy_time.get(name, 0.0)) / n
                old = service.get(name)
                service[name] = mean if old is None else smoothing * old + (1 - smoothing) * mean
            stages.append(
                StageObservation(
                    name=name, workers=s.workers, busy=s.busy, queued=s.queued, finished=n,
                    service_time=service.get(name),
                )
            )  # fmt: skip
        tokens = self._tokens - m.tokens
        per_token = (self._latency - m.latency) / tokens if tokens > 0 else None
        baseline = self._baseline
        if per_token is not None and tokens >= _MIN_TOKENS:
            baseline = per_token if baseline is None else min(baseline, per_token)
        admitted = self._admitted - m.admitted
        per_depth = self._per_depth_smooth
        if admitted:
            now_per_depth = (self._per_depth - m.per_depth) / admitted
            per_depth = (
                now_per_depth
                if per_depth is None
                else smoothing * per_depth + (1 - smoothing) * now_per_depth
            )
        steps_mean = (steps_area - m.steps_area) / interval if interval > 0 else None
        inflight_mean = (area - m.area) / interval if interval > 0 else float(self._inflight)
        per_step = self._per_step_smooth
        if steps_mean is not None and steps_mean >= 1.0 and inflight_mean > 0:
            now_per_step = inflight_mean / steps_mean
            per_step = (
                now_per_step
                if per_step is None
                else smoothing * per_step + (1 - smoothing) * now_per_step
            )
        obs = Observation(
            t=now,
            interval=interval,
            stages=tuple(stages),
            depth=snap.depth,
            steps_in_flight=snap.steps_in_flight,
            requests_in_flight=snap.requests_in_flight,
            inflight_mean=inflight_mean,
            latency_per_token=per_token,
            latency_baseline=baseline,
            rate_limited=self._rate_limited - m.rate_limited,
            admitted=admitted,
            staleness=(self._missed - m.missed) / admitted if admitted else None,
            staleness_per_depth=per_depth,
            cooling=cooling,
            steps_mean=steps_mean,
            requests_per_step=per_step,
        )
        if advance:
            self._service = service
            self._baseline = baseline
            self._per_depth_smooth = per_depth
            self._per_step_smooth = per_step
            self._mark = _Mark(
                now, Counter(self._finished), dict(self._busy_time), self._latency,
                self._tokens, self._rate_limited, self._admitted, self._missed, area,
                self._per_depth, steps_area,
            )  # fmt: skip
        return obs


@dataclass(frozen=True, slots=True)
class _Mark:
    t: float
    finished: Counter[str]
    busy_time: dict[str, float]
    latency: float
    tokens: int
    rate_limited: int
    admitted: int
    missed: int
    area: float
    per_depth: float
    steps_area: float
