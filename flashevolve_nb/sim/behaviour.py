"""Scripted model behaviour: what the simulated model answers, decided from the prompt alone.

Rule one of the simulator: the engine sends exactly the prompts it would send
a real model, and the simulator *reads* them. There is no side channel, so
the behaviour here sees only the messages:

- a **reflection prompt** (it contains ``REFLECTION_MARKER``): parse the
  current text and the examples' feedback out of it, map the feedback
  sentences back to rules, and propose the current text plus wording for one
  or two violated rules it does not state yet (replacing a sentence that
  states a conflicting rule); sometimes add a non-transferable sentence about
  one example's topic; rarely answer malformed (no fence) or truncated.
- a **task conversation** (system + user): decide rule by rule whether to
  comply (likely when the system prompt states the rule, unlikely otherwise,
  less likely when the prompt is long or contradicts itself) and write an
  answer about the request's topic that keeps exactly those rules.
- anything else: a short generic answer, never an exception.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from flashevolve_nb.llm.protocol import FinishReason, Message
from flashevolve_nb.repair.prompt import REPAIR_MARKER
from flashevolve_nb.sim.answers import compose_answer
from flashevolve_nb.sim.lengths import CallKind, LengthModel
from flashevolve_nb.sim.repair import REPAIR
from flashevolve_nb.sim.rulebook import topic_of
from flashevolve_nb.sim.rules import CONFLICTS, RULES, RULES_BY_ID, conflicts_with, stated_rules
from flashevolve_nb.workloads.gepa.prompts import CURRENT_TEXT_HEADING, REFLECTION_MARKER, fence

__all__ = [
    "REFLECTION",
    "TASK",
    "ReflectionModel",
    "ReflectionRead",
    "Reply",
    "TaskModel",
    "read_reflection_prompt",
    "respond",
]


@dataclass(frozen=True, slots=True)
class Reply:
    """What the scripted model says; the backend adds lengths and timing."""

    text: str
    kind: CallKind
    finish_reason: FinishReason = "stop"
    lengths: LengthModel | None = None
    """How long the answer is counted as (None: the call kind's usual lengths)."""


@dataclass(frozen=True, slots=True)
class TaskModel:
    """How faithfully the simulated task model follows its system prompt."""

    p_stated: float = 0.92
    p_unstated: float = 0.15
    long_prompt_words: int = 120
    """Beyond this many words, compliance with stated rules drops linearly..."""
    long_prompt_slope: float = 0.0015
    """...by this much per extra word..."""
    p_stated_floor: float = 0.6
    """...down to this floor."""
    conflict_factor: float = 0.9
    """Compliance with stated rules is multiplied by this per contradiction stated."""

    def p_comply_stated(self, system_prompt: str) -> float:
        extra = max(0, len(system_prompt.split()) - self.long_prompt_words)
        p = max(self.p_stated_floor, self.p_stated - self.long_prompt_slope * extra)
        stated = stated_rules(system_prompt)
        return p * self.conflict_factor ** sum(1 for pair in CONFLICTS if pair <= stated)

    def complied(self, system_prompt: str, rng: random.Random) -> frozenset[str]:
        """The rules this answer will keep."""
        stated = stated_rules(system_prompt)
        p_stated = self.p_comply_stated(system_prompt)
        # of a contradictory pair the model can follow at most one: pick which at random
        dropped = {
            rng.choice(sorted(pair)) for pair in sorted(CONFLICTS, key=sorted) if pair <= stated
        }
        complied: set[str] = set()
        for rule in RULES:
            p = p_stated if rule.id in stated else self.p_unstated
            if (
                rng.random() < p
                and rule.id not in dropped
                and not conflicts_with(rule.id) & complied
            ):
                complied.add(rule.id)
        return frozenset(complied)

    def answer(self, system_prompt: str, request: str, rng: random.Random) -> str:
        topic = topic_of(request)
        complied = self.complied(system_prompt, rng)
        return compose_answer(topic.name if topic else "this topic", complied, rng)


@dataclass(frozen=True, slots=True)
class ReflectionRead:
    """What the reflection model understood from a reflection prompt."""

    current_text: str
    inputs: tuple[str, ...]
    feedback: tuple[str, ...]

    def violated(self) -> Counter[str]:
        """How often each rule was named as violated in the examples' feedback."""
        by_sentence = {rule.feedback: rule.id for rule in RULES}
        counts: Counter[str] = Counter()
        for block in self.feedback:
            for line in block.splitlines():
                rule_id = by_sentence.get(line.strip())
                if rule_id is not None:
                    counts[rule_id] += 1
        return counts


_OPEN = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[^\n`]*$", re.MULTILINE)


def _fenced_after(text: str, pos: int) -> tuple[str, int] | None:
    """The first fenced block starting at or after ``pos``, and where it ends."""
    m = _OPEN.search(text, pos)
    if m is None:
        return None
    marker = m.group(1)
    close = re.compile(rf"^[ \t]{{0,3}}{re.escape(marker)}(?!{re.escape(marker[0])})[ \t]*$", re.M)
    c = close.search(text, m.end())
    if c is None:
        return text[m.end() + 1 :], len(text)
    return text[m.end() + 1 : c.start()].rstrip("\n"), c.end()


def read_reflection_prompt(prompt: str) -> ReflectionRead:
    """Parse the current text and the examples out of a reflection prompt (leniently)."""
    current = ""
    heading = prompt.find(CURRENT_TEXT_HEADING)
    if heading >= 0:
        found = _fenced_after(prompt, heading)
        if found is not None:
            current = found[0]
    inputs: list[str] = []
    feedback: list[str] = []
    starts = [m.start() for m in re.finditer(r"^### Example \d+", prompt, re.MULTILINE)]
    for i, start in enumerate(starts):
        section = prompt[start : starts[i + 1] if i + 1 < len(starts) else len(prompt)]
        for label, into in (("Input:", inputs), ("Feedback:", feedback)):
            at = section.find(label)
            found = _fenced_after(section, at) if at >= 0 else None
            if found is not None:
                into.append(found[0])
    return ReflectionRead(current, tuple(inputs), tuple(feedback))


_REWORDINGS = (
    "Read the request carefully before answering.",
    "Stay on the topic of the request.",
    "Be clear and specific.",
    "Check your answer against these instructions before replying.",
)


def _drop_sentences(text: str, rule_ids: frozenset[str]) -> str:
    """``text`` without the sentences that state any of ``rule_ids``."""
    kept_lines = []
    for line in text.splitlines():
        sentences = re.split(r"(?<=[.!?])\s+", line)
        kept = [s for s in sentences if not any(RULES_BY_ID[r].states(s) for r in rule_ids)]
        if any(s.strip() for s in kept) or not line.strip():
            kept_lines.append(" ".join(kept))
    return "\n".join(kept_lines).strip()


@dataclass(frozen=True, slots=True)
class ReflectionModel:
    """How the simulated reflection model edits the text it is shown."""

    p_two_rules: float = 0.5
    p_specific: float = 0.25
    """Chance of adding a non-transferable sentence about one example's topic."""
    p_malformed: float = 0.03
    """Chance of answering without any fenced block."""
    p_truncated: float = 0.02
    """Chance of being cut off inside the block (finish reason "length")."""

    def propose(self, read: ReflectionRead, rng: random.Random) -> tuple[str, bool]:
        """The new text, and whether it adds rules (False: a mere rewording)."""
        text = read.current_text.strip()
        stated = stated_rules(text)
        violated = read.violated()
        candidates = sorted(
            (r for r in violated if r not in stated), key=[x.id for x in RULES].index
        )
        picks: list[str] = []
        want = 2 if rng.random() < self.p_two_rules else 1
        while candidates and len(picks) < want:
            rule_id = rng.choices(candidates, weights=[violated[r] for r in candidates])[0]
            picks.append(rule_id)
            candidates = [
                r for r in candidates if r != rule_id and r not in conflicts_with(rule_id)
            ]
        for rule_id in picks:
            clashing = conflicts_with(rule_id) & stated_rules(text)
            if clashing:
                text = _drop_sentences(text, clashing)
            text = f"{text}\n{rng.choice(RULES_BY_ID[rule_id].phrasings)}".strip()
        if rng.random() < self.p_specific and read.inputs:
            topic = topic_of(rng.choice(read.inputs))
            if topic is not None:
                specific = f"When the request is about {topic.name}, mention {topic.detail}."
                if specific not in text:
                    text = f"{text}\n{specific}".strip()
        if picks:
            return text, True
        return self._reword(text, rng), False

    def _reword(self, text: str, rng: random.Random) -> str:
        stated = sorted(stated_rules(text), key=[x.id for x in RULES].index)
        if stated and rng.random() < 0.5:
            rule = RULES_BY_ID[rng.choice(stated)]
            for phrasing in rule.phrasings:
                if phrasing in text:
                    others = [p for p in rule.phrasings if p != phrasing]
                    return text.replace(phrasing, rng.choice(others), 1) if others else text
        fresh = [s for s in _REWORDINGS if s not in text]
        return f"{text}\n{rng.choice(fresh)}".strip() if fresh else text

    def answer(self, prompt: str, rng: random.Random) -> Reply:
        new_text, adds_rules = self.propose(read_reflection_prompt(prompt), rng)
        prose = (
            "The feedback shows output rules the assistant keeps missing, so the new "
            "text states them explicitly."
            if adds_rules
            else "The current text mostly works; here is a slightly clearer version."
        )
        u = rng.random()
        if u < self.p_malformed:
            return Reply(f"{prose}\n\n{new_text}", "reflection")
        if u < self.p_malformed + self.p_truncated:
            opened = fence(new_text).split("\n", 1)[0]
            cut = new_text[: max(1, len(new_text) // 2)]
            return Reply(f"{prose}\n\n{opened}\n{cut}", "reflection", "length")
        return Reply(f"{prose}\n\n{fence(new_text)}", "reflection")


TASK = TaskModel()
REFLECTION = ReflectionModel()

_GENERIC = (
    "Here is a brief answer. The main point is to start with the essentials, check the "
    "details that matter to you, and adjust as you learn more.",
    "Thanks for the question. In short, it depends on your goals; a small first step and a "
    "quick review afterwards usually work well.",
    "A short answer: focus on what is known, note what is uncertain, and decide on the next "
    "concrete step.",
)


def respond(
    messages: Sequence[Message],
    rng: random.Random,
    task: TaskModel = TASK,
    reflection: ReflectionModel = REFLECTION,
) -> Reply:
    """The scripted answer to a conversation, from its text alone."""
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    systems = [m.get("content", "") for m in messages if m.get("role") == "system"]
    if any(REPAIR_MARKER in u for u in users):
        prompt = next(u for u in users if REPAIR_MARKER in u)
        return Reply(REPAIR.answer(prompt, rng), "reflection")
    if any(REFLECTION_MARKER in u for u in users):
        prompt = next(u for u in users if REFLECTION_MARKER in u)
        return reflection.answer(prompt, rng)
    if systems and users and messages[-1].get("role") == "user":
        return Reply(task.answer("\n\n".join(systems), users[-1], rng), "task")
    return Reply(rng.choice(_GENERIC), "generic")
