"""What a run looks like at one moment: one immutable value for any thread.

The dashboard reads nothing but these (and events), which is why they hold
everything it shows: stage counters, what waits in every queue, the LLM
requests in flight, the pool, the statistics, the controller's last view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flashevolve_nb.clock_lag import LagReport
from flashevolve_nb.engine.pipeline import PipelineSnapshot
from flashevolve_nb.engine.pool import PoolSnapshot
from flashevolve_nb.engine.stage import StageSnapshot
from flashevolve_nb.engine.stats import RunStats
from flashevolve_nb.runtime.tap import RequestInFlight

__all__ = ["QueuedItem", "RunSnapshot"]


@dataclass(frozen=True, slots=True)
class QueuedItem:
    """An item waiting in a stage's queue."""

    stage: str
    item_id: str
    step: int
    artifact_id: str
    base_version: int
    staleness: int
    """Pool versions the item has not seen, now."""
    origin: str = ""
    """Its artifact's origin (``human`` for a person's submission or edit)."""


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    name: str
    state: str
    """``starting``, ``running``, ``paused`` (every stage), ``stopping``, ``finished``,
    ``failed`` or ``cancelled``."""
    workload: str
    backend: str
    time_scale: float
    """Simulated seconds per real second (1 with a real backend)."""
    real_seconds: float
    pipeline: PipelineSnapshot
    queued: tuple[QueuedItem, ...]
    requests: tuple[RequestInFlight, ...]
    events: int
    """Events emitted so far."""
    errors: tuple[str, ...]
    """The most recent item failures (the run goes on) and loop errors, oldest first."""
    error: str
    """Why the run failed, or ``""``."""
    finish_reason: str
    policies: tuple[str, ...]
    """Staleness policies this installation offers."""
    policy_params: Mapping[str, Any] = field(default_factory=dict)
    """The current policy's numeric and switch settings (``delta_max`` for ``guarded``)."""
    controller: Any = None
    """The adaptive controller's own snapshot (what it saw and did last), if any."""
    controller_params: Any = None
    controller_enabled: bool | None = None
    held: Mapping[str, int] = field(default_factory=dict)
    """Stages held at a person's worker count (the controller leaves them)."""
    speculation: Any = None
    """The speculation's own snapshot (alpha per stage, speculative validation on/off)."""
    partial_stages: tuple[str, ...] = ()
    """Stages that can hand their output on early (alpha below 1 applies to them)."""
    answer_seconds: float = 0.0
    """Real seconds the run's loop took to answer for this snapshot (a busy loop lags)."""
    clock: LagReport | None = None
    """How far the real clock lags the simulated one so far (``flashevolve_nb.clock_lag``);
    the run's verdict, once it has one, is ``stats.clock_behind``."""

    @property
    def sim_seconds(self) -> float:
        return self.pipeline.t

    @property
    def stages(self) -> tuple[StageSnapshot, ...]:
        return self.pipeline.stages

    @property
    def pool(self) -> PoolSnapshot:
        return self.pipeline.pool

    @property
    def stats(self) -> RunStats:
        return self.pipeline.stats

    @property
    def depth(self) -> int:
        return self.pipeline.depth

    @property
    def policy(self) -> str:
        return self.pipeline.policy

    @property
    def done(self) -> bool:
        return self.state in ("finished", "failed", "cancelled")

    def stage(self, name: str) -> StageSnapshot:
        for s in self.pipeline.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r}; stages: {[s.name for s in self.pipeline.stages]}")
