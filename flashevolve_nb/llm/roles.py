"""One model per role: the task model, the reflection model, the repair model.

GEPA-style evolution calls a model in several roles, often of different
sizes or prices. :class:`Backends` holds one ``LLM`` per role; roles whose
settings are identical share one backend, so they also share its
concurrency cap and its accounting, as they share the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flashevolve_nb.clock import Clock
from flashevolve_nb.llm.config import ROLES, OpenAIConfig, load_role_configs
from flashevolve_nb.llm.openai_backend import BackendStats, OpenAIBackend
from flashevolve_nb.llm.protocol import LLM

__all__ = ["Backends"]


@dataclass(frozen=True)
class Backends:
    task: LLM
    reflection: LLM
    repair: LLM

    def llm_for(self, role: str) -> LLM:
        if role not in ROLES:
            raise KeyError(f"no role {role!r}; roles are {list(ROLES)}")
        llm: LLM = getattr(self, role)
        return llm

    @classmethod
    def from_config(
        cls,
        path: str | Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        roles: Mapping[str, Mapping[str, Any]] | None = None,
        **overrides: Any,
    ) -> Backends:
        """OpenAI-compatible backends from a TOML file, the environment and keyword
        arguments (see :mod:`flashevolve_nb.llm.config` for what goes where)."""
        configs = load_role_configs(path, env=env, roles=roles, **overrides)
        made: list[tuple[OpenAIConfig, OpenAIBackend]] = []

        def backend(config: OpenAIConfig) -> OpenAIBackend:
            for seen, b in made:
                if seen == config:
                    return b
            b = OpenAIBackend(config, clock=clock)
            made.append((config, b))
            return b

        return cls(**{role: backend(configs[role]) for role in ROLES})

    def distinct(self) -> list[LLM]:
        """Each backend once, however many roles it serves."""
        out: list[LLM] = []
        for role in ROLES:
            llm = self.llm_for(role)
            if all(llm is not o for o in out):
                out.append(llm)
        return out

    def stats(self) -> dict[str, BackendStats]:
        """Per role, for the backends that keep statistics."""
        out: dict[str, BackendStats] = {}
        for role in ROLES:
            llm = self.llm_for(role)
            if isinstance(llm, OpenAIBackend):
                out[role] = llm.stats()
        return out

    async def aclose(self) -> None:
        for llm in self.distinct():
            close = getattr(llm, "aclose", None)
            if close is not None:
                await close()
