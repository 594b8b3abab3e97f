"""Simulated ACE: the rulebook task, the seed playbook and the in-process simulated models.

The ACE task here is the simulator's rulebook (``flashevolve_nb.sim.rulebook``):
every request carries hidden output rules, and a playbook bullet that states
a rule is what makes the Generator keep it, so bullets map to hidden rules
the way system prompt sentences do for GEPA. A long playbook or one stating
two conflicting rules lowers compliance (the rulebook's task model), so
duplicate and harmful bullets cost score: that is what makes rebasing with
duplicate detection measurable.

The scripted Generator, Reflector and Curator live in the simulator
(:mod:`flashevolve_nb.sim.ace`, re-exported here), so the in-process models
below and the loopback HTTP server (``flashevolve sim-server``) answer ACE's
prompts alike. Rule one of SIMULATOR.md holds: :class:`AceSimulatedLLM`
answers from the prompts alone, with the latency of the same simulated
server (profile, batching, long-tailed lengths) that GEPA's calls contend
for; a conversation that is not an ACE role's goes to the simulator's
ordinary behaviour.
"""

from __future__ import annotations

from flashevolve_nb.sim.ace import (
    FORMATTING,
    GUIDELINES,
    CuratorModel,
    GeneratorModel,
    ReflectorModel,
    respond_ace,
)
from flashevolve_nb.sim.backend import SimulatedLLM, Simulator
from flashevolve_nb.workloads.ace.playbook import Playbook

__all__ = [
    "AceSimulatedLLM",
    "CuratorModel",
    "GeneratorModel",
    "ReflectorModel",
    "respond_ace",
    "seed_playbook",
]


def seed_playbook() -> Playbook:
    """The playbook a simulated ACE run starts from: two empty sections."""
    return Playbook((GUIDELINES, FORMATTING))


class AceSimulatedLLM(SimulatedLLM):
    """The ``LLM`` protocol over a :class:`Simulator`, answering ACE's roles too.

    Timing, lengths and seeding are the simulator's own (see
    ``flashevolve_nb.sim.backend.SimulatedLLM``, which answers every role the
    simulator knows, ACE's included): same server, same queue.
    """

    def __init__(self, simulator: Simulator, role: str) -> None:
        super().__init__(simulator, role)

    def __repr__(self) -> str:
        return f"AceSimulatedLLM(role={self.role!r}, {self.simulator!r})"
