"""Scripted ACE roles: the Generator, the Reflector and the Curator, read from their prompts.

The ACE task is the simulator's rulebook (:mod:`flashevolve_nb.sim.rulebook`):
a playbook bullet that states a hidden rule is what makes the Generator keep
it, as a system prompt sentence does for GEPA. Each role is recognised by the
marker line its real prompt builder puts in the prompt
(:mod:`flashevolve_nb.workloads.ace.prompts`), so the in-process simulated
models (``flashevolve_nb.workloads.ace.simulated``) and the loopback HTTP
server (``flashevolve sim-server``) answer ACE alike (rule one of SIMULATOR.md).

- **Generator**: reads the playbook's bullets, keeps each rule a bullet
  states with high probability (others rarely), answers about the request's
  topic, and cites the bullets whose rules it kept.
- **Reflector**: maps the feedback sentences back to rules, names the most
  frequent violated ones as lessons (in a rule's first phrasing), sometimes
  adds a lesson about one request's topic (not transferable), tags a cited
  bullet harmful when it states a rule that conflicts with a violated one and
  helpful when its example scored well; rarely answers malformed.
- **Curator**: adds a lesson only if its playbook does not already say it
  (checked against the playbook it was shown, which may be old: the
  duplicate hazard), deletes a bullet tagged harmful more than helpful, merges
  two bullets stating the same rule, sometimes rewords one; rarely answers
  malformed or cut off.

Only the prompt formats are imported from the workload (markers, the playbook
parser), never the workload itself, which imports the simulator.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flashevolve_nb.llm.protocol import Message
from flashevolve_nb.sim.answers import compose_answer
from flashevolve_nb.sim.behaviour import TASK, Reply, TaskModel
from flashevolve_nb.sim.rulebook import topic_of
from flashevolve_nb.sim.rules import RULES, RULES_BY_ID, conflicts_with, stated_rules
from flashevolve_nb.workloads.ace.playbook import Playbook, PlaybookFormatError
from flashevolve_nb.workloads.ace.prompts import (
    CURATOR_MARKER,
    GENERATOR_MARKER,
    PLAYBOOK_HEADING,
    REFLECTOR_MARKER,
)

__all__ = [
    "CURATOR",
    "FORMATTING",
    "GENERATOR",
    "GUIDELINES",
    "REFLECTOR",
    "CuratorModel",
    "GeneratorModel",
    "ReflectorModel",
    "respond_ace",
]

FORMATTING = "formatting"
GUIDELINES = "guidelines"
"""The playbook sections the simulated Curator writes to (rules / everything else)."""


def _fenced_after(text: str, heading: str) -> str | None:
    """The body of the first ``` fence after ``heading``."""
    at = text.find(heading)
    if at < 0:
        return None
    start = text.find("```", at)
    if start < 0:
        return None
    body_start = text.find("\n", start) + 1
    end = text.find("\n```", body_start)
    return text[body_start:] if end < 0 else text[body_start:end]


def _read_playbook(text: str | None) -> Playbook:
    try:
        return Playbook.parse(text or "")
    except PlaybookFormatError:
        return Playbook()


_RULE_BY_FEEDBACK = {rule.feedback: rule.id for rule in RULES}
_RULE_ORDER = [r.id for r in RULES]


@dataclass(frozen=True, slots=True)
class GeneratorModel:
    task: TaskModel = TASK

    def answer(self, system: str, request: str, rng: random.Random) -> Reply:
        playbook = _read_playbook(_fenced_after(system, PLAYBOOK_HEADING))
        # What the model takes in is the advice itself, not the ids and counters.
        advice = "\n".join(b.content for b in playbook)
        complied = self.task.complied(advice, rng)
        topic = topic_of(request)
        answer = compose_answer(topic.name if topic else "this topic", complied, rng)
        cited = [b.id for b in playbook if stated_rules(b.content) & complied]
        return Reply(f"BULLETS: {', '.join(cited) or 'none'}\nANSWER:\n{answer}", "task")


@dataclass(frozen=True, slots=True)
class _Example:
    request: str
    cited: tuple[tuple[str, str], ...]
    score: float
    violated: tuple[str, ...]


def _read_examples(prompt: str) -> list[_Example]:
    examples = []
    starts = [m.start() for m in re.finditer(r"^### Example \d+", prompt, re.MULTILINE)]
    for i, start in enumerate(starts):
        section = prompt[start : starts[i + 1] if i + 1 < len(starts) else len(prompt)]
        request = _fenced_after(section, "Request:") or ""
        cited: list[tuple[str, str]] = []
        after = section.find("Cited bullets:")
        score_at = section.find("\nScore:")
        if after >= 0 and score_at > after:
            for line in section[after:score_at].splitlines()[1:]:
                m = re.match(r"^\[([^\]]+)\]\s*(.*)$", line.strip())
                if m:
                    cited.append((m.group(1), m.group(2)))
        m = re.search(r"^Score:\s*([0-9.]+)", section, re.MULTILINE)
        score = float(m.group(1)) if m else 0.0
        feedback = _fenced_after(section, "Feedback:") or ""
        violated = tuple(
            _RULE_BY_FEEDBACK[line.strip()]
            for line in feedback.splitlines()
            if line.strip() in _RULE_BY_FEEDBACK
        )
        examples.append(_Example(request, tuple(cited), score, violated))
    return examples


def _fence_json(obj: Any) -> str:
    return "```json\n" + json.dumps(obj, indent=1) + "\n```"


@dataclass(frozen=True, slots=True)
class ReflectorModel:
    max_lessons: int = 2
    p_specific: float = 0.2
    """Chance of a lesson about one request's topic (not transferable)."""
    p_malformed: float = 0.03

    def answer(self, prompt: str, rng: random.Random) -> Reply:
        examples = _read_examples(prompt)
        violated: Counter[str] = Counter(r for e in examples for r in e.violated)
        ranked = sorted(violated, key=lambda r: (-violated[r], _RULE_ORDER.index(r)))
        lessons = [RULES_BY_ID[r].phrasings[0] for r in ranked[: self.max_lessons]]
        if examples and rng.random() < self.p_specific:
            topic = topic_of(rng.choice(examples).request)
            if topic is not None:
                lessons.append(f"When the request is about {topic.name}, mention {topic.detail}.")
        tags = []
        for e in examples:
            clashing = (
                set().union(*(conflicts_with(r) for r in e.violated)) if e.violated else set()
            )
            for bid, content in e.cited:
                if stated_rules(content) & clashing:
                    tags.append({"id": bid, "tag": "harmful"})
                elif e.score >= 0.75:
                    tags.append({"id": bid, "tag": "helpful"})
        diagnosis = (
            f"The answers missed {len(violated)} kind(s) of output rule."
            if violated
            else "The answers kept every rule that was checked."
        )
        body = {"diagnosis": diagnosis, "key_insights": lessons, "bullet_tags": tags}
        if rng.random() < self.p_malformed:
            return Reply(f"{diagnosis} Lessons: {'; '.join(lessons)}", "reflection")
        return Reply(f"Here is my analysis.\n\n{_fence_json(body)}", "reflection")


def _lessons(prompt: str) -> list[str]:
    at = prompt.find("Reflector's lessons:")
    if at < 0:
        return []
    lessons = []
    for line in prompt[at:].splitlines()[1:]:
        if not line.startswith("- "):
            break
        lessons.append(line[2:].strip())
    return lessons


@dataclass(frozen=True, slots=True)
class CuratorModel:
    p_update: float = 0.1
    p_malformed: float = 0.03
    p_truncated: float = 0.02

    def operations(
        self, playbook: Playbook, lessons: Sequence[str], rng: random.Random
    ) -> list[dict[str, Any]]:
        ops: list[dict[str, Any]] = []
        covered = stated_rules("\n".join(b.content for b in playbook))
        for lesson in lessons:
            rules = stated_rules(lesson)
            if playbook.same_as(lesson) is not None or (rules and rules <= covered):
                continue  # "add only what is missing", judged on the playbook it was shown
            section = FORMATTING if rules else GUIDELINES
            ops.append({"type": "ADD", "section": section, "content": lesson})
            covered |= rules
        for b in playbook:
            if b.harmful >= 2 and b.harmful > b.helpful:
                ops.append({"type": "DELETE", "id": b.id})
                break
        by_rules: dict[frozenset[str], list[str]] = {}
        for b in playbook:
            rules = stated_rules(b.content)
            if len(rules) == 1:
                by_rules.setdefault(rules, []).append(b.id)
        for ids in by_rules.values():
            if len(ids) >= 2:
                first = playbook.get(ids[0])
                assert first is not None
                ops.append({"type": "MERGE", "ids": ids, "content": first.content})
                break
        rule_bullets = [b for b in playbook if len(stated_rules(b.content)) == 1]
        if rule_bullets and rng.random() < self.p_update:
            b = rng.choice(rule_bullets)
            (rule_id,) = stated_rules(b.content)
            others = [p for p in RULES_BY_ID[rule_id].phrasings if p != b.content]
            if others:
                ops.append({"type": "UPDATE", "id": b.id, "content": rng.choice(others)})
        return ops

    def answer(self, prompt: str, rng: random.Random) -> Reply:
        playbook = _read_playbook(_fenced_after(prompt, "Current playbook:"))
        ops = self.operations(playbook, _lessons(prompt), rng)
        body = _fence_json({"reasoning": "Add the missing lessons; tidy up.", "operations": ops})
        u = rng.random()
        if u < self.p_malformed:
            return Reply("I would add the lessons as new bullets.", "reflection")
        if u < self.p_malformed + self.p_truncated:
            return Reply(body[: max(10, len(body) // 2)], "reflection", "length")
        return Reply(body, "reflection")


GENERATOR = GeneratorModel()
REFLECTOR = ReflectorModel()
CURATOR = CuratorModel()


def respond_ace(messages: Sequence[Message], rng: random.Random) -> Reply | None:
    """The scripted answer of an ACE role, or None for a conversation of no ACE role."""
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    systems = [m.get("content", "") for m in messages if m.get("role") == "system"]
    if any(CURATOR_MARKER in u for u in users):
        return CURATOR.answer(next(u for u in users if CURATOR_MARKER in u), rng)
    if any(REFLECTOR_MARKER in u for u in users):
        return REFLECTOR.answer(next(u for u in users if REFLECTOR_MARKER in u), rng)
    system = "\n\n".join(systems)
    if GENERATOR_MARKER in system and users and messages[-1].get("role") == "user":
        return GENERATOR.answer(system, users[-1], rng)
    return None
