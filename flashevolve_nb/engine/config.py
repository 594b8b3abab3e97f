"""How a pipeline schedules a workload: one immutable value, validated on creation.

Invalid settings fail here, naming the field, before anything starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from flashevolve_nb.engine.budget import Budget
from flashevolve_nb.engine.staleness import make_policy

__all__ = ["Mode", "PipelineConfig"]

Mode = Literal["async", "sync"]


@dataclass(frozen=True)
class PipelineConfig:
    """How to schedule a workload.

    ``depth`` bounds the evolution steps in flight; ``workers`` overrides the
    workload's per-stage worker counts; ``decision_points`` names the stages
    before which (and ``"admit"``, before admission) stale items meet the
    staleness policy. In ``sync`` mode depth and workers are forced to 1.
    """

    mode: Mode = "async"
    depth: int = 16
    workers: Mapping[str, int] = field(default_factory=dict)
    policy: str = "accept"
    decision_points: tuple[str, ...] | None = None
    """None: the workload's ``default_decision_points`` (else just before admission)."""
    seed: int = 0
    budget: Budget = field(default_factory=Budget)
    event_history: int | None = None
    """Keep only the most recent N events in memory (None keeps all)."""

    def __post_init__(self) -> None:
        if self.mode not in ("async", "sync"):
            raise ValueError(f"PipelineConfig.mode must be 'async' or 'sync' (got {self.mode!r})")
        if self.depth < 1:
            raise ValueError(f"PipelineConfig.depth must be >= 1 (got {self.depth})")
        for name, n in self.workers.items():
            if n < 0:
                raise ValueError(f"PipelineConfig.workers[{name!r}] must be >= 0 (got {n})")
        make_policy(self.policy)
