"""Datasets the way ``gepa`` takes them: plain lists or data loaders addressed by id.

A ``gepa`` data loader has ``all_ids()``, ``fetch(ids)`` and ``len()``; a list
is a loader whose ids are positions. Our pool keys validation scores by
string, so every id also gets a string key, and ids whose strings collide are
refused (their scores would be mixed up). A run reads each loader's ids once,
when it starts: a loader that grows later is not followed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["IdSpace", "ListLoader", "Loader", "as_loader"]


@runtime_checkable
class Loader(Protocol):
    """The shape of ``gepa.core.data_loader.DataLoader``."""

    def all_ids(self) -> Sequence[Any]: ...

    def fetch(self, ids: Sequence[Any]) -> list[Any]: ...

    def __len__(self) -> int: ...


class ListLoader:
    """A list as a loader: ids are positions (as in ``gepa``'s ``ListDataLoader``)."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = list(items)

    def all_ids(self) -> list[int]:
        return list(range(len(self.items)))

    def fetch(self, ids: Sequence[Any]) -> list[Any]:
        return [self.items[i] for i in ids]

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"ListLoader({len(self.items)} items)"


def as_loader(data: object, what: str) -> Loader:
    """``data`` as a loader: a ``gepa`` loader as it is, a sequence as a :class:`ListLoader`."""
    if isinstance(data, Loader):
        return data
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        return ListLoader(data)
    raise TypeError(
        f"{what} must be a list of examples or a gepa data loader (all_ids, fetch, len); "
        f"got {type(data).__name__}"
    )


@dataclass(frozen=True)
class IdSpace:
    """A loader's ids, read once, each with the string key the pool uses."""

    loader: Loader
    ids: tuple[Any, ...]
    keys: tuple[str, ...]
    by_key: Mapping[str, Any]

    @classmethod
    def of(cls, loader: Loader, what: str) -> IdSpace:
        ids = tuple(loader.all_ids())
        if not ids:
            raise ValueError(f"{what} is empty; GEPA needs at least one example in it")
        keys = tuple(str(i) for i in ids)
        dups = [k for k, n in Counter(keys).items() if n > 1]
        if dups:
            dup = dups[0]
            raise ValueError(
                f"{what} has ids that read the same as text ({dup!r}); give the loader ids "
                "that stay distinct when converted with str()"
            )
        return cls(loader, ids, keys, dict(zip(keys, ids, strict=True)))

    def __len__(self) -> int:
        return len(self.ids)

    def fetch(self, keys: Sequence[str]) -> list[Any]:
        """The examples under ``keys``, in order."""
        return list(self.loader.fetch([self.by_key[k] for k in keys]))

    def data_ids(self, keys: Sequence[str]) -> list[Any]:
        return [self.by_key[k] for k in keys]
