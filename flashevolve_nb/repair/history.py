"""What a stale item missed, as diffs a reader (human or LLM) can follow.

Each artifact admitted since the item's base version is shown as the change it
made to its first parent, component by component; an artifact whose parent is
not in the pool (or a seed) is shown whole.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from flashevolve_nb.engine.artifact import Artifact
from flashevolve_nb.engine.pool import Pool

__all__ = ["HistoryEntry", "component_diff", "history_of"]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    artifact_id: str
    version: int
    score: float
    parent_id: str | None
    diffs: Mapping[str, str]
    """Component name -> unified diff against the parent (or the whole text, if no parent)."""


def component_diff(before: str, after: str, name: str) -> str:
    """A unified diff of one component, line by line; empty when nothing changed."""
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), f"{name} (before)", f"{name} (after)", lineterm=""
    )
    return "\n".join(lines)


def _diffs(artifact: Artifact, parent: Artifact | None) -> dict[str, str]:
    if parent is None:
        return {name: text for name, text in artifact.items()}
    out: dict[str, str] = {}
    for name, text in artifact.items():
        d = component_diff(parent.get(name, ""), text, name)
        if d:
            out[name] = d
    return out


def history_of(pool: Pool, base_version: int) -> Sequence[HistoryEntry]:
    """The admissions after ``base_version``, oldest first, each as its diff."""
    out = []
    for entry in pool.since(base_version):
        art = entry.artifact
        parent_id = art.parents[0] if art.parents else None
        parent = pool.entry(parent_id).artifact if parent_id and parent_id in pool else None
        out.append(HistoryEntry(art.id, entry.version, entry.score, parent_id, _diffs(art, parent)))
    return tuple(out)
