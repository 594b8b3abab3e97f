"""The simulated repair model: judges stale proposals from the repair prompt alone.

It reads the current best and the stale proposal(s) out of the prompt (rule
one: no side channel), and does what a good repair model should: keep the
rules a stale proposal states that the best does not (and that do not
contradict the best), drop sentences that only fit particular examples, and
answer in the requested format. Like a real model it is sometimes sloppy with
the format (bold labels, JSON, odd casing) and rarely gives no decision at
all, so the tolerant parser and its safe fallback are exercised.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

from flashevolve_nb.repair.prompt import BEST_HEADING, STALE_HEADING
from flashevolve_nb.sim.rules import RULES_BY_ID, conflicts_with, stated_rules
from flashevolve_nb.workloads.gepa.prompts import fence

__all__ = ["RepairModel", "RepairRead", "read_repair_prompt"]

_COMPONENT = re.compile(r'^### Component "(?P<name>[^"]+)"\s*$', re.MULTILINE)
_OPEN = re.compile(r"^(`{3,}|~{3,})[^\n`]*$", re.MULTILINE)
_SPECIFIC = re.compile(r"^When the request is about .+, mention .+\.$")


def _components(section: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in _COMPONENT.finditer(section):
        o = _OPEN.search(section, m.end())
        if o is None:
            continue
        marker = o.group(1)
        close = re.compile(rf"^{re.escape(marker)}\s*$", re.MULTILINE)
        c = close.search(section, o.end() + 1)
        if c is not None:
            out[m.group("name")] = section[o.end() + 1 : c.start()].rstrip("\n")
    return out


@dataclass(frozen=True, slots=True)
class RepairRead:
    best: dict[str, str]
    stale: tuple[dict[str, str], ...]


def read_repair_prompt(prompt: str) -> RepairRead:
    best: dict[str, str] = {}
    stale: list[dict[str, str]] = []
    sections = re.split(r"^(?=## )", prompt, flags=re.MULTILINE)
    for sec in sections:
        if sec.startswith(BEST_HEADING):
            best = _components(sec)
        elif sec.startswith(STALE_HEADING):
            stale.append(_components(sec))
    return RepairRead(best, tuple(stale))


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n", text) if s.strip()]


@dataclass(frozen=True, slots=True)
class RepairModel:
    p_no_decision: float = 0.03
    """Chance of an answer with no readable decision (the parser's fallback path)."""
    p_json: float = 0.15
    p_bold: float = 0.25

    def judge(self, read: RepairRead) -> tuple[str, str, dict[str, str]]:
        """(decision, reason, patched components)."""
        group = len(read.stale) > 1
        patched: dict[str, str] = {}
        superset = not group and bool(read.stale)
        added_rules: list[str] = []
        specific = 0
        for name, best_text in read.best.items():
            best_rules = stated_rules(best_text)
            blocked = set(best_rules)
            for r in best_rules:
                blocked |= conflicts_with(r)
            new_lines: list[str] = []
            for stale in read.stale:
                text = stale.get(name, "")
                stale_rules = stated_rules(text)
                if not best_rules <= stale_rules:
                    superset = False
                for sentence in _sentences(text):
                    if _SPECIFIC.match(sentence):
                        specific += 1
                        continue
                    rules = {r for r in stale_rules if RULES_BY_ID[r].states(sentence)}
                    fresh = rules - blocked
                    if fresh and rules == fresh:
                        new_lines.append(sentence)
                        blocked |= fresh
                        for r in fresh:
                            blocked |= conflicts_with(r)
                        added_rules += sorted(fresh)
            if new_lines:
                patched[name] = "\n".join([best_text.strip(), *new_lines]).strip()
        if superset and patched and specific == 0:
            return "accept", "it already keeps everything accepted since and adds to it", {}
        if patched:
            what = ", ".join(added_rules[:4])
            dropped = " and drops example-specific content" if specific else ""
            return "patch", f"folds transferable rules ({what}) into the best{dropped}", patched
        why = "only example-specific content" if specific else "nothing the best lacks"
        return "discard", f"it holds {why}", {}

    def answer(self, prompt: str, rng: random.Random) -> str:
        decision, reason, patched = self.judge(read_repair_prompt(prompt))
        u = rng.random()
        if u < self.p_no_decision:
            return (
                "Looking at these versions, the newer accepted text already covers most of "
                "this; some parts might still help."
            )
        if u < self.p_no_decision + self.p_json:
            obj: dict[str, object] = {"decision": decision.upper(), "reason": reason}
            if patched:
                obj["patch"] = patched
            return "Here is my assessment.\n\n" + fence(json.dumps(obj, indent=2)).replace(
                "```\n", "```json\n", 1
            )
        if u < self.p_no_decision + self.p_json + self.p_bold:
            head = f"**Decision:** {decision.capitalize()}\n**Reason:** {reason}"
            body = "".join(f"\n\nPatched `{n}`:\n\n### {n}\n{fence(t)}" for n, t in patched.items())
            return head + body
        head = f"DECISION: {decision}\nREASON: {reason}"
        body = "".join(f'\n\n### Component "{n}"\n{fence(t)}' for n, t in patched.items())
        return head + body


REPAIR = RepairModel()
