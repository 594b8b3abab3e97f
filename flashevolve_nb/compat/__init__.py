"""Bring your own ``gepa`` adapter: ``gepa.optimize``'s arguments on our asynchronous engine.

``flashevolve_nb.optimize(...)`` takes what ``gepa.optimize`` takes (an adapter
following ``gepa``'s protocol, or a task model for its ``DefaultAdapter``; lists
or ``gepa`` data loaders; a reflection model as a callable, a model string or
one of our backends; ``gepa`` callbacks) and returns ``gepa``'s result fields,
convertible to ``gepa``'s ``GEPAResult``. ``gepa`` itself is optional: it is
imported only where its own code is used (its reflection prompt, its
``DefaultAdapter``, ``to_gepa()``).

Modules, one idea each: ``data`` (loaders), ``calls`` (adapter methods in
threads), ``lm`` (reflection model coercion), ``reflection`` (new texts),
``budget`` (an alias of the engine budget's hard cap), ``state`` (the
``gepa``-shaped view), ``callbacks`` (``gepa`` callbacks), ``workload`` (the
adapter evaluator of GEPA's one step core, :mod:`flashevolve_nb.workloads.gepa.core`), ``result``,
``rundir``, ``optimize`` (the entry points), ``simulated`` (the simulator as
``gepa``-shaped callables).
"""

from __future__ import annotations

from flashevolve_nb.compat.callbacks import CALLBACK_METHODS, CallbackBridge
from flashevolve_nb.compat.calls import AdapterCalls, AdapterContractError, Evaluated
from flashevolve_nb.compat.data import IdSpace, ListLoader, Loader, as_loader
from flashevolve_nb.compat.lm import CallableLLM, as_llm, llm_from_string
from flashevolve_nb.compat.optimize import Optimization, optimize, optimize_async, prepare
from flashevolve_nb.compat.result import OptimizeResult
from flashevolve_nb.compat.simulated import (
    GepaPromptReader,
    SimulatedModels,
    rulebook_for_gepa,
)
from flashevolve_nb.compat.state import GepaStateView
from flashevolve_nb.compat.workload import AdapterConfig, AdapterWorkload

__all__ = [
    "CALLBACK_METHODS",
    "AdapterCalls",
    "AdapterConfig",
    "AdapterContractError",
    "AdapterWorkload",
    "CallableLLM",
    "CallbackBridge",
    "Evaluated",
    "GepaPromptReader",
    "GepaStateView",
    "IdSpace",
    "ListLoader",
    "Loader",
    "Optimization",
    "OptimizeResult",
    "SimulatedModels",
    "as_llm",
    "as_loader",
    "llm_from_string",
    "optimize",
    "optimize_async",
    "prepare",
    "rulebook_for_gepa",
]
