"""Scripted Meta-Harness roles: the support-ticket task, its task model and the proposer.

**Task** (:class:`TicketTask`): each ticket mentions one cue word (``refund``,
``courier``...) that decides its label (``billing``, ``shipping``...). A
harness stores labelled tickets and shows the model some of them.

**Task model** (:class:`TicketModel`), reading only the messages (rule one of
SIMULATOR.md): it knows a ticket's label when a shown example shares its cue
word; otherwise it guesses, better when the instructions list the labels
(some cues are guessable from the label names) and often outside the label
set when they do not; more than eight examples distract it; it keeps the
``Label: <label>`` format almost always when told, often not otherwise. So
retrieval count, example selection, instructions and self-consistency all
matter, and more context buys accuracy: the front of accuracy against
context tokens is real.

**Proposer** (:class:`ProposerModel`), reading only its prompt: finds the
parent's knobs (:mod:`flashevolve_nb.workloads.meta_harness.template`) and
its traces in the history, picks an edit the traces call for (format
failures: a format hint; answers outside the label set: list the labels;
wrong labels: retrieve more, by similarity), or a random one (retrieval
count, samples, per-label memory), avoiding knob settings the history shows
were tried. Now and then it answers without a code block, is cut off, writes
a syntax error or a harness that crashes, so every failure path is exercised.

Both are recognised by markers their prompt builders write
(:func:`respond_meta_harness`), so the in-process simulated models
(``flashevolve_nb.workloads.meta_harness.simulated``) and the loopback HTTP
server (``flashevolve sim-server``) answer alike. Only the prompt formats are
imported from the workload (markers, the harness template), never the
workload itself, which imports the simulator.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from flashevolve_nb.llm.protocol import FinishReason, Message
from flashevolve_nb.sim.behaviour import Reply
from flashevolve_nb.sim.lengths import LengthModel
from flashevolve_nb.workloads.meta_harness.prompts import PARENT_HEADING, PROPOSER_MARKER
from flashevolve_nb.workloads.meta_harness.template import TASK_MARKER, Knobs, read_knobs, render

__all__ = [
    "FORMAT_HINT",
    "LABELS",
    "PROPOSER",
    "PROPOSER_LENGTHS",
    "TASK_MODEL",
    "ProposerModel",
    "Scored",
    "Ticket",
    "TicketModel",
    "TicketTask",
    "respond_meta_harness",
    "respond_ticket",
]

LABELS: dict[str, tuple[tuple[str, float], ...]] = {
    "billing": (("invoice", 0.6), ("refund", 0.5), ("charge", 0.3), ("receipt", 0.2)),
    "shipping": (("courier", 0.5), ("parcel", 0.4), ("tracking", 0.3), ("customs", 0.1)),
    "account": (("password", 0.6), ("login", 0.5), ("username", 0.3), ("avatar", 0.1)),
    "technical": (("crash", 0.5), ("freeze", 0.3), ("firmware", 0.2), ("overheating", 0.1)),
    "returns": (("exchange", 0.4), ("damaged", 0.3), ("warranty", 0.2), ("scratch", 0.1)),
    "sales": (("quote", 0.4), ("discount", 0.4), ("wholesale", 0.2), ("coupon", 0.2)),
    "privacy": (("consent", 0.4), ("cookies", 0.2), ("gdpr", 0.5), ("erasure", 0.1)),
    "feedback": (("suggestion", 0.5), ("compliment", 0.4), ("survey", 0.2), ("idea", 0.1)),
}
"""Label -> its cue words, each with how guessable it is from the label names alone."""

_CUE: dict[str, tuple[str, float]] = {c: (lab, g) for lab, cues in LABELS.items() for c, g in cues}
_OUTSIDE = ("payments", "delivery", "support", "hardware", "complaint", "legal", "other")
_FILLER = (
    "yesterday", "again", "urgent", "order", "store", "today", "weekend", "family",
    "office", "phone", "laptop", "gift", "morning", "evening", "colleague", "neighbour",
    "manager", "website", "email", "message", "friday", "monday", "please", "thanks",
)  # fmt: skip
_FRAMES = (
    "Hello, I have a question about the {cue} for my {a} {b}.",
    "My {a} {cue} is a problem since {b}, what should I do?",
    "Could you look at the {cue}? It concerns my {a} and the {b}.",
    "{a} {b}: there is something odd with the {cue}.",
)
_LABEL_RE = re.compile(r"Label:\s*([A-Za-z_-]+)")
_EXAMPLE_RE = re.compile(r"^Input: (.*)\nOutput: Label: ([A-Za-z_-]+)", re.MULTILINE)
_WORD = re.compile(r"[a-z]+")
FORMAT_HINT = "Answer with 'Label: <label>' only."


@dataclass(frozen=True, slots=True)
class Ticket:
    id: str
    input: str
    output: str
    """The true label."""


@dataclass(frozen=True, slots=True)
class Scored:
    score: float
    feedback: str


class TicketTask:
    """Tickets with hidden labels; train, val and test splits drawn from one seed."""

    name = "tickets"

    def __init__(self, seed: int = 0, n_train: int = 40, n_val: int = 30, n_test: int = 30):
        rng = random.Random(f"tickets:{seed}")
        cues = sorted(_CUE)

        def draw(prefix: str, n: int) -> list[Ticket]:
            out = []
            for k in range(n):
                cue = rng.choice(cues)
                a, b = rng.sample(_FILLER, 2)
                text = rng.choice(_FRAMES).format(cue=cue, a=a, b=b)
                out.append(Ticket(f"{prefix}-{k:03d}", text[0].upper() + text[1:], _CUE[cue][0]))
            return out

        self.train = draw("train", n_train)
        self.val = draw("val", n_val)
        self.test = draw("test", n_test)

    def answer_of(self, output: str) -> str:
        found = _LABEL_RE.findall(output)
        return found[-1].lower() if found else output.strip().lower()

    def score(self, instance: Any, output: str) -> Scored:
        found = _LABEL_RE.findall(output)
        if not found:
            return Scored(0.0, "answer not in the 'Label: <label>' format")
        label = found[-1].lower()
        if label == instance.output:
            return Scored(1.0, "correct")
        if label in LABELS:
            return Scored(0.0, f"wrong label '{label}'; expected '{instance.output}'")
        return Scored(0.0, f"'{label}' is not one of the labels; expected '{instance.output}'")


@dataclass(frozen=True, slots=True)
class TicketModel:
    p_known: float = 0.93
    p_blind: float = 0.12
    distraction: float = 0.03
    """Accuracy lost per example shown beyond eight."""
    p_format_told: float = 0.97
    p_format_untold: float = 0.6

    def answer(self, messages: Sequence[Message], rng: random.Random) -> Reply:
        request = next(
            (m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), ""
        )
        context = "\n".join(m.get("content", "") for m in messages)
        cue = next((w for w in _WORD.findall(request.lower()) if w in _CUE), None)
        examples = [(i, lab) for i, lab in _EXAMPLE_RE.findall(context) if i not in request]
        listed_line = re.search(r"^Labels: (.*)$", context, re.MULTILINE)
        listed = [x.strip() for x in listed_line.group(1).split(",")] if listed_line else []
        truth, guessable = _CUE[cue] if cue else (rng.choice(sorted(LABELS)), 0.0)
        known = cue is not None and any(
            cue in _WORD.findall(i.lower()) and lab == truth for i, lab in examples
        )
        if known:
            p = self.p_known
        elif truth in listed:
            p = max(self.p_blind, guessable)
        else:
            p = self.p_blind
        p -= self.distraction * max(0, len(examples) - 8)
        if rng.random() < p:
            label = truth
        elif listed:
            label = rng.choice([x for x in listed if x != truth] or listed)
        else:
            label = rng.choice(_OUTSIDE) if rng.random() < 0.6 else rng.choice(sorted(LABELS))
        told = FORMAT_HINT in context
        if rng.random() < (self.p_format_told if told else self.p_format_untold):
            return Reply(f"Label: {label}", "generic")
        return Reply(f"I would file this under {label}, I think.", "generic")


def _fenced(text: str, heading: str) -> str | None:
    at = text.find(heading)
    if at < 0:
        return None
    start = text.find("```", at)
    if start < 0:
        return None
    body = text.find("\n", start) + 1
    end = text.find("\n```", body)
    return text[body:] if end < 0 else text[body:end]


@dataclass(frozen=True, slots=True)
class _Seen:
    tried: frozenset[Knobs]
    traces: Counter[str]
    parent: Knobs | None
    accuracy: float


def _read_prompt(prompt: str) -> _Seen:
    tried = set()
    for m in re.finditer(r"^### (\S+)/harness\.py$", prompt, re.MULTILINE):
        knobs = read_knobs(_fenced(prompt[m.start() :], "harness.py") or "")
        if knobs is not None:
            tried.add(knobs)
    head = re.search(rf"^{PARENT_HEADING} (\S+) \(accuracy ([0-9.na]+)", prompt, re.MULTILINE)
    parent_id = head.group(1) if head else ""
    accuracy = float(head.group(2)) if head and head.group(2) != "nan" else 0.0
    parent = read_knobs(_fenced(prompt, PARENT_HEADING) or "")
    traces: Counter[str] = Counter()
    found = re.search(rf"^### (\d+-{re.escape(parent_id)})/traces\.jsonl$", prompt, re.MULTILINE)
    if found:
        for line in (_fenced(prompt[found.start() :], "traces.jsonl") or "").splitlines():
            try:
                feedback = str(json.loads(line).get("feedback", ""))
            except (ValueError, AttributeError):
                continue
            if "format" in feedback:
                traces["format"] += 1
            elif "not one of the labels" in feedback:
                traces["outside"] += 1
            elif feedback.startswith("wrong label"):
                traces["wrong"] += 1
    return _Seen(frozenset(tried), traces, parent, accuracy)


@dataclass(frozen=True, slots=True)
class ProposerModel:
    p_prose: float = 0.04
    p_truncated: float = 0.03
    p_syntax_error: float = 0.02
    p_crashing: float = 0.03

    def edits(self, seen: _Seen, rng: random.Random) -> list[tuple[float, str, Knobs]]:
        k = seen.parent or Knobs()
        t = seen.traces
        out: list[tuple[float, str, Knobs]] = []
        if not k.format_hint:
            out.append((1 + 4 * t["format"], "state the answer format", k.with_(format_hint=True)))
        if not k.list_labels:
            out.append((1 + 4 * t["outside"], "list the labels", k.with_(list_labels=True)))
        if k.selection == "recent":
            out.append((1 + 2 * t["wrong"], "retrieve similar examples",
                        k.with_(selection="similar", retrieve=max(k.retrieve, 2))))  # fmt: skip
        if k.retrieve < 12:
            step = rng.choice((1, 2))
            out.append((1 + t["wrong"], f"show {step} more example(s)",
                        k.with_(retrieve=k.retrieve + step)))  # fmt: skip
        if k.retrieve > 0:
            out.append((1.0 + 2 * seen.accuracy, "show one example fewer",
                        k.with_(retrieve=k.retrieve - 1)))  # fmt: skip
        if k.samples < 5:
            out.append((0.6, "ask for more samples and vote", k.with_(samples=k.samples + 2)))
        if k.samples > 1:
            out.append((1.0, "ask for fewer samples", k.with_(samples=k.samples - 2)))
        out.append((0.5, "cap the memory per label",
                    k.with_(per_label=0 if k.per_label else rng.choice((2, 3)))))  # fmt: skip
        return out

    def answer(self, prompt: str, rng: random.Random) -> Reply:
        seen = _read_prompt(prompt)
        edits = self.edits(seen, rng)
        fresh = [e for e in edits if e[2] not in seen.tried]
        if fresh:
            _, why, knobs = rng.choices(fresh, weights=[w for w, _, _ in fresh], k=1)[0]
        else:  # every single edit was tried: combine two
            _, first, base = rng.choice(edits)
            _, second, knobs = rng.choice(self.edits(replace(seen, parent=base), rng))
            why = f"{first} and {second}"
        code = render(knobs)
        u = rng.random()
        finish: FinishReason = "stop"
        if u < self.p_syntax_error:
            code = code.replace(
                "def build_context(task, memory):", "def build_context(task, memory)"
            )
        elif u < self.p_syntax_error + self.p_crashing:
            code = code.replace(
                "shown = _retrieve(task, memory)", "shown = _retreive(task, memory)"
            )
        body = f"I will {why}: the traces point there.\n\n```python\n{code}```\n"
        u = rng.random()
        if u < self.p_prose:
            prose = f"I will {why}; the rest of the harness stays as it is."
            return Reply(prose, "reflection", lengths=PROPOSER_LENGTHS)
        if u < self.p_prose + self.p_truncated:
            return Reply(body[: len(body) // 2], "reflection", "length", PROPOSER_LENGTHS)
        return Reply(body, "reflection", finish, PROPOSER_LENGTHS)


PROPOSER_LENGTHS = LengthModel(components=((1.0, 3000.0, 0.5),), cap=12_000, floor=400)
"""What a proposer writes, counted as a coding agent's whole turn (reading the history,
reasoning, the program): ~40 s at one stream's speed, as the paper's 47 s propose stage."""

TASK_MODEL = TicketModel()
PROPOSER = ProposerModel()


def respond_meta_harness(messages: Sequence[Message], rng: random.Random) -> Reply | None:
    """The scripted answer of the proposer or the ticket model, else None.

    Each is recognised by a marker its prompt builder writes: the proposer
    prompt's first line (:data:`~flashevolve_nb.workloads.meta_harness.prompts.PROPOSER_MARKER`),
    and the instruction line every templated harness puts in its system message
    (:data:`~flashevolve_nb.workloads.meta_harness.template.TASK_MARKER`). A harness
    that drops that line is recognised by :func:`respond_ticket` instead, which the
    in-process model also tries (the loopback server does not: any conversation
    naming a cue word, a GEPA one too, would look like a ticket to it).
    """
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    if any(PROPOSER_MARKER in u for u in users):
        return PROPOSER.answer(next(u for u in users if PROPOSER_MARKER in u), rng)
    systems = [m.get("content", "") for m in messages if m.get("role") == "system"]
    if users and any(TASK_MARKER in s for s in systems):
        return TASK_MODEL.answer(messages, rng)
    return None


def respond_ticket(messages: Sequence[Message], rng: random.Random) -> Reply | None:
    """The ticket model's answer to a conversation whose last request names a cue word."""
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    if users and any(w in _CUE for w in _WORD.findall(users[-1].lower())):
        return TASK_MODEL.answer(messages, rng)
    return None
