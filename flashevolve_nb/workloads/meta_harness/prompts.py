"""The proposer's prompt and the parser of its answer.

The proposer sees the harness interface, the history directory (see
:mod:`.history`) and the parent harness it should improve, and answers with
a complete program in one fenced block. :func:`parse_proposal` takes the
last fenced block that defines ``build_context`` (else the last fenced
block); an answer with no block, or one cut off inside it, fails that step
with the reason. The program's syntax is checked at evaluation, so a
candidate that does not compile is recorded in the history like any other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flashevolve_nb.llm.protocol import FinishReason
from flashevolve_nb.workloads.meta_harness.harness import INTERFACE

__all__ = ["PROPOSER_MARKER", "ParsedProposal", "parse_proposal", "proposer_prompt"]

PROPOSER_MARKER = "You are improving a harness"
PARENT_HEADING = "## Parent harness"
HISTORY_HEADING = "## History"


def proposer_prompt(
    history: str, parent_id: str, parent_code: str, accuracy: float, context_tokens: float | None
) -> str:
    tokens = "unknown" if context_tokens is None else f"{context_tokens:.0f}"
    return f"""{PROPOSER_MARKER}: a Python program that decides what a task model is \
shown (what to store from labelled examples, what to retrieve for a task, how to present \
it). Read the history of every earlier candidate (its code, scores and per-task traces, \
uncompressed) and write a new harness that improves on the Pareto front of accuracy \
(higher is better) against context tokens per task (lower is better).

## The interface
{INTERFACE}

{HISTORY_HEADING}
The history directory holds one folder per earlier candidate (numbered in the order \
their evaluations finished): harness.py, scores.json and traces.jsonl.

{history}

{PARENT_HEADING} {parent_id} (accuracy {accuracy:.4f}, context tokens per task {tokens})
```python
{parent_code.rstrip()}
```

Study the traces of failed tasks and what earlier candidates already tried; do not \
repeat an idea that did not help. Answer with one or two sentences on what you change \
and why, then the complete new harness in a single ```python fenced block."""


@dataclass(frozen=True, slots=True)
class ParsedProposal:
    code: str | None
    """The program, or None when the answer holds none."""
    reason: str = ""
    """Why there is no program."""
    rationale: str = ""
    """What the answer says before the code."""


_FENCE = re.compile(r"^```[ \t]*([A-Za-z0-9_+-]*)[ \t]*$", re.MULTILINE)


def parse_proposal(text: str, finish_reason: FinishReason = "stop") -> ParsedProposal:
    """The harness program in a proposer's answer, or why there is none."""
    cut = " (the answer was cut off at the token limit)" if finish_reason == "length" else ""
    fences = list(_FENCE.finditer(text))
    blocks: list[tuple[str, str, int]] = []
    i = 0
    while i < len(fences):
        opening = fences[i]
        if i + 1 >= len(fences):
            if not blocks:
                return ParsedProposal(None, f"the code block is never closed{cut}")
            break
        closing = fences[i + 1]
        body = text[opening.end() + 1 : closing.start()]
        blocks.append((opening.group(1).lower(), body, opening.start()))
        i += 2
    if not blocks:
        return ParsedProposal(None, f"no fenced code block in the answer{cut}")
    code_blocks = [b for b in blocks if b[0] in ("", "python", "py", "python3")]
    if not code_blocks:
        return ParsedProposal(None, "no Python code block in the answer")
    defining = [b for b in code_blocks if re.search(r"^def build_context\(", b[1], re.M)]
    _, body, start = (defining or code_blocks)[-1]
    if not body.strip():
        return ParsedProposal(None, "the code block is empty")
    return ParsedProposal(body.rstrip() + "\n", rationale=text[:start].strip()[:1000])
