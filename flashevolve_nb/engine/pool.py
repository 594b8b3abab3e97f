"""The pool: admitted artifacts, their per-instance scores, the Pareto fronts.

``version`` goes up by one on every admission (and on every removal, which
speculative admission will need), so ``pool.version - item.base_version`` is
exactly how many pool changes an item has not seen: its staleness.

Scores are kept per validation instance because GEPA's parent selection
works on per-instance fronts: an artifact that is the best on even one
instance stays a candidate parent, which keeps diverse strategies alive.

A pool may also declare *objectives* beyond the scores (Meta-Harness: the
context tokens a harness shows the model, lower is better). Entries then
carry a value for each, and the pool keeps a second kind of front, the
:meth:`Pool.objective_front`: the entries no other entry dominates on mean
score and every objective together. A pool that declares none behaves
exactly as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from flashevolve_nb.engine.artifact import Artifact

__all__ = ["Direction", "Pool", "PoolChange", "PoolEntry", "PoolListener", "PoolSnapshot"]

Direction = Literal["max", "min"]
"""Whether more (``max``) or less (``min``) of an objective is better."""


@dataclass(frozen=True, slots=True)
class PoolEntry:
    artifact: Artifact
    scores: tuple[float, ...]
    version: int
    admitted_at: float
    speculative: bool = False
    """Admitted on a validation prefix: ``scores`` are provisional until confirmed."""
    objectives: Mapping[str, float] = field(default_factory=dict)
    """Values of the pool's extra objectives (``{"context_tokens": 812.0}``); empty
    for a pool that declares none."""

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


PoolChange = Literal["admit", "remove", "confirm"]
PoolListener = Callable[[PoolChange, PoolEntry], None]
"""Called synchronously after every change, before anyone reports it (see ``Pool.listeners``)."""


class Pool:
    """Admitted artifacts; mutated only by the pipeline's admit step."""

    def __init__(
        self, instance_ids: Sequence[str], objectives: Mapping[str, Direction] | None = None
    ) -> None:
        """``objectives``: extra objectives every admission gives a value for, each with
        its direction (see the module docstring)."""
        if not instance_ids:
            raise ValueError("the pool needs at least one validation instance")
        if len(set(instance_ids)) != len(instance_ids):
            raise ValueError("validation instance ids must be unique")
        self.instance_ids: tuple[str, ...] = tuple(instance_ids)
        self.objectives: dict[str, Direction] = dict(objectives or {})
        for name, direction in self.objectives.items():
            if direction not in ("max", "min"):
                raise ValueError(f"objective {name!r}: direction must be 'max' or 'min'")
        self._entries: dict[str, PoolEntry] = {}
        self._order: list[str] = []
        self._version = 0
        # Per instance: the best score seen and the ids that reach it.
        self._best: list[float] = [float("-inf")] * len(self.instance_ids)
        self._fronts: list[set[str]] = [set() for _ in self.instance_ids]
        self.listeners: list[PoolListener] = []
        """Told of every admission, removal and confirmation right after it happens and
        before any event reports it, whichever code path made it: the run store makes the
        change durable here. A listener that raises makes the change unreported (the
        exception reaches whoever changed the pool)."""

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

    def objective_front(self) -> frozenset[str]:
        """Ids that no other entry dominates on mean score and the declared objectives
        together (empty when the pool declares none). An entry dominates another when it
        is at least as good on all of them and better on one."""
        if not self.objectives:
            return frozenset()
        points = [(e.artifact.id, self._point(e)) for e in self]
        points = [(i, p) for i, p in points if not any(math.isnan(x) for x in p)]
        return frozenset(
            i for i, p in points if not any(_dominates(q, p) for j, q in points if j != i)
        )

    def front_ids(self) -> tuple[str, ...]:
        """Every id on at least one instance front or on the objective front, in
        admission order."""
        on_front = set().union(*self._fronts) | self.objective_front()
        return tuple(i for i in self._order if i in on_front)

    def _point(self, entry: PoolEntry) -> tuple[float, ...]:
        """The entry as a point where larger is better on every axis."""
        values = [entry.score]
        for name, direction in self.objectives.items():
            v = entry.objectives.get(name, math.nan)
            values.append(-v if direction == "min" else v)
        return tuple(values)

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
    def admit(
        self,
        artifact: Artifact,
        scores: Sequence[float],
        now: float,
        *,
        speculative: bool = False,
        objectives: Mapping[str, float] | None = None,
    ) -> PoolEntry:
        """Add an artifact with one score per validation instance; bumps the version.

        ``speculative``: the scores are provisional (see :meth:`confirm`).
        ``objectives``: a value for each objective the pool declares. An entry without
        them (a speculative admission made before they were measured) is on no
        objective front and dominates nothing there.
        """
        if artifact.id in self._entries:
            raise ValueError(f"artifact {artifact.id!r} is already in the pool")
        if len(scores) != len(self.instance_ids):
            raise ValueError(
                f"expected {len(self.instance_ids)} validation scores, got {len(scores)}"
            )
        values = self._objective_values(objectives or {})
        self._version += 1
        entry = PoolEntry(
            artifact, tuple(float(s) for s in scores), self._version, now, speculative, values
        )
        self._entries[artifact.id] = entry
        self._order.append(artifact.id)
        for i, s in enumerate(entry.scores):
            if s > self._best[i]:
                self._best[i] = s
                self._fronts[i] = {artifact.id}
            elif s == self._best[i]:
                self._fronts[i].add(artifact.id)
        self._tell("admit", entry)
        return entry

    def remove(self, artifact_id: str) -> PoolEntry:
        """Take an artifact out (a rolled-back speculative admission); bumps the version."""
        entry = self.entry(artifact_id)
        del self._entries[artifact_id]
        self._order.remove(artifact_id)
        self._version += 1
        self._recompute_fronts()
        self._tell("remove", entry)
        return entry

    def confirm(self, artifact_id: str, scores: Sequence[float]) -> PoolEntry:
        """Replace a speculative entry's provisional scores by its full ones.

        The version stays: nothing was added or taken away, so work derived from
        the entry is exactly as fresh as it was.
        """
        old = self.entry(artifact_id)
        if not old.speculative:
            raise ValueError(f"artifact {artifact_id!r} is not a speculative admission")
        if len(scores) != len(self.instance_ids):
            raise ValueError(
                f"expected {len(self.instance_ids)} validation scores, got {len(scores)}"
            )
        entry = PoolEntry(
            old.artifact,
            tuple(float(s) for s in scores),
            old.version,
            old.admitted_at,
            objectives=old.objectives,
        )
        self._entries[artifact_id] = entry
        self._recompute_fronts()
        self._tell("confirm", entry)
        return entry

    def restore(self, entries: Sequence[PoolEntry], version: int) -> None:
        """Load a stored pool into this empty one (resuming a run); listeners are not told.

        ``entries`` keep their own versions; ``version`` is the pool's, which removals
        may have taken past the newest entry's.
        """
        if self._entries or self._version:
            raise RuntimeError("only an empty, unused pool can be restored into")
        for e in entries:
            if len(e.scores) != len(self.instance_ids):
                raise ValueError(
                    f"stored entry {e.artifact.id!r} has {len(e.scores)} scores; this pool "
                    f"validates on {len(self.instance_ids)} instances"
                )
        ordered = sorted(entries, key=lambda e: e.version)
        if ordered and ordered[-1].version > version:
            raise ValueError(f"entry version {ordered[-1].version} is past pool version {version}")
        self._entries = {e.artifact.id: e for e in ordered}
        if len(self._entries) != len(ordered):
            raise ValueError("stored entries repeat an artifact id")
        self._order = [e.artifact.id for e in ordered]
        self._version = version
        self._recompute_fronts()

    def _objective_values(self, objectives: Mapping[str, float]) -> dict[str, float]:
        unknown = set(objectives) - set(self.objectives)
        if unknown:
            raise ValueError(
                f"objective(s) {sorted(unknown)} are not declared by this pool "
                f"(it declares {sorted(self.objectives) or 'none'})"
            )
        values = {name: float(v) for name, v in objectives.items()}
        bad = {name: v for name, v in values.items() if not math.isfinite(v)}
        if bad:
            raise ValueError(f"objective values must be finite numbers (got {bad})")
        return values

    def _tell(self, change: PoolChange, entry: PoolEntry) -> None:
        for listener in tuple(self.listeners):
            listener(change, entry)

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


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """``a`` at least as good as ``b`` everywhere and better somewhere."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and a != b
