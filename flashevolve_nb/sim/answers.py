"""Writing an answer that keeps exactly the rules the simulated model complied with.

The task model decides rule by rule whether it complies (``behaviour``); this
module turns that decision into text about the request's topic, such that the
rulebook's own checkers agree: every complied rule holds and every other rule
is violated (negative rules such as "no commas" get a sentence that breaks
them). The answer is built from blocks (title, summary, body, lists, details,
closing), then laid out (paragraph dividers, the "Answer:" prefix), then
transformed (case, surrounding quotes), in that order, so no step undoes an
earlier one.

One honest exception: "at most 40 words" cannot hold when many other complied
rules each demand their own line. The builder then writes its most compact
answer and the length rule fails, as a real model's would.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass

from flashevolve_nb.sim.rules import CONFLICTS, MAX_WORDS, MIN_WORDS

__all__ = ["compose_answer"]

_LONG = (
    "Learning about {t} starts with a clear goal and a little patience.",
    "Most people find that progress with {t} comes from practice more than talent.",
    "Good sources on {t} explain the basics before the details.",
    "Small mistakes with {t} are normal and easy to fix later.",
    "Local groups often share useful tips about {t} with newcomers.",
    "Safety and planning matter more than equipment when it comes to {t}.",
    "Keep notes as you go so that progress with {t} stays visible.",
    "The history of {t} shows how ideas change over time.",
    "Asking experienced people about {t} saves time and avoids common traps.",
    "A simple plan for {t} beats a perfect plan that never starts.",
    "Checking your results regularly keeps {t} enjoyable and safe.",
    "Budget and time are the usual limits for anyone exploring {t}.",
    "Reading a little every week builds real confidence with {t}.",
    "Sharing what you learn about {t} helps others and deepens your own grasp.",
)
_SHORT = (
    "Start small.",
    "Keep notes.",
    "Ask experts.",
    "Plan ahead.",
    "Stay curious.",
    "Go gradually.",
)


@dataclass(frozen=True, slots=True)
class _Pieces:
    """The fixed texts of one answer style (full or compact)."""

    title: str
    tldr: str
    bullets: tuple[str, ...]
    numbered: tuple[str, ...]
    tagged: str
    placeholders: str
    quote: str
    thanks: str
    postscript: str


def _pieces(topic: str, compact: bool) -> _Pieces:
    cap = topic[:1].upper() + topic[1:]
    if compact:
        return _Pieces(
            title="<<Guide>>",
            tldr="TL;DR: Start small.",
            bullets=("* Start small", "* Ask experts", "* Review often"),
            numbered=("1. Plan", "2. Practise", "3. Review"),
            tagged="<answer>Start small.</answer>",
            placeholders="For [name] at [place].",
            quote="> Well begun.",
            thanks="Thanks.",
            postscript="P.S. Enjoy.",
        )
    return _Pieces(
        title=f"<<{cap}>>",
        tldr=f"TL;DR: Patience and steady practice pay off with {topic}.",
        bullets=(
            "* Start with small and safe steps",
            "* Ask people with experience",
            "* Review what worked and adjust",
        ),
        numbered=(
            "1. Set a clear goal",
            "2. Practise a little each week",
            "3. Review your progress",
        ),
        tagged=f"<answer>Learn about {topic} step by step.</answer>",
        placeholders="Adapt this for [name] before [deadline].",
        quote="> Well begun is half finished.",
        thanks="Thank you for asking.",
        postscript="P.S. Enjoy the journey.",
    )


def _chatty(c: frozenset[str]) -> str | None:
    """One sentence breaking every negative rule the model did not comply with."""
    comma = "no_commas" not in c
    bang = "no_exclamation" not in c
    parts = ["I like it" if "no_first_person" not in c else "It helps"]
    if "no_very" not in c:
        parts.append("very much")
    if "digits" not in c:
        parts.append("in three ways")
    if parts == ["It helps"] and not (comma or bang):
        return None
    if comma and len(parts) == 1:
        parts.insert(0, "Yes")
    sentence = (", " if comma else " ").join(parts)
    return sentence + ("!" if bang else ".")


def _words(text: str) -> int:
    return len(text.split())


class _Builder:
    def __init__(self, topic: str, c: frozenset[str], rng: random.Random) -> None:
        self.topic = topic
        self.c = c
        self.slug = "-".join(topic.lower().split())
        y, m, d = rng.randint(2024, 2026), rng.randint(1, 12), rng.randint(1, 28)
        self.date = f"{y:04d}-{m:02d}-{d:02d}" if "iso_dates" in c else f"{m:02d}/{d:02d}/{y:04d}"
        self.long = [s.format(t=topic) for s in rng.sample(_LONG, len(_LONG))]
        self.short = rng.sample(_SHORT, len(_SHORT))

    def sentences(self, n: int, compact: bool) -> list[str]:
        pool = self.short if compact else self.long
        return [pool[i % len(pool)] for i in range(n)]

    def text(self, body: list[str], compact: bool) -> str:
        c, p = self.c, _pieces(self.topic, compact)
        blocks: list[str] = []
        if "title" in c:
            blocks.append(p.title)
        if "tldr" in c:
            blocks.append(p.tldr)
        if "sections" in c:
            half = max(1, len(body) // 2)
            blocks.append("SECTION 1\n" + " ".join(body[:half]))
            blocks.append("SECTION 2\n" + " ".join(body[half:] or self.sentences(1, True)))
        else:
            blocks.append(" ".join(body))
        if "bullets" in c:
            blocks.append("\n".join(p.bullets))
        if "numbered" in c:
            blocks.append("\n".join(p.numbered))
        details = [f"Due: {self.date}." if compact else f"Next review: {self.date}."]
        if "essential" in c and "highlights" in c:
            details.append("*Patience* is essential and *practice* is essential.")
        elif "essential" in c:
            details.append("Patience is essential and practice is essential.")
        elif "highlights" in c:
            details.append("*Patience* and *practice* matter most.")
        if "placeholders" in c:
            details.append(p.placeholders)
        if "link" in c:
            details.append(f"Source: https://example.org/{self.slug}")
        if "quote_line" in c:
            details.append(p.quote)
        chatty = _chatty(c)
        if chatty is not None:
            details.append(chatty)
        if "answer_tags" in c:
            details.append(p.tagged)
        if "thanks" in c:
            details.append(p.thanks)
        closing = [
            line
            for rule, line in (
                ("postscript", p.postscript),
                ("signature", "-- Assistant"),
                ("end_done", "DONE"),
            )
            if rule in c
        ]
        if "paragraphs" in c:
            blocks.extend(details)
            if closing:
                blocks.append("\n".join(closing))
            while len(blocks) < 3:
                blocks.append(self.sentences(1, True)[0])
            k = len(blocks)
            chunks = ["\n\n".join(blocks[i * k // 3 : (i + 1) * k // 3]) for i in range(3)]
            text = "\n\n***\n\n".join(chunks)
        else:
            blocks.append("\n".join(details))
            if closing:
                blocks.append("\n".join(closing))
            text = "\n\n".join(blocks)
        if "start_answer" in c:
            text = ("Answer:\n" if text.startswith("TL;DR") else "Answer: ") + text
        if "lowercase" in c:
            text = text.lower()
        elif "uppercase" in c:
            text = text.upper()
        if "wrap_quotes" in c:
            text = f'"{text}"'
        return text


def compose_answer(topic: str, complied: Collection[str], rng: random.Random) -> str:
    """An answer about ``topic`` that keeps the ``complied`` rules and breaks the rest.

    ``complied`` must not contain both rules of a conflicting pair.
    """
    c = frozenset(complied)
    clash = [sorted(pair) for pair in CONFLICTS if pair <= c]
    if clash:
        raise ValueError(f"cannot comply with conflicting rules {clash}")
    lo = MIN_WORDS + 3 if "min_words" in c else (0 if "max_words" in c else MAX_WORDS + 3)
    hi = MAX_WORDS if "max_words" in c else (10**9 if "min_words" in c else MIN_WORDS - 3)
    builder = _Builder(topic, c, rng)
    floor = 2 if "sections" in c else 1
    for compact in (("max_words" in c), True):
        n = floor if compact else rng.randint(2, 4)
        text = builder.text(builder.sentences(n, compact), compact)
        while _words(text) < lo:
            n += 1
            text = builder.text(builder.sentences(n, compact), compact)
        if _words(text) <= hi:
            return text
    return text
