"""Playbook deltas and how one is applied: ids at apply time, remapped tags, duplicates.

A :class:`Delta` is what one ACE step proposes: the Reflector's tags on the
bullets the Generator cited, and the Curator's operations (``ADD``,
``UPDATE``, ``MERGE``, ``DELETE``). A delta names no id for a bullet it
creates: ids come from the run's counter when the delta is *applied*, so two
deltas proposed at once from the same playbook can never claim the same id,
and a delta can be applied to a playbook other than the one it was proposed
from (a *rebase*, see :mod:`flashevolve_nb.workloads.ace.rebase`).

Applying a delta to a playbook that moved on since the delta's proposal is
where asynchrony shows, and :func:`apply_delta` makes each case explicit and
counts it in :class:`Applied`:

- a **tag** naming a bullet merged meanwhile is moved to the bullet it was
  merged into (``tags_remapped``); one naming a deleted bullet is dropped
  (``tags_dropped``);
- an ``ADD`` (or ``UPDATE``) whose text another bullet already says (normalised
  text, see :func:`~flashevolve_nb.workloads.ace.playbook.normalise`) is a
  duplicate of what was added meanwhile and is skipped (``duplicates``);
- a ``MERGE`` follows merged ids like tags do, merges whatever of its
  bullets is left, and takes in a bullet that already says the merged text;
  ``UPDATE`` and ``DELETE`` name one exact bullet and are
  dropped when it is gone (``operations_dropped``): rewriting or deleting the
  bullet it was merged into would destroy advice the operation never saw.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from flashevolve_nb.workloads.ace.playbook import Bullet, Playbook, normalise

__all__ = [
    "Add",
    "Applied",
    "Delete",
    "Delta",
    "Merge",
    "Operation",
    "Tag",
    "Update",
    "apply_delta",
    "resolve",
]


@dataclass(frozen=True, slots=True)
class Add:
    section: str
    content: str


@dataclass(frozen=True, slots=True)
class Update:
    bullet_id: str
    content: str


@dataclass(frozen=True, slots=True)
class Merge:
    bullet_ids: tuple[str, ...]
    content: str


@dataclass(frozen=True, slots=True)
class Delete:
    bullet_id: str


Operation = Add | Update | Merge | Delete


@dataclass(frozen=True, slots=True)
class Tag:
    bullet_id: str
    verdict: Literal["helpful", "harmful"]


@dataclass(frozen=True, slots=True)
class Delta:
    """One step's proposed change, free of ids for the bullets it creates."""

    operations: tuple[Operation, ...] = ()
    tags: tuple[Tag, ...] = ()

    def describe(self) -> str:
        """One line per operation, for events and the dashboard."""
        lines = []
        for op in self.operations:
            if isinstance(op, Add):
                lines.append(f"ADD [{op.section}] {op.content}")
            elif isinstance(op, Update):
                lines.append(f"UPDATE {op.bullet_id}: {op.content}")
            elif isinstance(op, Merge):
                lines.append(f"MERGE {', '.join(op.bullet_ids)}: {op.content}")
            else:
                lines.append(f"DELETE {op.bullet_id}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Applied:
    """A delta applied to a playbook, with an account of everything that did not fit."""

    playbook: Playbook
    added: tuple[str, ...] = ()
    """Ids allocated for new bullets (ADD and MERGE results)."""
    merged: Mapping[str, str] = field(default_factory=dict)
    """Bullet id -> the id of the bullet it was merged into."""
    deleted: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    tags_applied: int = 0
    tags_remapped: int = 0
    tags_dropped: int = 0
    duplicates: int = 0
    operations_dropped: int = 0
    notes: tuple[str, ...] = ()
    """Why each operation or tag was remapped, skipped or dropped."""

    @property
    def changed_bullets(self) -> bool:
        """Whether an operation took effect (tags alone only move counters)."""
        return bool(self.added or self.merged or self.deleted or self.updated)

    def summary(self) -> str:
        parts = [
            f"{len(self.added)} added",
            f"{len(self.updated)} updated",
            f"{len(self.merged)} merged",
            f"{len(self.deleted)} deleted",
            f"{self.duplicates} duplicate(s) skipped",
            f"{self.operations_dropped} operation(s) dropped",
            f"tags: {self.tags_applied} applied, {self.tags_remapped} remapped, "
            f"{self.tags_dropped} dropped",
        ]
        return "; ".join(parts)

    def record(self) -> dict[str, object]:
        """What to keep on the artifact (``meta["ace"]``): plain JSON values."""
        return {
            "added": list(self.added),
            "merged": dict(self.merged),
            "deleted": list(self.deleted),
            "updated": list(self.updated),
            "tags_applied": self.tags_applied,
            "tags_remapped": self.tags_remapped,
            "tags_dropped": self.tags_dropped,
            "duplicates": self.duplicates,
            "operations_dropped": self.operations_dropped,
            "notes": list(self.notes),
        }


def resolve(bullet_id: str, playbook: Playbook, moved: Mapping[str, Sequence[str]]) -> str | None:
    """Where ``bullet_id`` lives in ``playbook`` now: itself, the bullet it was merged
    into (following merges of merges), or None when it is gone.

    ``moved`` maps an id to every id it was merged into anywhere in the run; two
    branches may have merged it differently, so the first one present wins.
    """
    seen = set()
    frontier = [bullet_id]
    while frontier:
        current = frontier.pop(0)
        if current in playbook:
            return current
        if current in seen:
            continue
        seen.add(current)
        frontier.extend(moved.get(current, ()))
    return None


def apply_delta(
    playbook: Playbook,
    delta: Delta,
    allocate: Callable[[], str],
    moved: Mapping[str, Sequence[str]] | None = None,
) -> Applied:
    """``delta`` applied to ``playbook``: tags first (they judge the bullets the
    answer used), then the operations in order. ``allocate`` gives each new
    bullet its id; ``moved`` says where merged ids went (see :func:`resolve`)."""
    history: dict[str, list[str]] = {k: list(v) for k, v in (moved or {}).items()}
    notes: list[str] = []
    pb = playbook
    applied = remapped = dropped = 0
    for tag in delta.tags:
        target = resolve(tag.bullet_id, pb, history)
        if target is None:
            dropped += 1
            notes.append(f"tag {tag.verdict} on {tag.bullet_id} dropped: the bullet is gone")
            continue
        if target != tag.bullet_id:
            remapped += 1
            notes.append(f"tag {tag.verdict} on {tag.bullet_id} moved to {target} (merged)")
        else:
            applied += 1
        pb = pb.tagged(target, **{tag.verdict: 1})

    bullets = list(pb.bullets)
    sections = list(pb.sections)
    added: list[str] = []
    updated: list[str] = []
    deleted: list[str] = []
    merged: dict[str, str] = {}
    duplicates = ops_dropped = 0

    def current() -> Playbook:
        return Playbook(tuple(sections), tuple(bullets))

    for op in delta.operations:
        now = current()
        if isinstance(op, Add):
            same = now.same_as(op.content)
            if same is not None:
                duplicates += 1
                notes.append(f"ADD skipped: {same.id} already says {op.content!r}")
                continue
            new_id = allocate()
            bullets.append(Bullet(new_id, op.section, op.content))
            if op.section not in sections:
                sections.append(op.section)
            added.append(new_id)
        elif isinstance(op, Update):
            old = now.get(op.bullet_id)
            if old is None:
                ops_dropped += 1
                notes.append(f"UPDATE {op.bullet_id} dropped: the bullet is gone")
                continue
            if normalise(old.content) == normalise(op.content):
                notes.append(f"UPDATE {op.bullet_id}: no change")
                continue
            same = now.same_as(op.content, ignore=(op.bullet_id,))
            if same is not None:
                duplicates += 1
                notes.append(f"UPDATE {op.bullet_id} skipped: {same.id} already says it")
                continue
            bullets = [replace(b, content=op.content) if b.id == old.id else b for b in bullets]
            updated.append(old.id)
        elif isinstance(op, Merge):
            targets: list[str] = []
            for bid in op.bullet_ids:
                where = resolve(bid, now, history)
                if where is None:
                    notes.append(f"MERGE: {bid} is gone, merged without it")
                elif where not in targets:
                    if where != bid:
                        notes.append(f"MERGE: {bid} now lives in {where}")
                    targets.append(where)
            if not targets:
                ops_dropped += 1
                notes.append(f"MERGE {', '.join(op.bullet_ids)} dropped: no bullet is left")
                continue
            same = now.same_as(op.content, ignore=targets)
            if same is not None:
                # A bullet added meanwhile says what the merge says: it joins the merge.
                duplicates += 1
                notes.append(f"MERGE: {same.id} already says the merged text, merged in too")
                targets.append(same.id)
            parts = [b for b in bullets if b.id in targets]
            first = parts[0]
            new_id = allocate()
            combined = Bullet(
                new_id,
                first.section,
                op.content,
                sum(b.helpful for b in parts),
                sum(b.harmful for b in parts),
            )
            # The merged bullet takes the place of the first of its parts.
            at = next(i for i, b in enumerate(bullets) if b.id == first.id)
            kept_before = sum(1 for b in bullets[:at] if b.id not in targets)
            bullets = [b for b in bullets if b.id not in targets]
            bullets.insert(kept_before, combined)
            for bid in targets:
                merged[bid] = new_id
                history.setdefault(bid, []).append(new_id)
            added.append(new_id)
        else:
            if op.bullet_id not in now:
                ops_dropped += 1
                notes.append(f"DELETE {op.bullet_id} dropped: the bullet is already gone")
                continue
            bullets = [b for b in bullets if b.id != op.bullet_id]
            deleted.append(op.bullet_id)
    return Applied(
        playbook=current(),
        added=tuple(added),
        merged=merged,
        deleted=tuple(deleted),
        updated=tuple(updated),
        tags_applied=applied,
        tags_remapped=remapped,
        tags_dropped=dropped,
        duplicates=duplicates,
        operations_dropped=ops_dropped,
        notes=tuple(notes),
    )
