"""The prompts of ACE's three roles and the parsers of their answers.

Real models get exactly these prompts (the simulator reads them too, rule
one of SIMULATOR.md). Each role has one marker line, so a reader of a
transcript, or the simulator, can tell which role a request is for.

Answers are parsed leniently where that is safe and strictly where it is not:

- the **Generator**'s answer is scored whatever its shape (a missing
  ``BULLETS:`` line just cites nothing), as a task answer would be;
- the **Reflector** and **Curator** answer with one JSON object (in a
  ```` ```json ```` fence or bare); anything that does not parse into the
  expected shape yields a :class:`Parsed` with a ``reason`` naming what was
  wrong, and the workload fails that step with that reason, never the run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from flashevolve_nb.workloads.ace.delta import Add, Delete, Merge, Operation, Tag, Update
from flashevolve_nb.workloads.ace.playbook import Playbook

__all__ = [
    "CURATOR_MARKER",
    "GENERATOR_MARKER",
    "PLAYBOOK_HEADING",
    "REFLECTOR_MARKER",
    "Generation",
    "Parsed",
    "Reflection",
    "curator_prompt",
    "generator_messages",
    "parse_curator_answer",
    "parse_generator_answer",
    "parse_reflector_answer",
    "reflector_prompt",
]

T = TypeVar("T")

GENERATOR_MARKER = "You are the Generator of an agentic context engineering (ACE) system."
REFLECTOR_MARKER = "You are the Reflector of an agentic context engineering (ACE) system."
CURATOR_MARKER = "You are the Curator of an agentic context engineering (ACE) system."
PLAYBOOK_HEADING = "PLAYBOOK:"

_FENCE = "```"


@dataclass(frozen=True, slots=True)
class Parsed(Generic[T]):
    """A parsed answer, or why it could not be parsed (``value`` is None then)."""

    value: T | None
    reason: str = ""


# ---- Generator -----------------------------------------------------------------
def generator_messages(playbook_text: str, question: str) -> list[dict[str, str]]:
    system = "\n".join(
        [
            GENERATOR_MARKER,
            "Answer the user's request. The playbook below holds advice learned from earlier",
            "requests; follow the bullets that apply. Reply in exactly this form:",
            "BULLETS: <ids of the playbook bullets you used, comma separated, or none>",
            "ANSWER:",
            "<your answer>",
            "",
            PLAYBOOK_HEADING,
            _FENCE,
            playbook_text.rstrip("\n"),
            _FENCE,
        ]
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


@dataclass(frozen=True, slots=True)
class Generation:
    """The Generator's answer to one question, scored."""

    instance_id: str
    question: str
    answer: str
    cited: tuple[str, ...]
    score: float
    feedback: str


_BULLETS_LINE = re.compile(r"^\s*BULLETS\s*:(?P<ids>.*)$", re.MULTILINE | re.IGNORECASE)
_ANSWER_LINE = re.compile(r"^\s*ANSWER\s*:[ \t]*", re.MULTILINE | re.IGNORECASE)
_ID = re.compile(r"\b[A-Za-z]+-\d+\b")


def parse_generator_answer(text: str) -> tuple[str, tuple[str, ...]]:
    """The answer proper and the bullet ids it cites (lenient: never fails)."""
    cited: tuple[str, ...] = ()
    a = _ANSWER_LINE.search(text)
    # The citation line comes before the answer: an answer's own "Bullets:" is not one.
    m = _BULLETS_LINE.search(text, 0, a.start() if a is not None else len(text))
    if m is not None:
        cited = tuple(dict.fromkeys(_ID.findall(m.group("ids"))))
    if a is not None:
        return text[a.end() :].strip(), cited
    if m is not None:
        return (text[: m.start()] + text[m.end() :]).strip(), cited
    return text.strip(), cited


# ---- Reflector -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Reflection:
    diagnosis: str
    insights: tuple[str, ...]
    tags: tuple[Tag, ...]


def reflector_prompt(playbook: Playbook, generations: Sequence[Generation]) -> str:
    lines = [
        REFLECTOR_MARKER,
        "The Generator answered the requests below using a playbook. For each, you see the",
        "answer, the bullets it cited and the evaluator's feedback. Diagnose what went wrong,",
        "state the transferable lessons (general advice that helps other requests, not",
        "facts about one request), and tag each cited bullet helpful or harmful.",
        "",
    ]
    for k, g in enumerate(generations, start=1):
        lines += [f"### Example {k}", "Request:", _FENCE, g.question, _FENCE, "Answer:"]
        lines += [_FENCE, g.answer, _FENCE, "Cited bullets:"]
        cited = [playbook.get(b) for b in g.cited]
        lines += [f"[{b.id}] {b.content}" for b in cited if b is not None] or ["(none)"]
        lines += [f"Score: {g.score:.2f}", "Feedback:", _FENCE, g.feedback, _FENCE, ""]
    lines += [
        "Reply with one JSON object in a ```json fence:",
        '{"diagnosis": "<what went wrong>", "key_insights": ["<lesson>", ...],',
        ' "bullet_tags": [{"id": "<cited bullet id>", "tag": "helpful" | "harmful"}, ...]}',
    ]
    return "\n".join(lines)


def parse_reflector_answer(text: str, finish_reason: str = "stop") -> Parsed[Reflection]:
    obj = _json_object(text, finish_reason)
    if obj.value is None:
        return Parsed(None, obj.reason)
    data = obj.value
    diagnosis = data.get("diagnosis", "")
    insights = data.get("key_insights", [])
    raw_tags = data.get("bullet_tags", [])
    if not isinstance(diagnosis, str):
        return Parsed(None, "reflector: 'diagnosis' must be a string")
    if not isinstance(insights, list) or not all(isinstance(i, str) for i in insights):
        return Parsed(None, "reflector: 'key_insights' must be a list of strings")
    if not isinstance(raw_tags, list):
        return Parsed(None, "reflector: 'bullet_tags' must be a list")
    tags: list[Tag] = []
    for k, t in enumerate(raw_tags):
        if not isinstance(t, Mapping) or not isinstance(t.get("id"), str):
            return Parsed(None, f"reflector: bullet_tags[{k}] needs a string 'id'")
        verdict = t.get("tag")
        if verdict == "neutral":
            continue
        if verdict not in ("helpful", "harmful"):
            return Parsed(None, f"reflector: bullet_tags[{k}].tag must be 'helpful' or 'harmful'")
        tags.append(Tag(t["id"], verdict))
    kept = tuple(" ".join(i.split()) for i in insights if i.strip())
    return Parsed(Reflection(diagnosis.strip(), kept, tuple(tags)))


# ---- Curator ---------------------------------------------------------------------
def curator_prompt(playbook: Playbook, reflection: Reflection) -> str:
    sections = ", ".join(playbook.sections) or "(none yet)"
    lines = [
        CURATOR_MARKER,
        "Keep the playbook useful and short. Read the current playbook and the Reflector's",
        "lessons, and propose operations that add only what the playbook is missing:",
        '- {"type": "ADD", "section": "<section>", "content": "<one-line bullet>"}',
        '- {"type": "UPDATE", "id": "<bullet id>", "content": "<new text>"}',
        '- {"type": "MERGE", "ids": ["<id>", "<id>", ...], "content": "<merged text>"}',
        '- {"type": "DELETE", "id": "<bullet id>"}',
        "Never invent ids for new bullets: they are assigned when the operations are applied.",
        f"Sections: {sections}.",
        "",
        "Current playbook:",
        _FENCE,
        playbook.render().rstrip("\n"),
        _FENCE,
        "",
        "Reflector's diagnosis:",
        _FENCE,
        reflection.diagnosis or "(none)",
        _FENCE,
        "Reflector's lessons:",
        *([f"- {i}" for i in reflection.insights] or ["(none)"]),
        "",
        "Reply with one JSON object in a ```json fence:",
        '{"reasoning": "<why>", "operations": [<operation>, ...]}',
    ]
    return "\n".join(lines)


def parse_curator_answer(text: str, finish_reason: str = "stop") -> Parsed[tuple[Operation, ...]]:
    obj = _json_object(text, finish_reason)
    if obj.value is None:
        return Parsed(None, obj.reason)
    raw = obj.value.get("operations")
    if not isinstance(raw, list):
        return Parsed(None, "curator: the JSON object has no 'operations' list")
    ops: list[Operation] = []
    for k, item in enumerate(raw):
        op = _operation(item)
        if isinstance(op, str):
            return Parsed(None, f"curator: operations[{k}]: {op}")
        ops.append(op)
    return Parsed(tuple(ops))


def _operation(item: Any) -> Operation | str:
    """The operation ``item`` describes, or what is wrong with it."""
    if not isinstance(item, Mapping):
        return "not a JSON object"
    kind = str(item.get("type", "")).upper()

    def text(key: str) -> str | None:
        value = item.get(key)
        return " ".join(value.split()) if isinstance(value, str) and value.strip() else None

    if kind == "ADD":
        section, content = text("section"), text("content")
        if section is None or content is None:
            return "ADD needs a non-empty 'section' and 'content'"
        return Add(section, content)
    if kind == "UPDATE":
        bid, content = text("id"), text("content")
        if bid is None or content is None:
            return "UPDATE needs an 'id' and a non-empty 'content'"
        return Update(bid, content)
    if kind == "MERGE":
        ids, content = item.get("ids"), text("content")
        if (
            not isinstance(ids, list)
            or len(ids) < 2
            or not all(isinstance(i, str) and i.strip() for i in ids)
        ):
            return "MERGE needs 'ids', a list of at least two bullet ids"
        if content is None:
            return "MERGE needs a non-empty 'content'"
        return Merge(tuple(dict.fromkeys(i.strip() for i in ids)), content)
    if kind == "DELETE":
        bid = text("id")
        if bid is None:
            return "DELETE needs an 'id'"
        return Delete(bid)
    return f"unknown operation type {item.get('type')!r} (use ADD, UPDATE, MERGE or DELETE)"


_JSON_FENCE = re.compile(r"```(?:json)?[ \t]*\n(?P<body>.*?)(?:\n```|\Z)", re.DOTALL)


def _json_object(text: str, finish_reason: str) -> Parsed[dict[str, Any]]:
    """The one JSON object of an answer: the fenced block, else the outermost braces."""
    candidates = [m.group("body") for m in _JSON_FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if start >= 0 and end > start:
        candidates.append(text[start : end + 1])
    cut = " (the answer was cut off: finish_reason=length)" if finish_reason == "length" else ""
    if not candidates:
        return Parsed(None, f"no JSON object in the answer{cut}")
    error = ""
    for body in candidates:
        try:
            value = json.loads(body)
        except json.JSONDecodeError as exc:
            error = f"invalid JSON ({exc.msg} at line {exc.lineno}){cut}"
            continue
        if isinstance(value, dict):
            return Parsed(value)
        error = f"the JSON is a {type(value).__name__}, not an object{cut}"
    return Parsed(None, error)
