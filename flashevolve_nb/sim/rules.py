"""The rule universe of the "rulebook" task family: checkable output rules.

In the spirit of IFBench, every rule is verifiable by code, so scores need no
LLM judge. A rule carries four faces of the same constraint:

- ``check(text)``: does an answer satisfy it (the ground truth of the score);
- ``feedback``: the sentence the evaluator writes when it is violated (the
  reflection model reads these back, so each is unique and stable);
- ``phrasings``: ways a system prompt can state it;
- ``states(prompt)``: a tolerant, case-insensitive recogniser deciding whether
  a system prompt states it (the simulated task model reads prompts with it).

Checkers ignore letter case wherever a rule is not about case, so that the
case rules ("all lowercase", "ALL CAPS") combine with marker rules such as
"end with DONE". A few pairs genuinely conflict (``CONFLICTS``); an instance
never needs both rules of a pair, but a prompt may demand both.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "CONFLICTS",
    "MAX_WORDS",
    "MIN_WORDS",
    "RULES",
    "RULES_BY_ID",
    "Rule",
    "conflicts_with",
    "stated_rules",
]

MAX_WORDS = 40
MIN_WORDS = 120
_NUMBER_WORDS = re.compile(
    r"\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)\b", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Rule:
    """One checkable output rule."""

    id: str
    feedback: str
    phrasings: tuple[str, ...]
    recogniser: re.Pattern[str] = field(repr=False)
    check: Callable[[str], bool] = field(repr=False, compare=False)
    weight: float = 1.0
    """How often instances need it: common rules are the transferable ones."""

    def states(self, prompt: str) -> bool:
        """Whether ``prompt`` states this rule (by any reasonable wording)."""
        return self.recogniser.search(prompt) is not None


def _words(text: str) -> int:
    return len(text.split())


def _last_word(text: str) -> str:
    words = re.findall(r"[A-Za-z]+", text)
    return words[-1].lower() if words else ""


def _paragraphs(text: str) -> int:
    parts = re.split(r"^[ \t]*\*\*\*[ \t]*$", text, flags=re.MULTILINE)
    return sum(1 for p in parts if p.strip())


def _iso_dates(text: str) -> bool:
    return bool(re.search(r"\b\d{4}-\d{2}-\d{2}\b", text)) and not re.search(
        r"\b\d{1,2}/\d{1,2}/\d{2,4}\b", text
    )


def _quoted(text: str) -> bool:
    s = text.strip()
    return len(s) >= 2 and s[0] == '"' and s[-1] == '"'


def _has(pattern: str, flags: int = re.IGNORECASE) -> Callable[[str], bool]:
    compiled = re.compile(pattern, flags)
    return lambda text: compiled.search(text) is not None


def _lacks(pattern: str, flags: int = re.IGNORECASE) -> Callable[[str], bool]:
    compiled = re.compile(pattern, flags)
    return lambda text: compiled.search(text) is None


def _rule(
    id: str,
    feedback: str,
    phrasings: tuple[str, ...],
    recogniser: str,
    check: Callable[[str], bool],
    weight: float,
) -> Rule:
    return Rule(id, feedback, phrasings, re.compile(recogniser, re.IGNORECASE), check, weight)


_ML = re.IGNORECASE | re.MULTILINE

RULES: tuple[Rule, ...] = (
    _rule(
        "end_done",
        "The answer must end with the word DONE.",
        ("End every answer with the word DONE.", "Finish your response with the single word DONE."),
        r"\b(end|finish|conclude|close)\w*\b[^.\n]{0,60}\bDONE\b",
        lambda t: _last_word(t) == "done",
        9.0,
    ),
    _rule(
        "answer_tags",
        "The final answer must be wrapped in <answer></answer> tags.",
        (
            "Wrap the final answer in <answer></answer> tags.",
            "Put the key answer between <answer> and </answer>.",
        ),
        r"<answer>",
        _has(r"<answer>[^<]*\S[^<]*</answer>"),
        8.0,
    ),
    _rule(
        "no_commas",
        "The answer must not contain any commas.",
        ("Do not use any commas in your answer.", "Never use a comma."),
        r"\b(no|not|never|avoid|without)\b[^.\n]{0,30}\bcommas?\b",
        lambda t: "," not in t,
        7.0,
    ),
    _rule(
        "max_words",
        f"The answer must be at most {MAX_WORDS} words long.",
        (
            f"Keep every answer to at most {MAX_WORDS} words.",
            f"Never use more than {MAX_WORDS} words.",
        ),
        r"\b(at most|no more than|not more than|more than|under|fewer than|maximum of)"
        rf"\s+{MAX_WORDS}\s+words\b",
        lambda t: _words(t) <= MAX_WORDS,
        6.0,
    ),
    _rule(
        "title",
        "The answer must have a title wrapped in double angular brackets, like <<title>>.",
        (
            "Give your answer a title wrapped in double angular brackets, like <<title>>.",
            "Start with a title in the form <<title>>.",
        ),
        r"<<\s*title\s*>>|\bdouble angular brackets\b",
        _has(r"<<[^<>\n]*\w[^<>\n]*>>"),
        5.5,
    ),
    _rule(
        "iso_dates",
        "The answer must give dates in ISO format (YYYY-MM-DD).",
        ("Write all dates in ISO format (YYYY-MM-DD).", "Use ISO 8601 dates such as 2024-05-17."),
        r"\biso\b[^.\n]{0,20}\bdates?\b|\bdates?\b[^.\n]{0,30}\b(iso|yyyy-mm-dd)\b",
        _iso_dates,
        5.0,
    ),
    _rule(
        "bullets",
        "The answer must contain exactly 3 bullet points starting with '* '.",
        (
            "Include exactly 3 bullet points, each starting with '* '.",
            "Give exactly three bullet points marked with an asterisk.",
        ),
        r"\bbullet",
        lambda t: len(re.findall(r"^[ \t]*\* \S", t, re.MULTILINE)) == 3,
        4.5,
    ),
    _rule(
        "lowercase",
        "The answer must be written entirely in lowercase letters.",
        (
            "Write your entire answer in lowercase letters only.",
            "Use only lowercase letters and no capitals at all.",
        ),
        r"\blower[ -]?case\b",
        lambda t: any(c.isalpha() for c in t) and not any(c.isupper() for c in t),
        4.0,
    ),
    _rule(
        "signature",
        'The answer must be signed off with "-- Assistant".',
        (
            'Sign off with "-- Assistant" on its own line.',
            'Close with the signature line "-- Assistant".',
        ),
        r"--\s?assistant\b|\bsign(ed)?[ -]off\b",
        _has(r"^[ \t]*-- ?assistant\b", _ML),
        3.6,
    ),
    _rule(
        "digits",
        "Numbers must be written as digits, not words.",
        ("Write numbers as digits, never as words.", "Always use numerals (3, not three)."),
        r"\b(digits|numerals)\b",
        lambda t: _NUMBER_WORDS.search(t) is None,
        3.3,
    ),
    _rule(
        "postscript",
        "The answer must include a postscript starting with P.S.",
        ("Add a postscript starting with P.S. at the end.", "Always include a P.S. line."),
        r"\bp\.\s?s\.|\bpostscript\b",
        _has(r'^[ \t]*"?p\.s\.', _ML),
        3.0,
    ),
    _rule(
        "start_answer",
        'The answer must start with "Answer:".',
        ('Begin every response with "Answer:".', 'Start your reply with the prefix "Answer:".'),
        r"\b(begin|start|open)\w*\b[^.\n]{0,60}answer:",
        _has(r"\A\s*answer:"),
        2.8,
    ),
    _rule(
        "no_exclamation",
        "The answer must not contain exclamation marks.",
        ("Do not use exclamation marks.", "Never write an exclamation mark."),
        r"\bexclamation (marks?|points?)\b",
        lambda t: "!" not in t,
        2.6,
    ),
    _rule(
        "highlights",
        "The answer must highlight at least two phrases with markdown, like *this*.",
        (
            "Highlight at least two key phrases with markdown, like *this*.",
            "Emphasise two or more parts with single asterisks, e.g. *important*.",
        ),
        r"\b(highlight|emphasi[sz]e)",
        lambda t: len(re.findall(r"\*[^\s*][^*\n]*\*", t)) >= 2,
        2.4,
    ),
    _rule(
        "tldr",
        'The answer must include a one-line summary starting with "TL;DR:".',
        ('Include a one-line summary starting with "TL;DR:".', 'Add a "TL;DR:" line.'),
        r"\btl;\s?dr\b",
        _has(r'^[ \t]*"?tl;dr:', _ML),
        2.2,
    ),
    _rule(
        "no_first_person",
        'The answer must not refer to the assistant as "I".',
        ('Do not refer to yourself as "I".', "Never speak in the first person."),
        r"\bfirst[- ]person\b|\byourself as\b",
        _lacks(r"\bI\b"),
        2.0,
    ),
    _rule(
        "wrap_quotes",
        "The whole response must be wrapped in double quotes.",
        (
            "Wrap your entire response in double quotes.",
            'Put the whole answer inside double quotes (").',
        ),
        r"\b(wrap|enclose|put|place)\w*\b[^.\n]{0,60}\bdouble quot",
        _quoted,
        1.8,
    ),
    _rule(
        "min_words",
        f"The answer must be at least {MIN_WORDS} words long.",
        (
            f"Write at least {MIN_WORDS} words in every answer.",
            f"Make each response no shorter than {MIN_WORDS} words.",
        ),
        r"\b(at least|no fewer than|no less than|minimum of|no shorter than)"
        rf"\s+{MIN_WORDS}\s+words\b",
        lambda t: _words(t) >= MIN_WORDS,
        1.7,
    ),
    _rule(
        "placeholders",
        "The answer must contain at least two placeholders in square brackets, like [name].",
        (
            "Include at least two placeholders in square brackets, such as [name].",
            "Leave two or more placeholders like [address] for the user to fill in.",
        ),
        r"\bplaceholders?\b",
        lambda t: len(re.findall(r"\[[^\[\]\n]+\]", t)) >= 2,
        1.6,
    ),
    _rule(
        "no_very",
        'The answer must not use the word "very".',
        ('Never use the word "very".', 'Avoid the word "very".'),
        r"\b(never|not|avoid|without|no)\b[^.\n]{0,30}\bvery\b",
        _lacks(r"\bvery\b"),
        1.5,
    ),
    _rule(
        "numbered",
        "The answer must include a numbered list of steps (1., 2., 3.).",
        ("Include a numbered list of steps (1., 2., 3.).", "Lay out the steps as a numbered list."),
        r"\bnumbered (list|steps)\b",
        lambda t: all(re.search(rf"^[ \t]*{n}\.[ \t]", t, re.MULTILINE) for n in (1, 2, 3)),
        1.4,
    ),
    _rule(
        "sections",
        "The answer must have two sections marked SECTION 1 and SECTION 2.",
        (
            "Split the answer into two sections labelled SECTION 1 and SECTION 2.",
            "Organise your reply as SECTION 1 and SECTION 2.",
        ),
        r"\bsection 1\b[^.\n]{0,20}\bsection 2\b",
        lambda t: bool(
            re.search(r"\bsection 1\b", t, re.I) and re.search(r"\bsection 2\b", t, re.I)
        ),
        1.3,
    ),
    _rule(
        "link",
        "The answer must include a reference link starting with https://.",
        (
            "Include a reference link that starts with https://.",
            "Cite a source as an https:// URL.",
        ),
        r"https://|\b(reference|source) (link|url)\b",
        _has(r"https://\S+"),
        1.2,
    ),
    _rule(
        "essential",
        'The answer must use the word "essential" at least twice.',
        ('Use the word "essential" at least twice.', 'Say "essential" two or more times.'),
        r"\bessential\b",
        lambda t: len(re.findall(r"\bessential\b", t, re.IGNORECASE)) >= 2,
        1.1,
    ),
    _rule(
        "paragraphs",
        "The answer must have exactly 3 paragraphs separated by the divider ***.",
        (
            "Write exactly 3 paragraphs separated by the markdown divider ***.",
            "Use three paragraphs with *** between them.",
        ),
        r"\*\*\*",
        lambda t: _paragraphs(t) == 3,
        1.0,
    ),
    _rule(
        "uppercase",
        "The answer must be written entirely in capital letters.",
        (
            "Write your entire answer in capital letters (ALL CAPS).",
            "Use uppercase letters for the whole response.",
        ),
        r"\b(all caps|upper[ -]?case|in capital letters)\b",
        lambda t: any(c.isalpha() for c in t) and not any(c.islower() for c in t),
        0.9,
    ),
    _rule(
        "quote_line",
        "The answer must include a block quote (a line starting with '> ').",
        (
            "Include a markdown block quote: a line starting with '> '.",
            "Quote a relevant saying as a block quote (a line starting with >).",
        ),
        r"\bblock ?quote\b",
        _has(r"^[ \t]*> \S", re.MULTILINE),
        0.8,
    ),
    _rule(
        "thanks",
        "The answer must thank the user.",
        (
            "Thank the user at the end of the answer.",
            "Always include a short thank-you to the user.",
        ),
        r"\bthank",
        _has(r"\bthank(s|[ -]you)\b"),
        0.7,
    ),
)

RULES_BY_ID: dict[str, Rule] = {rule.id: rule for rule in RULES}

CONFLICTS: frozenset[frozenset[str]] = frozenset(
    {
        frozenset({"lowercase", "uppercase"}),
        frozenset({"max_words", "min_words"}),
        frozenset({"start_answer", "wrap_quotes"}),
    }
)
"""Pairs no answer can satisfy together."""


def conflicts_with(rule_id: str) -> frozenset[str]:
    """The rules that cannot hold together with ``rule_id``."""
    return frozenset(r for pair in CONFLICTS if rule_id in pair for r in pair if r != rule_id)


@functools.lru_cache(maxsize=4096)
def stated_rules(prompt: str) -> frozenset[str]:
    """Ids of the rules that ``prompt`` states.

    Cached: one artifact is evaluated on many instances, so the same system
    prompt is read over and over, and a run's regex searches used to dominate
    the simulator's CPU time (which on the real clock becomes simulated time).
    """
    return frozenset(rule.id for rule in RULES if rule.states(prompt))
