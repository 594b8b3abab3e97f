"""What a finished (or stopped) run hands back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flashevolve_nb.engine.artifact import Artifact
from flashevolve_nb.engine.bus import events_frame
from flashevolve_nb.engine.events import Event
from flashevolve_nb.engine.pool import PoolSnapshot
from flashevolve_nb.engine.stats import RunStats

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RunResult"]


@dataclass(frozen=True)
class RunResult:
    mode: str
    seed: int
    pool: PoolSnapshot
    stats: RunStats
    events: tuple[Event, ...]
    finish_reason: str

    @property
    def best(self) -> Artifact:
        return next(e.artifact for e in self.pool.entries if e.artifact.id == self.pool.best_id)

    @property
    def best_score(self) -> float:
        return self.pool.best_score

    def events_frame(self) -> pd.DataFrame:
        return events_frame(self.events)

    def pool_frame(self) -> pd.DataFrame:
        """One row per admitted artifact: id, origin, parents, version, score."""
        import pandas as pd

        return pd.DataFrame.from_records(
            [
                {
                    "artifact_id": e.artifact.id,
                    "origin": e.artifact.origin.value,
                    "parents": e.artifact.parents,
                    "base_version": e.artifact.base_version,
                    "version": e.version,
                    "admitted_at": e.admitted_at,
                    "score": e.score,
                    "on_front": e.artifact.id in self.pool.front_ids,
                }
                for e in self.pool.entries
            ]
        )
