"""Identical candidates are validated once.

Reflection often proposes the same text again (from the same parent, or from
two parents that converged), and with many steps in flight several copies can
pass their gates at once. A validation is the dearest stage of a step and an
identical text can only score the same, so before validating, a workload asks
:class:`Duplicates` whether the text is already in the pool or being (or done
being) validated by another step; if it is, the step ends with an outcome that
starts with ``duplicate:`` (counted as ``RunStats.duplicates``).

A text whose validation raised is free again: a flaky evaluation must not
bar a good text for the rest of the run.
"""

from __future__ import annotations

from collections.abc import Mapping

from flashevolve_nb.engine.artifact import Artifact
from flashevolve_nb.engine.pool import Pool

__all__ = ["DUPLICATE", "Duplicates"]

DUPLICATE = "duplicate"
"""How the outcome of a step ended as a duplicate begins."""

_Key = tuple[tuple[str, str], ...]


def _key(components: Mapping[str, str]) -> _Key:
    return tuple(sorted(components.items()))


class Duplicates:
    """The texts validated so far in a run, by who validated them."""

    def __init__(self) -> None:
        self._claims: dict[_Key, str] = {}
        self._keys: dict[str, _Key] = {}

    def claim(self, pool: Pool, artifact: Artifact) -> str:
        """``''`` and the text is ``artifact``'s to validate, or why it is a duplicate."""
        key = self._key_of(artifact)
        for entry in pool:
            other = entry.artifact
            if other.id != artifact.id and self._key_of(other) == key:
                return f"{DUPLICATE}: same text as {other.id}, already in the pool"
        holder = self._claims.get(key)
        if holder is not None and holder != artifact.id:
            return f"{DUPLICATE}: same text as {holder}, validated by another step"
        self._claims[key] = artifact.id
        return ""

    def release(self, artifact: Artifact) -> None:
        """Free ``artifact``'s text again (its validation did not finish)."""
        key = self._key_of(artifact)
        if self._claims.get(key) == artifact.id:
            del self._claims[key]

    def _key_of(self, artifact: Artifact) -> _Key:
        key = self._keys.get(artifact.id)
        if key is None:
            key = self._keys[artifact.id] = _key(artifact.components)
        return key
