"""Simulated Meta-Harness: the ticket task, the seed harness and the in-process simulated models.

The support-ticket task, its task model and the proposer are scripted in the
simulator (:mod:`flashevolve_nb.sim.meta_harness`, re-exported here), so the
in-process models below and the loopback HTTP server (``flashevolve
sim-server``) answer Meta-Harness's prompts alike. See that module for what
each role does. :class:`MetaHarnessSimulatedLLM` answers from the messages
alone (rule one of SIMULATOR.md), with the latency of the same simulated
server that every other role contends for. Besides the marker the harness
template writes, it takes any request naming a ticket cue word for a ticket
(a proposer may write a harness without the template's instruction line).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flashevolve_nb.llm.protocol import Completion, FinishReason, Message, Usage
from flashevolve_nb.sim.backend import MODEL_NAME, Simulator, prompt_tokens
from flashevolve_nb.sim.behaviour import respond
from flashevolve_nb.sim.lengths import lengths_for
from flashevolve_nb.sim.meta_harness import (
    LABELS,
    PROPOSER,
    PROPOSER_LENGTHS,
    TASK_MODEL,
    ProposerModel,
    Ticket,
    TicketModel,
    TicketTask,
    respond_meta_harness,
    respond_ticket,
)
from flashevolve_nb.workloads.meta_harness.prompts import PROPOSER_MARKER
from flashevolve_nb.workloads.meta_harness.template import Knobs, render

__all__ = [
    "LABELS",
    "PROPOSER",
    "PROPOSER_LENGTHS",
    "TASK_MODEL",
    "MetaHarnessSimulatedLLM",
    "ProposerModel",
    "Ticket",
    "TicketModel",
    "TicketTask",
    "respond_meta_harness",
    "seed_harness",
]


def seed_harness() -> str:
    """The harness a simulated run starts from: no examples, no instructions."""
    return render(Knobs())


class MetaHarnessSimulatedLLM:
    """The ``LLM`` protocol over a :class:`Simulator`, answering Meta-Harness's roles too.

    Timing, lengths and seeding are the simulator's own (same server, same queue).
    """

    def __init__(self, simulator: Simulator, role: str) -> None:
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
        rng = self.simulator.request_rng(messages, params.get("temperature"))
        reply = (
            respond_meta_harness(messages, rng)
            or respond_ticket(messages, rng)
            or respond(messages, rng)
        )
        proposing = any(PROPOSER_MARKER in m.get("content", "") for m in messages)
        drawn = (PROPOSER_LENGTHS if proposing else lengths_for(reply.kind)).draw(rng)
        text, tokens = reply.text, drawn
        finish: FinishReason = reply.finish_reason
        if max_tokens is not None and drawn > max_tokens:
            text = text[: len(text) * max_tokens // drawn]
            finish, tokens = "length", max_tokens
        n_prompt = prompt_tokens(messages)
        latency = await self.simulator.server.generate(n_prompt, tokens, rng=rng)
        return Completion(text, Usage(n_prompt, tokens), round(latency, 6), finish, MODEL_NAME)

    def __repr__(self) -> str:
        return f"MetaHarnessSimulatedLLM(role={self.role!r}, {self.simulator!r})"
