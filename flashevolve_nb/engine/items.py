"""Work items: what travels between stages.

An item is immutable; a stage returns new items (``dataclasses.replace``).
``base_version`` is the pool version the item's work was derived from, fixed
when its evolution step began (or when a repair re-anchors it); staleness is
always computed against the pool at the moment of a decision, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from flashevolve_nb.engine.artifact import Artifact

__all__ = ["WorkItem"]


@dataclass(frozen=True, slots=True)
class WorkItem:
    id: str
    step: int
    base_version: int
    artifact: Artifact
    """The artifact the item is about: the parent before a proposal, the child after."""
    payload: Any = None
    """Workload-specific state (minibatch, traces, scores...), itself immutable."""
    created_at: float = 0.0
    tokens: int = 0
    history: tuple[tuple[str, float, float], ...] = field(default=())
    """(stage, started, finished) for every stage the item passed, on the run clock."""

    def evolve(self, **changes: Any) -> WorkItem:
        return replace(self, **changes)
