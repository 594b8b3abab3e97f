"""The repair prompt (our own wording) and a tolerant parser of its answer.

The prompt shows the current best artifact, the history admitted since the
stale proposal was derived (as diffs), and the stale proposal(s); it asks for a
structured answer: a ``DECISION:`` line, a ``REASON:`` line and, for a patch,
the complete new text of each changed component in a fenced block under a
``### Component "name"`` heading.

Real models are sloppy with formats, so the parser accepts markdown emphasis,
any casing, the answer wrapped in a fence, a JSON object instead of lines, and
prose around it all. What it never does is guess: an answer with no readable
decision, or a patch with no readable text, becomes a safe ``discard`` with the
reason recorded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from flashevolve_nb.engine.artifact import Artifact
from flashevolve_nb.repair.history import HistoryEntry
from flashevolve_nb.workloads.gepa.prompts import fence

__all__ = [
    "BEST_HEADING",
    "HISTORY_HEADING",
    "REPAIR_MARKER",
    "STALE_HEADING",
    "RepairAnswer",
    "StaleProposal",
    "parse_repair_answer",
    "repair_prompt",
]

REPAIR_MARKER = "You are reviewing proposals that were written against an older version"
BEST_HEADING = "## Current best"
HISTORY_HEADING = "## Admitted since"
STALE_HEADING = "## Stale proposal"
_COMPONENT = '### Component "{name}"'


@dataclass(frozen=True, slots=True)
class StaleProposal:
    artifact: Artifact
    base_version: int
    staleness: int


def _components(artifact: Mapping[str, str]) -> list[str]:
    out = []
    for name, text in artifact.items():
        out += [_COMPONENT.format(name=name), fence(text)]
    return out


def repair_prompt(
    best: Artifact,
    best_version: int,
    best_score: float,
    stale: Sequence[StaleProposal],
    history: Sequence[HistoryEntry],
) -> str:
    """The repair request for one stale proposal (``reflective``) or a group (``meta``)."""
    if not stale:
        raise ValueError("a repair prompt needs at least one stale proposal")
    group = len(stale) > 1
    parts = [
        f"{REPAIR_MARKER} of a set of instructions for an AI assistant. While "
        f"{'they were' if group else 'it was'} being evaluated, newer versions were accepted, "
        f"so {'they are' if group else 'it is'} stale: "
        f"{'they do' if group else 'it does'} not know what changed since.",
        "",
        f"{BEST_HEADING} (version {best_version}, mean validation score {best_score:.3f})",
        *_components(best),
        "",
        f"{HISTORY_HEADING} ({len(history)} artifact(s), oldest first)",
    ]
    if not history:
        parts.append("(nothing: only removals changed the version)")
    for h in history:
        parts.append(
            f"### {h.artifact_id} (version {h.version}, score {h.score:.3f}, "
            f"changed from {h.parent_id or 'nothing'})"
        )
        for name, diff in h.diffs.items():
            parts += [f"Component {name!r}:", fence(diff)]
    for i, s in enumerate(stale, 1):
        parts += [
            "",
            f"{STALE_HEADING} {i} (written against version {s.base_version}, "
            f"{s.staleness} version(s) behind)",
            *_components(s.artifact),
        ]
    choices = "patch or discard" if group else "accept, patch or discard"
    parts += [
        "",
        "## Your task",
        f"Decide: {choices}.",
    ]
    if not group:
        parts.append(
            "- accept: the proposal is still good as it is and loses nothing that was "
            "accepted since."
        )
    parts += [
        f"- patch: the proposal{'s hold' if group else ' holds'} general, transferable ideas "
        "that the current best lacks. Write the current best with those ideas folded in. "
        "Leave out anything that only fits particular examples, and anything that contradicts "
        "the current best.",
        "- discard: nothing in it is worth adding to the current best.",
        "",
        "Answer in this format:",
        "DECISION: <accept|patch|discard>",
        "REASON: <one sentence>",
        "For a patch, then give the complete new text of every component you change, each "
        'under a heading like ### Component "name" followed by the text in a fenced block.',
    ]
    return "\n".join(parts)


@dataclass(frozen=True, slots=True)
class RepairAnswer:
    """What the parser made of a repair answer; ``fallback`` marks a safe default."""

    action: str
    reason: str
    components: Mapping[str, str] = field(default_factory=dict)
    fallback: bool = False


_DECISION = re.compile(
    r"^[\s>#*_`-]*decision[\s*_`]*[:=\-–—]+[\s*_`\"']*(accept|patch|discard)\b",
    re.IGNORECASE | re.MULTILINE,
)
_REASON = re.compile(r"^[\s>#*_`-]*reason[\s*_`]*[:=\-–—]+[\s*_`]*(.+)$", re.I | re.M)
_OPEN = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})([^\n`]*)$", re.MULTILINE)
_HEADING = re.compile(
    r"^[ \t]*#{1,6}[ \t]*(?:component[ \t]*)?[\"'`*]*([\w.\-: ]+?)[\"'`*]*[ \t]*:?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)


def _blocks(text: str, offset: int = 0) -> list[tuple[int, str, str]]:
    """Complete fenced blocks: (start offset, info string, content).

    A block that itself holds fenced blocks (a model fencing its whole answer)
    is replaced by the blocks inside it.
    """
    out = []
    pos = 0
    while (m := _OPEN.search(text, pos)) is not None:
        marker = m.group(1)
        close = re.compile(
            rf"^[ \t]{{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$", re.MULTILINE
        )
        c = close.search(text, m.end() + 1)
        if c is None:
            break
        content = text[m.end() + 1 : c.start()]
        inner = _blocks(content, offset + m.end() + 1)
        if inner:
            out += inner
        else:
            out.append((offset + m.start(), m.group(2).strip().lower(), content))
        pos = c.end()
    return out


def _from_json(answer: str) -> dict[str, object] | None:
    candidates = [b for _, info, b in _blocks(answer) if info in ("json", "")]
    candidates.append(answer)
    for text in candidates:
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            continue
        try:
            obj = json.loads(text[start : end + 1])
        except ValueError:
            continue
        if isinstance(obj, dict) and any(k.lower() == "decision" for k in obj):
            return {k.lower(): v for k, v in obj.items()}
    return None


def _texts(answer: str, components: Sequence[str]) -> dict[str, str]:
    """The new component texts: by heading, or the lone text block for one component."""
    blocks = [
        (start, content)
        for start, info, content in _blocks(answer)
        if info not in ("diff", "json") and content.strip()
    ]
    found: dict[str, str] = {}
    headings = [(m.start(), m.group(1).strip()) for m in _HEADING.finditer(answer)]
    by_lower = {c.lower(): c for c in components}
    for start, content in blocks:
        before = [name for pos, name in headings if pos < start]
        if before and before[-1].lower() in by_lower:
            found[by_lower[before[-1].lower()]] = content.strip("\n")
    if not found and len(components) == 1 and blocks:
        found[components[0]] = blocks[-1][1].strip("\n")
    return found


def parse_repair_answer(
    answer: str,
    components: Sequence[str],
    *,
    finish_reason: str = "stop",
    allow_accept: bool = True,
) -> RepairAnswer:
    """Read a repair answer; anything unreadable becomes ``discard`` with the reason why."""
    if finish_reason == "length":
        return RepairAnswer("discard", "truncated: the repair answer hit the token limit", {}, True)
    obj = _from_json(answer)
    action = reason = ""
    texts: dict[str, str] = {}
    if obj is not None:
        action = str(obj.get("decision", "")).strip().lower()
        reason = str(obj.get("reason", "")).strip()
        patch = obj.get("patch") or obj.get("text") or obj.get("components")
        if isinstance(patch, dict):
            by_lower = {c.lower(): c for c in components}
            texts = {
                by_lower[str(k).lower()]: str(v)
                for k, v in patch.items()
                if str(k).lower() in by_lower
            }
        elif isinstance(patch, str) and len(components) == 1:
            texts = {components[0]: patch}
    else:
        m = _DECISION.search(answer)
        if m is not None:
            action = m.group(1).lower()
        r = _REASON.search(answer)
        if r is not None:
            reason = r.group(1).strip().strip("*_`\"' ")
    if action not in ("accept", "patch", "discard"):
        return RepairAnswer(
            "discard", "malformed: no DECISION (accept, patch or discard) in the answer", {}, True
        )
    if action == "accept" and not allow_accept:
        return RepairAnswer(
            "discard", "malformed: 'accept' is not an option for a group of proposals", {}, True
        )
    reason = reason or "(the model gave no reason)"
    if action != "patch":
        return RepairAnswer(action, reason)
    if not texts:
        texts = _texts(answer, components)
    texts = {k: v for k, v in texts.items() if v.strip()}
    if not texts:
        return RepairAnswer(
            "discard", f"malformed: a patch without a readable new text (model said: {reason})",
            {}, True,
        )  # fmt: skip
    return RepairAnswer("patch", reason, texts)
