"""The simulator as an LLM backend: prompts in, seeded answers out, on simulated time.

``Simulator`` owns one simulated server (one GPU server or one API account)
shared by every role, because contention between roles is exactly what the
benchmark measures. ``sim.llm("task")`` and ``sim.llm("reflection")`` are thin
``LLM`` views onto it; the role only names the view, since what the model
answers is decided from the prompt (rule one).

Determinism under any schedule: each request draws from its own
``random.Random`` seeded by (seed, sha256 of the messages, how many times this
exact conversation was seen before). Arrival order between different
conversations therefore never changes an answer. With ``temperature=0`` the
occurrence is ignored, so a repeated conversation gets the same answer, as
with greedy decoding.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from flashevolve_nb.clock import Clock
from flashevolve_nb.llm.protocol import Completion, Message, Usage
from flashevolve_nb.sim.batching import BatchingServer
from flashevolve_nb.sim.hosted import HostedServer
from flashevolve_nb.sim.lengths import lengths_for
from flashevolve_nb.sim.profiles import ApiProfile, Profile, VllmProfile, get_profile
from flashevolve_nb.sim.roles import respond_any
from flashevolve_nb.sim.server import SimulatedServer

__all__ = ["MODEL_NAME", "SimulatedLLM", "Simulator", "make_server", "prompt_tokens"]

MODEL_NAME = "sim-rulebook-1"


def make_server(profile: Profile, clock: Clock, seed: int = 0) -> SimulatedServer:
    """The timing model for ``profile``."""
    if isinstance(profile, VllmProfile):
        return BatchingServer(profile, clock)
    if isinstance(profile, ApiProfile):
        return HostedServer(profile, clock, seed)
    raise TypeError(f"not a simulator profile: {profile!r}")


def prompt_tokens(messages: Sequence[Message]) -> int:
    """Rough token count of a conversation: ~4 characters per token plus framing."""
    return sum(len(m.get("content", "")) // 4 + 4 for m in messages)


_SEEN_MAX = 50_000


class Simulator:
    """One simulated model server with seeded, prompt-driven behaviour."""

    def __init__(
        self, profile: str | Profile = "vllm", seed: int = 0, clock: Clock | None = None
    ) -> None:
        self.profile: Profile = get_profile(profile) if isinstance(profile, str) else profile
        self.seed = seed
        self.clock = clock if clock is not None else Clock()
        self.server = make_server(self.profile, self.clock, seed)
        # Occurrences of each distinct conversation, so that asking the same thing twice
        # samples twice. Bounded (oldest forgotten first) so a long run's memory stays flat;
        # a conversation forgotten and asked again long after simply samples afresh.
        self._seen: OrderedDict[bytes, int] = OrderedDict()

    def llm(self, role: str = "task") -> SimulatedLLM:
        return SimulatedLLM(self, role)

    def request_rng(self, messages: Sequence[Message], temperature: float | None) -> random.Random:
        """The randomness of one request, independent of arrival order."""
        payload = json.dumps(
            [[m.get("role", ""), m.get("content", "")] for m in messages], ensure_ascii=False
        )
        digest = hashlib.sha256(payload.encode()).hexdigest()
        key = bytes.fromhex(digest[:32])
        occurrence = self._seen.pop(key, 0)
        self._seen[key] = occurrence + 1
        if len(self._seen) > _SEEN_MAX:
            self._seen.popitem(last=False)
        if temperature == 0:
            occurrence = 0
        return random.Random(f"{self.seed}:{digest}:{occurrence}")

    def __repr__(self) -> str:
        return f"Simulator(profile={self.profile!r}, seed={self.seed})"


class SimulatedLLM:
    """The ``LLM`` protocol over a ``Simulator``; latencies are simulated seconds."""

    def __init__(self, simulator: Simulator, role: str = "task") -> None:
        self.simulator = simulator
        self.role = role

    @property
    def name(self) -> str:
        return f"simulated {self.simulator.profile.kind} ({self.role})"

    @property
    def simulated(self) -> bool:
        return True

    async def chat(self, messages: Sequence[Message], **params: Any) -> Completion:
        max_tokens = params.get("max_tokens", params.get("max_completion_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise ValueError(f"max_tokens must be a positive int or None (got {max_tokens!r})")
        temperature = params.get("temperature")
        rng = self.simulator.request_rng(messages, temperature)
        reply = respond_any(messages, rng)
        drawn = (reply.lengths or lengths_for(reply.kind)).draw(rng)
        text, finish, tokens = reply.text, reply.finish_reason, drawn
        if max_tokens is not None and drawn > max_tokens:
            # cut off by the limit: the visible text loses its end in proportion
            text = text[: len(text) * max_tokens // drawn]
            finish, tokens = "length", max_tokens
        n_prompt = prompt_tokens(messages)
        latency = await self.simulator.server.generate(n_prompt, tokens, rng=rng)
        # microseconds: below the model's precision, and free of float noise from the clock origin
        latency = round(latency, 6)
        return Completion(text, Usage(n_prompt, tokens), latency, finish, MODEL_NAME)

    def __repr__(self) -> str:
        return f"SimulatedLLM(role={self.role!r}, {self.simulator!r})"
