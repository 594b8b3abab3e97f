"""GEPA (reflective prompt evolution) as a workload of the pipeline."""

from __future__ import annotations

from flashevolve_nb.workloads.gepa.prompts import (
    ReflectionExample,
    ReflectionParse,
    parse_reflection_answer,
    reflection_prompt,
)
from flashevolve_nb.workloads.gepa.sampler import EpochShuffledSampler
from flashevolve_nb.workloads.gepa.workload import (
    Evaluation,
    GepaConfig,
    GepaStep,
    GepaWorkload,
    Task,
)

__all__ = [
    "EpochShuffledSampler",
    "Evaluation",
    "GepaConfig",
    "GepaStep",
    "GepaWorkload",
    "ReflectionExample",
    "ReflectionParse",
    "Task",
    "parse_reflection_answer",
    "reflection_prompt",
]
