"""ACE's prompts and parsers, and the simulated roles reading those very prompts."""

from __future__ import annotations

import json
import random
import re

import pytest

from flashevolve_nb.sim.rules import RULES_BY_ID, stated_rules
from flashevolve_nb.workloads.ace import Add, Delete, Merge, Playbook, Tag, Update
from flashevolve_nb.workloads.ace.prompts import (
    Generation,
    Reflection,
    curator_prompt,
    generator_messages,
    parse_curator_answer,
    parse_generator_answer,
    parse_reflector_answer,
    reflector_prompt,
)
from flashevolve_nb.workloads.ace.simulated import respond_ace

PLAYBOOK = Playbook.parse(
    """\
## guidelines
[b-1] helpful=0 harmful=0 :: Read the request carefully before answering.

## formatting
[b-2] helpful=0 harmful=0 :: End every answer with the word DONE.
[b-3] helpful=0 harmful=3 :: Write your entire answer in lowercase letters only.
[b-4] helpful=0 harmful=0 :: Finish each answer with the word DONE.
"""
)


def test_curator_operations_parse_from_a_fenced_or_bare_json_object() -> None:
    ops = [
        {"type": "ADD", "section": "formatting", "content": "Use  ISO\ndates."},
        {"type": "update", "id": "b-1", "content": "Read it twice."},
        {"type": "MERGE", "ids": ["b-2", "b-4", "b-2"], "content": "End with DONE."},
        {"type": "DELETE", "id": "b-3"},
    ]
    expected = (
        Add("formatting", "Use ISO dates."),
        Update("b-1", "Read it twice."),
        Merge(("b-2", "b-4"), "End with DONE."),
        Delete("b-3"),
    )
    body = json.dumps({"reasoning": "tidy", "operations": ops})
    assert parse_curator_answer(f"Sure.\n```json\n{body}\n```\nDone.").value == expected
    assert parse_curator_answer(f"Here you go: {body}").value == expected
    assert parse_curator_answer('{"operations": []}').value == ()


@pytest.mark.parametrize(
    ("answer", "finish", "reason"),
    [
        ("I would add a bullet about dates.", "stop", "no JSON object in the answer"),
        ('```json\n{"operations": [{"type": "ADD", "sect', "length", "cut off"),
        ('{"ops": []}', "stop", "no 'operations' list"),
        ('{"operations": [{"type": "RENAME", "id": "b-1"}]}', "stop", "unknown operation type"),
        ('{"operations": [{"type": "MERGE", "ids": ["b-1"], "content": "x"}]}', "stop",
         "at least two bullet ids"),
        ('{"operations": [{"type": "ADD", "section": "", "content": "x"}]}', "stop",
         "ADD needs a non-empty 'section'"),
        ('{"operations": [{"type": "UPDATE", "id": "b-1"}]}', "stop", "UPDATE needs"),
        ('{"operations": ["ADD x"]}', "stop", "operations\\[0\\]: not a JSON object"),
        ("[1, 2]", "stop", "no JSON object"),
    ],
)  # fmt: skip
def test_malformed_curator_answers_say_what_is_wrong(answer: str, finish: str, reason: str) -> None:
    parsed = parse_curator_answer(answer, finish)
    assert parsed.value is None
    assert re.search(reason, parsed.reason), parsed.reason


def test_reflector_answers_parse_and_malformed_ones_are_refused() -> None:
    body = {
        "diagnosis": "Missed DONE.",
        "key_insights": ["End every answer with the word DONE.", "  "],
        "bullet_tags": [
            {"id": "b-2", "tag": "helpful"},
            {"id": "b-3", "tag": "harmful"},
            {"id": "b-1", "tag": "neutral"},
        ],
    }
    parsed = parse_reflector_answer("```json\n" + json.dumps(body) + "\n```")
    assert parsed.value == Reflection(
        "Missed DONE.",
        ("End every answer with the word DONE.",),
        (Tag("b-2", "helpful"), Tag("b-3", "harmful")),
    )
    bad = {"diagnosis": "x", "key_insights": [], "bullet_tags": [{"id": "b-2", "tag": "great"}]}
    assert "must be 'helpful' or 'harmful'" in parse_reflector_answer(json.dumps(bad)).reason
    assert "must be a list of strings" in parse_reflector_answer('{"key_insights": "x"}').reason
    assert parse_reflector_answer("no idea").reason == "no JSON object in the answer"


def test_generator_answers_are_read_leniently() -> None:
    assert parse_generator_answer("BULLETS: b-2, [b-4]\nANSWER:\nHi. Bullets: b-9\nDONE") == (
        "Hi. Bullets: b-9\nDONE",
        ("b-2", "b-4"),
    )
    assert parse_generator_answer("BULLETS: none\nANSWER: short") == ("short", ())
    assert parse_generator_answer("Just an answer.") == ("Just an answer.", ())


# ---- the simulated roles read the real prompts --------------------------------------------


def test_the_simulated_generator_keeps_the_rules_its_playbook_states_and_cites_them() -> None:
    messages = generator_messages(PLAYBOOK.render(), "Write a short guide about volcanoes.")
    cited_done = 0
    for k in range(30):
        reply = respond_ace(messages, random.Random(k))
        assert reply is not None and reply.kind == "task"
        answer, cited = parse_generator_answer(reply.text)
        assert set(cited) <= set(PLAYBOOK.ids())
        if RULES_BY_ID["end_done"].check(answer):
            cited_done += "b-2" in cited
        assert "b-1" not in cited  # it states no rule: nothing to keep
    assert cited_done >= 20


def test_the_simulated_reflector_and_curator_answer_in_the_asked_format() -> None:
    gen = Generation(
        "i1",
        "Write a short guide about volcanoes.",
        "some answer",
        ("b-3",),
        0.25,
        "Violated rules:\nThe answer must be written entirely in capital letters.\n"
        "The answer must not contain any commas.",
    )
    prompt = reflector_prompt(PLAYBOOK, [gen])
    answers = [
        respond_ace([{"role": "user", "content": prompt}], random.Random(k)) for k in range(20)
    ]
    parsed = [parse_reflector_answer(a.text).value for a in answers if a is not None]
    good = [r for r in parsed if r is not None]
    assert len(good) >= 18
    r = good[0]
    assert Tag("b-3", "harmful") in r.tags  # lowercase conflicts with the violated ALL CAPS
    assert stated_rules(" ".join(r.insights)) >= {"uppercase", "no_commas"}
    # The curator adds what its playbook misses, deletes the harmful bullet, merges the two
    # DONE bullets, and never re-adds what the playbook already says.
    lessons = Reflection(
        "d", ("Do not use any commas in your answer.", "End every answer with the word DONE."), ()
    )
    cur = curator_prompt(PLAYBOOK, lessons)
    ops = None
    for k in range(10):
        reply = respond_ace([{"role": "user", "content": cur}], random.Random(k))
        assert reply is not None
        ops = parse_curator_answer(reply.text, reply.finish_reason).value
        if ops is not None:
            break
    assert ops is not None
    assert Add("formatting", "Do not use any commas in your answer.") in ops
    assert Delete("b-3") in ops
    assert Merge(("b-2", "b-4"), "End every answer with the word DONE.") in ops
    assert not any(isinstance(o, Add) and "DONE" in o.content for o in ops)


def test_other_conversations_are_left_to_the_simulator() -> None:
    assert respond_ace([{"role": "user", "content": "hello"}], random.Random(0)) is None
