"""Events, artifacts and configurations to JSON and back.

Events are frozen dataclasses whose fields are plain values, tuples and, for
a few, artifacts. An artifact inside an event is stored once, in the
``artifacts`` table, and the event keeps a reference ``{"$artifact": id}``.
Anything else a newer event might carry is written as its ``repr``: a run is
never lost because one field would not serialise.

Configurations go through :func:`describe` before they are stored: secrets
(``Secret`` values, fields named like keys or passwords, credentials in
URLs) become ``"***"``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Any, ClassVar

from flashevolve_nb.engine.artifact import Artifact
from flashevolve_nb.engine.events import Event  # defines, and so registers, every event class

__all__ = [
    "StoredEvent",
    "artifact_from_row",
    "artifact_row",
    "decode_event",
    "decode_scores",
    "describe",
    "encode_event",
    "encode_scores",
    "event_classes",
]

_ARTIFACT = "$artifact"
_SECRET_NAME = re.compile(
    r"(api[-_]?key|secret|password|passwd|token|auth|credential|cookie|signature)", re.I
)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]*@", re.I)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent(Event):
    """An event of a kind this package does not know (written by a newer version)."""

    kind: ClassVar[str] = "stored"
    stored_kind: str
    data: Mapping[str, Any]

    def to_row(self) -> dict[str, Any]:
        return {"kind": self.stored_kind, "t": self.t, **self.data}


def event_classes() -> dict[str, type[Event]]:
    """Every known event class by its ``kind``."""
    found: dict[str, type[Event]] = {}
    todo: list[type[Event]] = [Event]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls is not Event and cls is not StoredEvent:
            found.setdefault(cls.kind, cls)
    return found


def encode_event(event: Event, keep_artifact: Callable[[Artifact], None]) -> str:
    """The event's fields but ``kind`` and ``t`` as JSON; artifacts go to ``keep_artifact``."""

    def plain(value: Any) -> Any:
        if isinstance(value, str | int | bool) or value is None:
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else repr(value)
        if isinstance(value, Artifact):
            keep_artifact(value)
            return {_ARTIFACT: value.id}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, Enum):
            return plain(value.value)
        return repr(value)

    data = {
        f.name: plain(getattr(event, f.name)) for f in dataclasses.fields(event) if f.name != "t"
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def decode_event(
    kind: str,
    t: float,
    data: str,
    artifacts: Mapping[str, Artifact],
    classes: Mapping[str, type[Event]],
) -> Event:
    """The event back as its own class; a :class:`StoredEvent` when that cannot be done."""
    raw: dict[str, Any] = json.loads(data)

    def value(v: Any, float_field: bool) -> Any:
        if isinstance(v, list):
            return tuple(value(x, False) for x in v)
        if isinstance(v, dict):
            if set(v) == {_ARTIFACT}:
                return artifacts.get(v[_ARTIFACT], v[_ARTIFACT])
            return {k: value(x, False) for k, x in v.items()}
        if float_field and isinstance(v, str) and v in _FLOATS:
            return _FLOATS[v]
        return v

    cls = classes.get(kind)
    if cls is not None:
        kwargs: dict[str, Any] = {"t": t}
        for f in dataclasses.fields(cls):
            if f.name in raw:
                kwargs[f.name] = value(raw[f.name], "float" in str(f.type))
        try:
            return cls(**kwargs)
        except TypeError:
            pass  # a field this version requires is missing: keep the raw data
    return StoredEvent(t=t, stored_kind=kind, data={k: value(v, True) for k, v in raw.items()})


def encode_scores(scores: Sequence[float], objectives: Mapping[str, float]) -> str:
    """A pool entry's scores for ``pool_log.scores``: a JSON list as ever, or, for an
    entry with objective values, ``{"scores": [...], "objectives": {...}}``."""
    if not objectives:
        return json.dumps(list(scores))
    return json.dumps({"scores": list(scores), "objectives": dict(objectives)})


def decode_scores(text: str | None) -> tuple[tuple[float, ...], dict[str, float]]:
    """Scores and objective values from :func:`encode_scores` (a store written before
    objectives existed holds plain lists: no objectives; a removal holds NULL)."""
    if text is None:
        return (), {}
    value = json.loads(text)
    if isinstance(value, dict):
        objectives = {str(k): float(v) for k, v in dict(value.get("objectives", {})).items()}
        return tuple(float(s) for s in value.get("scores", ())), objectives
    return tuple(float(s) for s in value), {}


def artifact_row(a: Artifact) -> tuple[str, str, str, str, int, float, str, str]:
    return (
        a.id,
        json.dumps(dict(a.components), ensure_ascii=False),
        json.dumps(list(a.parents)),
        a.origin.value,
        a.base_version,
        a.created_at,
        a.note,
        json.dumps(describe(dict(a.meta)), ensure_ascii=False),
    )


def artifact_from_row(row: tuple[Any, ...]) -> Artifact:
    aid, components, parents, origin, base_version, created_at, note, meta = row
    return Artifact(
        id=aid,
        components=json.loads(components),
        parents=tuple(json.loads(parents)),
        origin=origin,
        base_version=int(base_version),
        created_at=float(created_at),
        note=note,
        meta=json.loads(meta),
    )


def describe(value: Any, name: str = "") -> Any:
    """``value`` as JSON-ready data with every secret replaced by ``"***"``."""
    if hasattr(value, "reveal"):  # llm.secret.Secret, or anything shaped like it
        return "***"
    if isinstance(value, str):
        if name and _SECRET_NAME.search(name) and value:
            return "***"
        return _URL_CREDENTIALS.sub(r"\g<scheme>***@", value)
    if isinstance(value, bool | int) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Enum):
        return describe(value.value, name)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: describe(getattr(value, f.name), f.name)
            for f in dataclasses.fields(value)
            if not f.name.startswith("_")
        }
    if isinstance(value, Mapping):
        return {str(k): describe(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [describe(v, name) for v in value]
    name_attr = getattr(value, "name", None)
    label = f"{type(value).__name__}({name_attr!r})" if isinstance(name_attr, str) else ""
    # Objects (backends, policies...) are named, never dumped: their fields may hold keys.
    return label or f"<{type(value).__name__}>"
