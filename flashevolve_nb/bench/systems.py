"""The systems a benchmark compares, by name.

``gepa`` is the real package (:mod:`~flashevolve_nb.bench.gepa_http`),
``turbo-gepa`` the optional peer (:mod:`~flashevolve_nb.bench.turbo`); the
rest are this project's modes, each a set of :class:`~flashevolve_nb.demo.DemoConfig`
fields on top of the same task, seed and budget:

- ``sync``: GEPA's synchronous schedule in our engine;
- ``async-full`` / ``async-guarded`` / ``async-reflective``: the pipeline with
  one staleness policy each (accept everything, guarded, reflective repair),
  fixed workers and no speculation, so only the policy differs;
- ``flash``: the default configuration (adaptive controller, speculative
  completion at alpha 0.5) with the reflective policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["ALL_SYSTEMS", "DEFAULT_SYSTEMS", "OUR_SYSTEMS", "PEERS", "check_systems"]

OUR_SYSTEMS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "sync": {"mode": "sync", "controller": "fixed", "alpha": 1.0},
        "async-full": {"mode": "async", "policy": "accept", "controller": "fixed", "alpha": 1.0},
        "async-guarded": {
            "mode": "async", "policy": "guarded", "controller": "fixed", "alpha": 1.0,
        },
        "async-reflective": {
            "mode": "async", "policy": "reflective", "controller": "fixed", "alpha": 1.0,
        },
        "flash": {"mode": "async", "policy": "reflective", "controller": "adaptive", "alpha": 0.5},
    }
)  # fmt: skip
PEERS: tuple[str, ...] = ("gepa", "turbo-gepa")
ALL_SYSTEMS: tuple[str, ...] = ("gepa", *OUR_SYSTEMS, "turbo-gepa")
DEFAULT_SYSTEMS: tuple[str, ...] = ALL_SYSTEMS


def check_systems(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The names, validated; ``gepa`` first (every ratio is to it)."""
    unknown = [n for n in names if n not in ALL_SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system(s) {', '.join(unknown)}; valid: {', '.join(ALL_SYSTEMS)}")
    if "gepa" not in names:
        raise ValueError("the systems must include 'gepa': every ratio is to gepa's figures")
    return ("gepa", *[n for n in dict.fromkeys(names) if n != "gepa"])
