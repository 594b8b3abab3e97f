"""Artifacts: the immutable text things that evolve.

An artifact is a set of named text components (a system prompt, a playbook,
a harness file...). Editing never mutates one: it makes a new artifact whose
parent is the old one, so lineage is always a faithful record of what was
derived from what.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

__all__ = ["Artifact", "Origin"]


class Origin(StrEnum):
    """How an artifact came to be."""

    SEED = "seed"
    PROPOSAL = "proposal"
    REPAIR = "repair"
    MERGE = "merge"
    HUMAN = "human"


@dataclass(frozen=True, eq=False)
class Artifact(Mapping[str, str]):
    """Named text components with an id, lineage and origin.

    It reads as a read-only mapping of component name to text, which is the
    shape ``gepa`` calls a candidate. Two artifacts are equal when they are the
    same artifact (same id), not when their texts match: the same text proposed
    twice is two proposals.
    """

    id: str
    components: Mapping[str, str]
    parents: tuple[str, ...] = ()
    origin: Origin = Origin.SEED
    base_version: int = 0
    created_at: float = 0.0
    note: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.components:
            raise ValueError("an artifact needs at least one component")
        for name, text in self.components.items():
            if not isinstance(name, str) or not isinstance(text, str):
                raise TypeError(
                    f"artifact components map str to str; got {name!r}: {type(text).__name__}"
                )
        object.__setattr__(self, "components", MappingProxyType(dict(self.components)))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))
        object.__setattr__(self, "origin", Origin(self.origin))
        object.__setattr__(self, "parents", tuple(self.parents))

    def __getitem__(self, key: str) -> str:
        return self.components[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.components)

    def __len__(self) -> int:
        return len(self.components)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Artifact) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        names = ", ".join(self.components)
        return (
            f"Artifact(id={self.id!r}, origin={self.origin.value}, parents={self.parents!r}, "
            f"base_version={self.base_version}, components=[{names}])"
        )

    def derive(
        self,
        new_id: str,
        changes: Mapping[str, str],
        *,
        origin: Origin,
        base_version: int,
        created_at: float,
        extra_parents: tuple[str, ...] = (),
        note: str = "",
        meta: Mapping[str, Any] | None = None,
    ) -> Artifact:
        """A child with some components replaced; this artifact is its first parent."""
        unknown = set(changes) - set(self.components)
        if unknown:
            raise KeyError(
                f"unknown component(s) {sorted(unknown)}; this artifact has {list(self.components)}"
            )
        return Artifact(
            id=new_id,
            components={**self.components, **changes},
            parents=(self.id, *extra_parents),
            origin=origin,
            base_version=base_version,
            created_at=created_at,
            note=note,
            meta=meta or {},
        )
