"""The reflection prompt and the strict-but-tolerant parser of its answer."""

from __future__ import annotations

import pytest

from flashevolve_nb.workloads.gepa.prompts import (
    CURRENT_TEXT_HEADING,
    REFLECTION_MARKER,
    ReflectionExample,
    fence,
    parse_reflection_answer,
    reflection_prompt,
)


def test_prompt_shows_text_examples_and_asks_for_a_fenced_block() -> None:
    p = reflection_prompt(
        "system_prompt",
        "Be brief.",
        [ReflectionExample("Plan a trip", "```json\n{}\n```", 0.25, "Must end with DONE.")],
    )
    assert p.startswith(REFLECTION_MARKER)
    assert CURRENT_TEXT_HEADING in p and "```\nBe brief.\n```" in p
    # Backticks inside an example get a longer fence, so the prompt stays parseable.
    assert "````\n```json\n{}\n```\n````" in p
    assert "Score: 0.250" in p and "Must end with DONE." in p
    assert "single fenced block" in p


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Here it is:\n```\nNew text.\n```\nHope that helps!", "New text."),
        ("```text\nLine one.\nLine two.\n```", "Line one.\nLine two."),
        ("```markdown\nA\n```\nOn reflection:\n```\nB\n```", "B"),
        ("~~~\nTilde fenced.\n~~~", "Tilde fenced."),
        ("````\nHas ``` inside.\n````", "Has ``` inside."),
        ("   ```\nIndented fence.\n   ```", "Indented fence."),
    ],
)
def test_parser_adopts_the_block_and_ignores_prose(answer: str, expected: str) -> None:
    parsed = parse_reflection_answer(answer)
    assert parsed.ok and parsed.text == expected


@pytest.mark.parametrize(
    ("answer", "finish", "reason"),
    [
        ("Just be more careful next time.", "stop", "malformed: no fenced block"),
        ("```\n\n```", "stop", "malformed: the fenced block is empty"),
        ("Sure:\n```\nHalf of a new prom", "stop", "truncated: a fenced block was opened"),
        ("```\nComplete.\n```", "length", "truncated: the answer hit the token limit"),
    ],
)
def test_parser_refuses_unusable_answers(answer: str, finish: str, reason: str) -> None:
    parsed = parse_reflection_answer(answer, finish)
    assert not parsed.ok
    assert parsed.text is None
    assert parsed.reason.startswith(reason)


def test_fence_is_longer_than_any_backtick_run() -> None:
    assert fence("plain") == "```\nplain\n```"
    assert fence("a ````` b").startswith("``````\n")
