"""The reflection prompt (our own wording) and the parser of its answer.

The prompt shows the current text of one component, a few examples with
input, output, score and feedback, and asks for the whole new text in one
fenced block. The parser is strict about what it adopts: an answer without a
usable fenced block, or one cut off by the token limit, is *not* adopted
(``gepa`` adopts a fence-less reply verbatim, which lets chatter leak into
prompts). It is lenient about what surrounds the block: prose, a language
tag, several blocks (the last complete one wins, as models often restate).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "CURRENT_TEXT_HEADING",
    "EXAMPLES_HEADING",
    "REFLECTION_MARKER",
    "ReflectionExample",
    "ReflectionParse",
    "fence",
    "parse_reflection_answer",
    "reflection_prompt",
]

REFLECTION_MARKER = "You are improving a piece of text that an AI assistant follows."
CURRENT_TEXT_HEADING = "## Current text"
EXAMPLES_HEADING = "## How the assistant did on some examples"


@dataclass(frozen=True, slots=True)
class ReflectionExample:
    input: str
    output: str
    score: float
    feedback: str


def fence(text: str) -> str:
    """Wrap ``text`` in a backtick fence longer than any backtick run inside it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    marker = "`" * max(3, longest + 1)
    return f"{marker}\n{text}\n{marker}"


def reflection_prompt(
    component: str, current_text: str, examples: Sequence[ReflectionExample]
) -> str:
    parts = [
        REFLECTION_MARKER,
        f'The text is the component "{component}" of the assistant\'s instructions.',
        "",
        f'{CURRENT_TEXT_HEADING} of "{component}"',
        fence(current_text),
        "",
        EXAMPLES_HEADING,
    ]
    for i, ex in enumerate(examples, 1):
        parts += [
            f"### Example {i}",
            "Input:",
            fence(ex.input),
            "Assistant's output:",
            fence(ex.output),
            f"Score: {ex.score:.3f}",
            "Feedback:",
            fence(ex.feedback),
            "",
        ]
    parts += [
        "## Your task",
        "Read the feedback and work out what the assistant keeps getting wrong and why. "
        f'Then write an improved version of "{component}": keep what already works, fix '
        "the failures, and state general rules that will hold for new inputs rather than "
        "facts about these particular examples.",
        "Reply with the complete new text inside a single fenced block (```). "
        "Anything outside the block is ignored.",
    ]
    return "\n".join(parts)


@dataclass(frozen=True, slots=True)
class ReflectionParse:
    """Either ``text`` (adopted) or ``reason`` (why nothing was adopted)."""

    text: str | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.text is not None


_OPEN = re.compile(r"^(?P<indent>[ \t]{0,3})(?P<fence>`{3,}|~{3,})[^\n`]*$", re.MULTILINE)


def _blocks(answer: str) -> tuple[list[str], bool]:
    """Complete fenced blocks in order, and whether a fence was left open."""
    blocks: list[str] = []
    pos = 0
    while True:
        m = _OPEN.search(answer, pos)
        if m is None:
            return blocks, False
        marker = m.group("fence")
        close = re.compile(
            rf"^[ \t]{{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$", re.MULTILINE
        )
        start = m.end() + 1
        c = close.search(answer, start) if start <= len(answer) else None
        if c is None:
            return blocks, True
        blocks.append(answer[start : c.start()].rstrip("\n"))
        pos = c.end()


def parse_reflection_answer(answer: str, finish_reason: str = "stop") -> ReflectionParse:
    """Extract the proposed text from a reflection answer, or say why not."""
    if finish_reason == "length":
        return ReflectionParse(None, "truncated: the answer hit the token limit")
    blocks, left_open = _blocks(answer)
    complete = [b for b in blocks if b.strip()]
    if not complete:
        if left_open:
            return ReflectionParse(None, "truncated: a fenced block was opened but never closed")
        if blocks:
            return ReflectionParse(None, "malformed: the fenced block is empty")
        return ReflectionParse(None, "malformed: no fenced block in the answer")
    return ReflectionParse(complete[-1].strip("\n"))
