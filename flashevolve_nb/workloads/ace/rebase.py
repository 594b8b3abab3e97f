"""Rebasing a stale ACE delta onto the newest playbook, and the run's bullet ids.

Why rebase instead of accept: a stale ACE proposal is a child of an old
playbook. Accepted as it is, it competes with the newest playbook instead of
adding to it, and whatever was admitted meanwhile is missing from it.
Playbook deltas mostly commute, so the delta is re-applied to the current
best playbook instead (:func:`rebase`): its ``ADD``\\s get fresh ids, its
duplicates of bullets added meanwhile are skipped, its tags follow merges,
and what no longer applies is dropped, each counted. The result is anchored
to the current pool version and validated before admission.

:class:`BulletIds` is the run's one id counter (ids are allocated when a delta
is applied, never when it is proposed); :func:`moves` reads where merged
bullets went from the admitted artifacts' records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flashevolve_nb.engine.artifact import Artifact
from flashevolve_nb.workloads.ace.delta import Applied, Delta, apply_delta
from flashevolve_nb.workloads.ace.playbook import Playbook

__all__ = ["BulletIds", "RebaseCounts", "moves", "rebase"]


class BulletIds:
    """The run's bullet id counter: ``b-1``, ``b-2``... never reused.

    Alone, the counter lives in memory. A workload inside a pipeline draws the
    numbers from the run's own id counters instead (:meth:`draw_from`), which
    the run store keeps with everything it stores and a resumed run restores:
    an id that a stored playbook holds (one an earlier, killed process made,
    admitted or not) is then never handed out again.
    """

    MAX_SKIP = 1_000_000
    """Draws at most spent to get past the ids a seed or a person's edit holds; beyond
    (ids numbered absurdly high), numbers come from the in-memory counter."""

    def __init__(self, start: int = 1) -> None:
        self._next = start
        self._draw: Callable[[], int] | None = None

    def draw_from(self, draw: Callable[[], int]) -> None:
        """Take numbers from ``draw``: increasing, each once (a durable counter)."""
        self._draw = draw

    def allocate(self) -> str:
        n = self._next
        if self._draw is not None:
            drawn = self._draw()
            for _ in range(self.MAX_SKIP):
                if drawn >= self._next:
                    n = drawn
                    break
                drawn = self._draw()
        self._next = n + 1
        return f"b-{n}"

    def observe(self, playbook: Playbook) -> None:
        """Never hand out an id ``playbook`` already uses (a seed, a resumed run)."""
        self._next = max(self._next, playbook.max_number() + 1)

    @property
    def next_number(self) -> int:
        return self._next


@dataclass(frozen=True, slots=True)
class RebaseCounts:
    """What rebasing did over a run: the numbers the ACE benchmark compares."""

    rebased: int = 0
    emptied: int = 0
    """Rebases that left nothing to apply (the step ended)."""
    duplicates: int = 0
    tags_remapped: int = 0
    tags_dropped: int = 0
    operations_dropped: int = 0

    def plus(self, applied: Applied) -> RebaseCounts:
        return RebaseCounts(
            self.rebased + int(applied.changed_bullets),
            self.emptied + int(not applied.changed_bullets),
            self.duplicates + applied.duplicates,
            self.tags_remapped + applied.tags_remapped,
            self.tags_dropped + applied.tags_dropped,
            self.operations_dropped + applied.operations_dropped,
        )


def moves(artifacts: Iterable[Artifact]) -> dict[str, list[str]]:
    """Bullet id -> the ids it was merged into, from the ``meta["ace"]`` records."""
    out: dict[str, list[str]] = {}
    for artifact in artifacts:
        record = artifact.meta.get("ace")
        merged: Any = record.get("merged", {}) if isinstance(record, Mapping) else {}
        if not isinstance(merged, Mapping):
            continue
        for old, new in merged.items():
            if isinstance(old, str) and isinstance(new, str) and new not in out.get(old, []):
                out.setdefault(old, []).append(new)
    return out


def rebase(delta: Delta, onto: Playbook, ids: BulletIds, moved: Mapping[str, list[str]]) -> Applied:
    """``delta`` applied to ``onto`` (the newest playbook): see :func:`apply_delta`.

    ``onto`` may hold ids the counter never handed out (a person's edit): the
    counter moves past them first.
    """
    ids.observe(onto)
    return apply_delta(onto, delta, ids.allocate, moved)
