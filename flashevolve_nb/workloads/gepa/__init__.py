"""GEPA (reflective prompt evolution) as a workload of the pipeline.

One step core (:class:`GepaCore`) with two evaluators: the LLM task
(:class:`GepaWorkload`) and a ``gepa`` adapter
(:class:`flashevolve_nb.compat.AdapterWorkload`, behind ``flashevolve_nb.optimize``).
"""

from __future__ import annotations

from flashevolve_nb.workloads.gepa.core import GepaCore, Proposal
from flashevolve_nb.workloads.gepa.prompts import (
    ReflectionExample,
    ReflectionParse,
    parse_reflection_answer,
    reflection_prompt,
)
from flashevolve_nb.workloads.gepa.sampler import EpochShuffledSampler
from flashevolve_nb.workloads.gepa.workload import (
    Evaluation,
    Evaluations,
    GepaConfig,
    GepaStep,
    GepaWorkload,
    Task,
)

__all__ = [
    "EpochShuffledSampler",
    "Evaluation",
    "Evaluations",
    "GepaConfig",
    "GepaCore",
    "GepaStep",
    "GepaWorkload",
    "Proposal",
    "ReflectionExample",
    "ReflectionParse",
    "Task",
    "parse_reflection_answer",
    "reflection_prompt",
]
