"""API keys as values that never print themselves.

A key travels from the environment or a config file to the HTTP client and
nowhere else. ``Secret`` makes that the default: its ``repr``, ``str`` and
``format`` are redacted, so a key inside a config dataclass, an event, a log
line or a notebook cell's output shows as ``Secret('***')``; it refuses to be
pickled, so it cannot slip into a run store; only :meth:`Secret.reveal` gives
the value, and only the code that builds the client calls it.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Secret", "redact_url"]

_MASK = "***"


class Secret:
    """A string that says ``***`` wherever it is shown."""

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError(f"a Secret wraps a str (got {type(value).__name__})")
        self._value = value

    @classmethod
    def from_env(cls, name: str, env: Mapping[str, str] | None = None) -> Secret | None:
        """The variable ``name`` as a Secret, or None when it is unset or empty."""
        value = (os.environ if env is None else env).get(name, "")
        return cls(value) if value else None

    def reveal(self) -> str:
        """The value itself: for the code that hands it to an HTTP client, nothing else."""
        return self._value

    def scrub(self, text: str) -> str:
        """``text`` with every occurrence of the value replaced by ``***``."""
        return text.replace(self._value, _MASK) if self._value else text

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: object) -> Secret:
        # Immutable: copies (e.g. by ``dataclasses.asdict``) may share it.
        return self

    def __reduce__(self) -> NoReturn:
        # Pickles end up in run stores, caches and worker processes: refuse.
        raise TypeError(
            "a Secret is not pickled, so it cannot leak into a file; pass the name of "
            "the environment variable that holds it instead"
        )


def redact_url(url: str) -> str:
    """``url`` without any ``user:password@`` part, for showing which server was used."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
