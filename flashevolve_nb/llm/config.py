"""How to reach an OpenAI-compatible server, per role, from Python, a file or the environment.

One :class:`OpenAIConfig` describes one backend: its replicas' base URLs, the
model, the key (a :class:`Secret`), limits, retries, default request
parameters and vLLM extras. :func:`load_role_configs` gives one per role
(``task``, ``reflection``, ``repair``), each built from, in rising priority:

1. a TOML file: a ``[llm]`` table for every role, and ``[llm.ROLE]`` tables
   that change it for one role::

       [llm]
       base_url = ["http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1"]
       model = "Qwen/Qwen3-8B"
       api_key_env = "VLLM_API_KEY"    # the variable's name, never the key
       max_concurrency = 64
       [llm.extra_body.chat_template_kwargs]
       enable_thinking = false
       [llm.reflection]
       model = "Qwen/Qwen3-32B"

2. the environment: ``OPENAI_BASE_URL`` (commas separate replicas),
   ``OPENAI_API_KEY``, ``FLASHEVOLVE_MODEL``, ``FLASHEVOLVE_CONFIG`` (the
   file's path), and per role ``FLASHEVOLVE_<ROLE>_MODEL``,
   ``FLASHEVOLVE_<ROLE>_BASE_URL``, ``FLASHEVOLVE_<ROLE>_API_KEY``;
3. keyword arguments, for every role, and ``roles={"reflection": {...}}``.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from flashevolve_nb.llm.retry import RetryPolicy
from flashevolve_nb.llm.secret import Secret, credentials_of, redact_url, scrub_all

__all__ = ["ROLES", "OpenAIConfig", "load_role_configs"]

ROLES = ("task", "reflection", "repair")


@dataclass(frozen=True, kw_only=True)
class OpenAIConfig:
    """One OpenAI-compatible backend. ``api_key`` prints as ``Secret('***')``."""

    model: str
    base_url: str | Sequence[str] = ()
    """One URL per replica of the same model (a str may list them with commas); empty:
    the ``openai`` client's own default. Read back as :attr:`endpoints`."""
    api_key: Secret | None = None
    name: str = ""
    """How the backend is shown in events and errors; default ``openai:<model>``."""
    max_concurrency: int = 64
    """Requests in flight per replica at most; more wait for a free slot."""
    timeout: float = 600.0
    """Seconds one attempt may take, answer included."""
    connect_timeout: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    params: Mapping[str, Any] = field(default_factory=dict)
    """Default request parameters (``temperature``, ``max_tokens``...); a call's own win."""
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    """Sent with every request as-is: vLLM's ``chat_template_kwargs``, ``top_k``..."""
    extra_headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    cost_per_prompt_token: float = 0.0
    cost_per_completion_token: float = 0.0
    """Prices in your currency per token; both 0 means cost is not tracked."""
    cooldown: float = 1.0
    """Seconds a failing replica rests at first (doubling per consecutive failure)."""
    http_transport: str = "auto"
    """Under the ``openai`` client: ``aiohttp`` (its ``DefaultAioHttpClient``, less CPU per
    request), ``httpx`` (its default) or ``auto``: aiohttp when installed
    (``pip install 'openai[aiohttp]'``). See :mod:`flashevolve_nb.llm.transport`."""

    def __post_init__(self) -> None:
        urls = self.base_url
        if isinstance(urls, str):
            urls = [u.strip() for u in urls.split(",") if u.strip()]
        object.__setattr__(self, "base_url", tuple(str(u).rstrip("/") for u in urls))
        key: object = self.api_key
        if isinstance(key, str):
            # A plain str is accepted from Python callers and wrapped at once.
            object.__setattr__(self, "api_key", Secret(key) if key else None)
        elif key is not None and not isinstance(key, Secret):
            raise TypeError(
                f"api_key must be a str, a Secret or None (got {type(key).__name__}); e.g. "
                "api_key=os.environ['OPENAI_API_KEY'], or api_key_env='OPENAI_API_KEY' in a "
                "config file"
            )
        if not self.model:
            raise ValueError(
                "OpenAIConfig needs a model name (the server's model id, e.g. the path "
                "vLLM was started with); set model=..., FLASHEVOLVE_MODEL or [llm] model"
            )
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1 (got {self.max_concurrency})")
        for name in ("timeout", "connect_timeout"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds (got {value!r})")
        if self.http_transport not in ("auto", "aiohttp", "httpx"):
            raise ValueError(
                f"http_transport must be auto, aiohttp or httpx (got {self.http_transport!r})"
            )
        if self.cost_per_prompt_token < 0 or self.cost_per_completion_token < 0:
            raise ValueError("costs per token must be >= 0")
        for url in self.endpoints:
            if not url.startswith(("http://", "https://")):
                raise ValueError(
                    f"base_url {redact_url(url)!r} is not an http(s) URL; "
                    "e.g. http://127.0.0.1:8000/v1"
                )

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(self.base_url)

    @property
    def secrets(self) -> tuple[Secret, ...]:
        """Every credential of this config: the key, credential headers, URL userinfo."""
        found = credentials_of(self.extra_headers, self.endpoints)
        return (self.api_key, *found) if self.api_key else found

    def scrub(self, text: str) -> str:
        """``text`` without any of :attr:`secrets` (for errors, events and logs)."""
        return scrub_all(text, self.secrets)

    def __repr__(self) -> str:
        # The generated repr would show URL passwords; credential headers show as ***.
        headers = {k: self.scrub(v) for k, v in self.extra_headers.items()}
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        shown["base_url"] = tuple(redact_url(u) for u in self.endpoints)
        inner = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"OpenAIConfig({inner}, extra_headers={headers!r})"

    @property
    def display_name(self) -> str:
        return self.name or f"openai:{self.model}"

    @property
    def tracks_cost(self) -> bool:
        return bool(self.cost_per_prompt_token or self.cost_per_completion_token)

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], env: Mapping[str, str] | None = None
    ) -> OpenAIConfig:
        """Build from a parsed file table; ``api_key_env`` names the variable holding the key."""
        env = os.environ if env is None else env
        known = {f.name for f in fields(cls)}
        values = dict(data)
        values.setdefault("model", "")  # so that a missing model gets the helpful message
        key_var = values.pop("api_key_env", None)
        if key_var is not None and "api_key" not in values:
            secret = Secret.from_env(str(key_var), env)
            if secret is None:
                raise ValueError(
                    f"the config names api_key_env={key_var!r} but that variable is unset; "
                    f"export {key_var}=... first"
                )
            values["api_key"] = secret
        if "retry" in values and isinstance(values["retry"], Mapping):
            values["retry"] = _retry_policy(values["retry"])
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown LLM setting(s) {unknown}; valid: {sorted(known | {'api_key_env'})}"
            )
        return cls(**values)


def _retry_policy(data: Mapping[str, Any]) -> RetryPolicy:
    known = {f.name for f in fields(RetryPolicy)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown retry setting(s) {unknown}; valid: {sorted(known)}")
    return RetryPolicy(**data)


def load_role_configs(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    roles: Mapping[str, Mapping[str, Any]] | None = None,
    **overrides: Any,
) -> dict[str, OpenAIConfig]:
    """One :class:`OpenAIConfig` per role in :data:`ROLES`; see the module docstring."""
    env = os.environ if env is None else env
    path = path if path is not None else env.get("FLASHEVOLVE_CONFIG") or None
    file_common: dict[str, Any] = {}
    file_roles: dict[str, dict[str, Any]] = {}
    if path is not None:
        file_common, file_roles = _read_file(Path(path))
    roles = dict(roles or {})
    bad = sorted(set(roles) - set(ROLES))
    if bad:
        raise ValueError(f"unknown role(s) {bad}; roles are {list(ROLES)}")
    out: dict[str, OpenAIConfig] = {}
    for role in ROLES:
        merged: dict[str, Any] = {**file_common, **file_roles.get(role, {})}
        merged.update(_from_env(env, role))
        merged.update(overrides)
        merged.update(roles.get(role, {}))
        try:
            out[role] = OpenAIConfig.from_mapping(merged, env)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"LLM settings for role {role!r}: {exc}") from exc
    return out


def _read_file(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"LLM config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"LLM config file {str(path)!r} is not valid TOML: {exc}") from exc
    table = data.get("llm")
    if not isinstance(table, dict):
        raise ValueError(f"LLM config file {str(path)!r} has no [llm] table")
    common = {k: v for k, v in table.items() if k not in ROLES}
    per_role = {k: dict(v) for k, v in table.items() if k in ROLES and isinstance(v, dict)}
    return common, per_role


def _from_env(env: Mapping[str, str], role: str) -> dict[str, Any]:
    prefix = f"FLASHEVOLVE_{role.upper()}_"
    values: dict[str, Any] = {}
    for key, var_names in (
        ("base_url", (f"{prefix}BASE_URL", "OPENAI_BASE_URL")),
        ("model", (f"{prefix}MODEL", "FLASHEVOLVE_MODEL")),
    ):
        for var in var_names:
            if env.get(var):
                values[key] = env[var]
                break
    for var in (f"{prefix}API_KEY", "OPENAI_API_KEY"):
        secret = Secret.from_env(var, env)
        if secret is not None:
            values["api_key"] = secret
            break
    return values
