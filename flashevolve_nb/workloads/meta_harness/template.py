"""A family of harnesses with a few knobs, for the seed and the simulated proposer.

:func:`render` writes a complete, ordinary harness (see :mod:`.harness`) from
:class:`Knobs`; :func:`read_knobs` finds them again in a program's source
(the knobs block), so the simulated proposer can tell which ideas the history
has already tried. A real proposer may write anything; nothing in the
workload depends on this family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

__all__ = ["TASK_MARKER", "Knobs", "read_knobs", "render"]

TASK_MARKER = "Classify the request into one label."
"""The first line of the system message every harness of this family writes: how the
simulator (in process or over HTTP) recognises a ticket task conversation."""

Selection = Literal["recent", "similar"]


@dataclass(frozen=True, slots=True)
class Knobs:
    retrieve: int = 0
    """How many stored examples to show the model."""
    selection: Selection = "recent"
    """Which: the most recent ones, or those sharing most words with the task."""
    list_labels: bool = False
    """Tell the model the labels seen in the training examples."""
    format_hint: bool = False
    """Tell the model the exact answer format."""
    samples: int = 1
    """Self-consistency: answers per task, the majority counts."""
    per_label: int = 0
    """Store at most this many examples per label (0: store every example)."""

    def with_(self, **changes: object) -> Knobs:
        return replace(self, **changes)  # type: ignore[arg-type]


_BLOCK = """\
# --- knobs ---
RETRIEVE = {retrieve}
SELECTION = {selection!r}
LIST_LABELS = {list_labels}
FORMAT_HINT = {format_hint}
SAMPLES = {samples}
PER_LABEL = {per_label}
# --- end knobs ---"""

_BODY = """
import re

WORD = re.compile(r"[a-z]+")


def update_memory(memory, example):
    memory = memory if memory is not None else {"examples": [], "labels": []}
    label = example["output"]
    if label not in memory["labels"]:
        memory["labels"].append(label)
    same = [e for e in memory["examples"] if e["output"] == label]
    if PER_LABEL and len(same) >= PER_LABEL:
        return memory
    memory["examples"].append({"input": example["input"], "output": label})
    return memory


def _words(text):
    return set(WORD.findall(text.lower()))


def _retrieve(task, memory):
    examples = memory["examples"] if memory else []
    if RETRIEVE <= 0 or not examples:
        return []
    if SELECTION == "similar":
        words = _words(task["input"])
        ranked = sorted(
            range(len(examples)),
            key=lambda i: (-len(words & _words(examples[i]["input"])), -i),
        )
        return [examples[i] for i in ranked[:RETRIEVE]]
    return examples[-RETRIEVE:]


def build_context(task, memory):
    lines = [<TASK_MARKER>]
    if LIST_LABELS and memory:
        lines.append("Labels: " + ", ".join(sorted(memory["labels"])))
    if FORMAT_HINT:
        lines.append("Answer with 'Label: <label>' only.")
    shown = _retrieve(task, memory)
    if shown:
        lines.append("")
        lines.append("Examples:")
        for e in shown:
            lines.append("Input: " + e["input"])
            lines.append("Output: Label: " + e["output"])
    return [
        {"role": "system", "content": "\\n".join(lines)},
        {"role": "user", "content": "Input: " + task["input"]},
    ]
"""
_BODY = _BODY.replace("<TASK_MARKER>", f'"{TASK_MARKER}"')


def render(knobs: Knobs) -> str:
    """A complete harness program with these knobs."""
    header = '"""A harness: memory of labelled examples, few-shot retrieval, instructions."""\n\n'
    return (
        header
        + _BLOCK.format(
            retrieve=knobs.retrieve,
            selection=knobs.selection,
            list_labels=knobs.list_labels,
            format_hint=knobs.format_hint,
            samples=knobs.samples,
            per_label=knobs.per_label,
        )
        + "\n"
        + _BODY
    )


_KNOB = re.compile(r"^([A-Z_]+) = (.+)$", re.MULTILINE)


def read_knobs(code: str) -> Knobs | None:
    """The knobs of a program in this family (None: not one, or a knob unreadable)."""
    start, end = code.find("# --- knobs ---"), code.find("# --- end knobs ---")
    if start < 0 or end < start:
        return None
    values = dict(_KNOB.findall(code[start:end]))
    try:
        selection = values["SELECTION"].strip("'\"")
        if selection not in ("recent", "similar"):
            return None
        return Knobs(
            retrieve=int(values["RETRIEVE"]),
            selection="similar" if selection == "similar" else "recent",
            list_labels=values["LIST_LABELS"] == "True",
            format_hint=values["FORMAT_HINT"] == "True",
            samples=int(values["SAMPLES"]),
            per_label=int(values["PER_LABEL"]),
        )
    except (KeyError, ValueError):
        return None
