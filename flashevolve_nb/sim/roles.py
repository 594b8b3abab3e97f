"""Every role the simulator knows, told apart by its prompt: what a simulated model answers.

One entry point for the in-process backend (``Simulator.llm``) and the
loopback HTTP server alike: ACE's Generator, Reflector and Curator
(:mod:`.ace`), Meta-Harness's proposer and ticket model (:mod:`.meta_harness`),
then GEPA's reflection and repair prompts and the rulebook task model, and a
generic answer for anything else (:mod:`.behaviour`). Each role is recognised
by a marker its real prompt builder writes, and a recogniser draws nothing
from ``rng`` before it recognises, so adding a role never changes what
another role's conversation is answered.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from flashevolve_nb.llm.protocol import Message
from flashevolve_nb.sim.ace import respond_ace
from flashevolve_nb.sim.behaviour import Reply, respond
from flashevolve_nb.sim.meta_harness import respond_meta_harness

__all__ = ["respond_any"]


def respond_any(messages: Sequence[Message], rng: random.Random) -> Reply:
    """The scripted answer to a conversation of any role, from its text alone."""
    return (
        respond_ace(messages, rng) or respond_meta_harness(messages, rng) or respond(messages, rng)
    )
