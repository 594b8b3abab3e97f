"""The pool: admitted artifacts, their per-instance scores, the Pareto fronts.

``version`` goes up by one on every admission (and on every removal, which
speculative admission will need), so ``pool.version - item.base_version`` is
exactly how many pool changes an item has not seen: its staleness.

Scores are kept per validation instance because GEPA's parent selection
works on per-instance fronts: an artifact that is the best on even one
instance stays a candidate parent, which keeps diverse strategies alive.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from flashevolve_nb.engine.artifact import Artifact

__all__ = ["Pool", "PoolEntry", "PoolSnapshot"]


@dataclass(frozen=True, slots=True)
class PoolEntry:
    artifact: Artifact
    scores: tuple[float, ...]
    version: int
    admitted_at: float

    @property
    def score(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else 0.0


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    version: int
    instance_ids: tuple[str, ...]
    entries: tuple[PoolEntry, ...]
    best_id: str | None
    best_score: float
    front_ids: tuple[str, ...]


class Pool:
    """Admitted artifacts; mutated only by the pipeline's admit step."""

    def __init__(self, instance_ids: Sequence[str]) -> None:
        if not instance_ids:
            raise ValueError("the pool needs at least one validation instance")
        if len(set(instance_ids)) != len(instance_ids):
            raise ValueError("validation instance ids must be unique")
        self.instance_ids: tuple[str, ...] = tuple(instance_ids)
        self._entries: dict[str, PoolEntry] = {}
        self._order: list[str] = []
        self._version = 0
        # Per instance: the best score seen and the ids that reach it.
        self._best: list[float] = [float("-inf")] * len(self.instance_ids)
        self._fronts: list[set[str]] = [set() for _ in self.instance_ids]

    # ---- reading ---------------------------------------------------------
    @property
    def version(self) -> int:
        return self._version

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, artifact_id: object) -> bool:
        return artifact_id in self._entries

    def __iter__(self) -> Iterator[PoolEntry]:
        return (self._entries[i] for i in self._order)

    def entry(self, artifact_id: str) -> PoolEntry:
        try:
            return self._entries[artifact_id]
        except KeyError:
            raise KeyError(f"artifact {artifact_id!r} is not in the pool") from None

    def best(self) -> PoolEntry:
        """The entry with the highest mean score (earliest admitted wins ties)."""
        if not self._entries:
            raise LookupError("the pool is empty")
        return max(self, key=lambda e: e.score)

    def fronts(self) -> tuple[frozenset[str], ...]:
        """For each validation instance, the ids that reach its best score."""
        return tuple(frozenset(f) for f in self._fronts)

    def front_ids(self) -> tuple[str, ...]:
        """Every id on at least one instance front, in admission order."""
        on_front = set().union(*self._fronts)
        return tuple(i for i in self._order if i in on_front)

    def since(self, version: int) -> tuple[PoolEntry, ...]:
        """Entries admitted after ``version`` (what an item at that version missed)."""
        return tuple(e for e in self if e.version > version)

    def snapshot(self) -> PoolSnapshot:
        best = self.best() if self._entries else None
        return PoolSnapshot(
            version=self._version,
            instance_ids=self.instance_ids,
            entries=tuple(self),
            best_id=best.artifact.id if best else None,
            best_score=best.score if best else float("nan"),
            front_ids=self.front_ids(),
        )

    # ---- writing ---------------------------------------------------------
    def admit(self, artifact: Artifact, scores: Sequence[float], now: float) -> PoolEntry:
        """Add an artifact with one score per validation instance; bumps the version."""
        if artifact.id in self._entries:
            raise ValueError(f"artifact {artifact.id!r} is already in the pool")
        if len(scores) != len(self.instance_ids):
            raise ValueError(
                f"expected {len(self.instance_ids)} validation scores, got {len(scores)}"
            )
        self._version += 1
        entry = PoolEntry(artifact, tuple(float(s) for s in scores), self._version, now)
        self._entries[artifact.id] = entry
        self._order.append(artifact.id)
        for i, s in enumerate(entry.scores):
            if s > self._best[i]:
                self._best[i] = s
                self._fronts[i] = {artifact.id}
            elif s == self._best[i]:
                self._fronts[i].add(artifact.id)
        return entry

    def remove(self, artifact_id: str) -> PoolEntry:
        """Take an artifact out (a rolled-back speculative admission); bumps the version."""
        entry = self.entry(artifact_id)
        del self._entries[artifact_id]
        self._order.remove(artifact_id)
        self._version += 1
        self._recompute_fronts()
        return entry

    def _recompute_fronts(self) -> None:
        self._best = [float("-inf")] * len(self.instance_ids)
        self._fronts = [set() for _ in self.instance_ids]
        for e in self:
            for i, s in enumerate(e.scores):
                if s > self._best[i]:
                    self._best[i] = s
                    self._fronts[i] = {e.artifact.id}
                elif s == self._best[i]:
                    self._fronts[i].add(e.artifact.id)
