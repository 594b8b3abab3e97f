"""The offline simulator: a stand-in LLM server with honest timing and readable behaviour.

Everything shown from it is simulated. ``Simulator(profile, seed, clock)``
gives LLM backends (``sim.llm(role)``) that read the very prompts a real
model would get and answer them from a script (GEPA's, ACE's and
Meta-Harness's roles, told apart by their prompts: :mod:`.roles`), in process
or over HTTP (:mod:`.http_server`); ``RulebookTask`` is the task family whose
rules the script knows; profiles set how slow the server is.
"""

from __future__ import annotations

from flashevolve_nb.sim.backend import SimulatedLLM, Simulator, make_server
from flashevolve_nb.sim.errors import RateLimited
from flashevolve_nb.sim.profiles import ApiProfile, Profile, VllmProfile, get_profile
from flashevolve_nb.sim.rulebook import Instance, RulebookTask, Scored
from flashevolve_nb.sim.server import ServerStats, SimulatedServer

__all__ = [
    "ApiProfile",
    "Instance",
    "Profile",
    "RateLimited",
    "RulebookTask",
    "Scored",
    "ServerStats",
    "SimulatedLLM",
    "SimulatedServer",
    "Simulator",
    "VllmProfile",
    "get_profile",
    "make_server",
]
