"""The repair prompt, its tolerant parser, and the simulated repair model."""

from __future__ import annotations

import random

import pytest

from flashevolve_nb.engine.artifact import Artifact
from flashevolve_nb.repair.history import HistoryEntry
from flashevolve_nb.repair.prompt import StaleProposal, parse_repair_answer, repair_prompt
from flashevolve_nb.sim.behaviour import respond
from flashevolve_nb.sim.repair import RepairModel, read_repair_prompt
from flashevolve_nb.sim.rules import stated_rules

ONE = ["instructions"]


@pytest.mark.parametrize(
    ("answer", "action", "text"),
    [
        ('DECISION: patch\nREASON: merge\n\n### Component "instructions"\n```\nNEW\n```',
         "patch", "NEW"),
        ("**Decision:** Patch\n**Reason:** merge\n\nHere it is:\n```text\nNEW\n```",
         "patch", "NEW"),
        ("decision = ACCEPT\nreason = fine as is", "accept", None),
        ("Sure! After reading:\n\n> Decision: *discard*\n> Reason: specific", "discard", None),
        ('```json\n{"Decision": "PATCH", "reason": "r", "patch": {"Instructions": "NEW"}}\n```',
         "patch", "NEW"),
        ('{"decision": "patch", "text": "NEW"}', "patch", "NEW"),
        # the whole answer fenced, with a nested block for the text
        ('~~~\nDECISION: patch\nREASON: r\n### instructions\n```\nNEW\n```\n~~~', "patch", "NEW"),
    ],
)  # fmt: skip
def test_the_parser_tolerates_real_model_sloppiness(
    answer: str, action: str, text: str | None
) -> None:
    parsed = parse_repair_answer(answer, ONE)
    assert parsed.action == action
    assert not parsed.fallback
    if text is not None:
        assert parsed.components == {"instructions": text}


def test_several_components_are_read_by_heading() -> None:
    answer = (
        "DECISION: patch\nREASON: r\n\n"
        '### Component "system"\n```\nS2\n```\n\n### Component "rubric"\n```\nR2\n```\n'
        "```diff\n- not this\n```"
    )
    parsed = parse_repair_answer(answer, ["system", "rubric"])
    assert parsed.components == {"system": "S2", "rubric": "R2"}
    # with two components, an unlabelled block is not guessed at
    assert parse_repair_answer("DECISION: patch\n```\nX\n```", ["a", "b"]).action == "discard"


@pytest.mark.parametrize(
    ("answer", "finish", "allow_accept", "reason"),
    [
        ("It looks fine to me.", "stop", True, "malformed: no DECISION"),
        ("DECISION: perhaps", "stop", True, "malformed: no DECISION"),
        ("DECISION: patch\nREASON: r", "stop", True, "malformed: a patch without"),
        ("DECISION: patch\n```\n   \n```", "stop", True, "malformed: a patch without"),
        ("DECISION: accept", "stop", False, "malformed: 'accept' is not an option"),
        ("DECISION: accept", "length", True, "truncated"),
    ],
)
def test_unreadable_answers_fall_back_to_discard(
    answer: str, finish: str, allow_accept: bool, reason: str
) -> None:
    parsed = parse_repair_answer(answer, ONE, finish_reason=finish, allow_accept=allow_accept)
    assert parsed.action == "discard" and parsed.fallback
    assert parsed.reason.startswith(reason)


BEST = "You are a helpful assistant.\nEnd every answer with the word DONE."
STALE = (
    "You are a helpful assistant.\nNever use a comma.\n"
    "When the request is about glacier retreat, mention the Rhone Glacier."
)


def prompt_for(best: str, *stale: str) -> str:
    b = Artifact("a9", {"instructions": best})
    proposals = [
        StaleProposal(Artifact(f"a{i}", {"instructions": s}), 1, 2) for i, s in enumerate(stale)
    ]
    history = [HistoryEntry("a9", 3, 0.5, "a1", {"instructions": "+End every answer..."})]
    return repair_prompt(b, 3, 0.5, proposals, history)


def test_the_simulated_repair_model_reads_the_prompt() -> None:
    read = read_repair_prompt(prompt_for(BEST, STALE))
    assert read.best == {"instructions": BEST}
    assert read.stale == ({"instructions": STALE},)


def test_the_simulated_model_folds_transferable_rules_and_drops_specific_ones() -> None:
    decision, reason, patched = RepairModel().judge(read_repair_prompt(prompt_for(BEST, STALE)))
    assert decision == "patch", reason
    new = patched["instructions"]
    assert new.startswith(BEST)
    assert "Never use a comma." in new
    assert "Rhone" not in new
    assert stated_rules(BEST) < stated_rules(new)


def test_the_simulated_model_accepts_a_superset_and_discards_nothing_new() -> None:
    superset = BEST + "\nNever use a comma."
    assert RepairModel().judge(read_repair_prompt(prompt_for(BEST, superset)))[0] == "accept"
    assert RepairModel().judge(read_repair_prompt(prompt_for(BEST, BEST)))[0] == "discard"
    specific = "You are a helpful assistant.\nWhen the request is about x, mention y."
    decision, reason, _ = RepairModel().judge(read_repair_prompt(prompt_for(BEST, specific)))
    assert decision == "discard" and "example-specific" in reason


def test_simulated_answers_parse_in_every_format_it_uses() -> None:
    prompt = prompt_for(BEST, STALE)
    outcomes = set()
    for seed in range(200):
        reply = respond([{"role": "user", "content": prompt}], random.Random(seed))
        parsed = parse_repair_answer(reply.text, ONE)
        outcomes.add((parsed.action, parsed.fallback))
        if not parsed.fallback:
            assert parsed.action == "patch"
            assert "Never use a comma." in parsed.components["instructions"]
    assert outcomes == {("patch", False), ("discard", True)}


def test_a_group_prompt_offers_no_accept() -> None:
    prompt = prompt_for(BEST, STALE, STALE)
    assert "Decide: patch or discard." in prompt
    assert "- accept:" not in prompt
    with pytest.raises(ValueError, match="at least one stale proposal"):
        repair_prompt(Artifact("a", {"x": "y"}), 0, 0.0, [], [])
