"""Reflective repair of stale artifacts: the prompt, its parser, and the LLM policies.

A stale *language* artifact is readable evidence: an LLM can compare it with
the current best and with what was admitted since it was derived, and decide
to accept it, fold its transferable parts into the current best (a patch), or
drop it. ``reflective`` does that for each stale item; ``meta`` buffers stale
items and distils them in groups after the next real improvement.
"""

from __future__ import annotations

from flashevolve_nb.repair.history import HistoryEntry, component_diff, history_of
from flashevolve_nb.repair.meta import MetaPolicy
from flashevolve_nb.repair.prompt import (
    REPAIR_MARKER,
    RepairAnswer,
    parse_repair_answer,
    repair_prompt,
)
from flashevolve_nb.repair.reflective import ReflectivePolicy

__all__ = [
    "REPAIR_MARKER",
    "HistoryEntry",
    "MetaPolicy",
    "ReflectivePolicy",
    "RepairAnswer",
    "component_diff",
    "history_of",
    "parse_repair_answer",
    "repair_prompt",
]
