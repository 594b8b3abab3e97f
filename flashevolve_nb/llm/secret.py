"""API keys as values that never print themselves.

A key travels from the environment or a config file to the HTTP client and
nowhere else. ``Secret`` makes that the default: its ``repr``, ``str`` and
``format`` are redacted, so a key inside a config dataclass, an event, a log
line or a notebook cell's output shows as ``Secret('***')``; it refuses to be
pickled, so it cannot slip into a run store; only :meth:`Secret.reveal` gives
the value, and only the code that builds the client calls it.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
from collections.abc import Iterable, Mapping
from typing import NoReturn
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["Secret", "credentials_of", "is_credential_header", "redact_url", "scrub_all"]

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


_CREDENTIAL_HEADER = re.compile(
    r"(authorization|api[-_]?key|cookie|token|secret|password|credential|signature)", re.I
)


def is_credential_header(name: str) -> bool:
    """Whether an HTTP header of this name carries a credential (``Authorization``,
    ``Proxy-Authorization``, ``api-key``, ``X-Api-Key``, ``Cookie``, ``X-Auth-Token``...)."""
    return bool(_CREDENTIAL_HEADER.search(name))


def credentials_of(headers: Mapping[str, str], urls: Iterable[str] = ()) -> tuple[Secret, ...]:
    """The secrets in credential-bearing ``headers`` and in the userinfo of ``urls``.

    A header value ``Scheme token`` gives the token as well as the whole value,
    so that either is scrubbed wherever it is echoed. A URL's password is a
    secret, and so is its user name when it is long enough to be a token (a
    short one such as ``admin`` would scrub ordinary words).
    """
    found: list[str] = []
    for name, value in headers.items():
        if is_credential_header(str(name)) and isinstance(value, str):
            found.append(value)
            _, _, token = value.strip().partition(" ")
            found.append(token.strip())
    for url in urls:
        parts = urlsplit(url)
        if parts.password:
            found.append(parts.password)
            found.append(unquote(parts.password))
            # as sent: an Authorization: Basic header a server may echo
            basic = f"{unquote(parts.username or '')}:{unquote(parts.password)}"
            found.append(base64.b64encode(basic.encode()).decode())
        if parts.username and len(parts.username) >= 8:
            found.append(parts.username)
    # Longest first: a value that contains another is scrubbed whole.
    values = sorted({v for v in found if len(v) >= 4}, key=len, reverse=True)
    return tuple(Secret(v) for v in values)


def scrub_all(text: str, secrets: Iterable[Secret]) -> str:
    """``text`` with every value of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        text = secret.scrub(text)
    return text


def redact_url(url: str) -> str:
    """``url`` without any ``user:password@`` part, for showing which server was used."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
