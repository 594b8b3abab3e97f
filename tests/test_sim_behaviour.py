"""Scripted behaviour: the task model follows stated rules, the reflection model reads feedback."""

from __future__ import annotations

import random
import statistics
from collections import Counter

from flashevolve_nb.sim import Instance, RulebookTask
from flashevolve_nb.sim.behaviour import (
    REFLECTION,
    TASK,
    read_reflection_prompt,
    respond,
)
from flashevolve_nb.sim.rules import RULES_BY_ID, stated_rules
from flashevolve_nb.workloads.gepa.prompts import (
    ReflectionExample,
    parse_reflection_answer,
    reflection_prompt,
)

TASK_SET = RulebookTask(seed=0)
SEED_PROMPT = TASK_SET.seed_candidate()["system_prompt"]


def mean_score(system_prompt: str, instances: tuple[Instance, ...], repeats: int = 5) -> float:
    scores = []
    for k in range(repeats):
        for instance in instances:
            rng = random.Random(f"{k}:{instance.id}")
            text = TASK.answer(system_prompt, instance.input, rng)
            scores.append(TASK_SET.score(instance, text).score)
    return statistics.mean(scores)


def test_stating_rules_raises_the_score_of_instances_that_need_them() -> None:
    common = ["end_done", "answer_tags", "no_commas", "title", "iso_dates"]
    prompt = " ".join([SEED_PROMPT, *(RULES_BY_ID[r].phrasings[0] for r in common)])
    needing = tuple(i for i in TASK_SET.train + TASK_SET.val if set(i.rules) & set(common))
    assert len(needing) > 30
    base, better = mean_score(SEED_PROMPT, needing), mean_score(prompt, needing)
    print(f"\nseed prompt {base:.3f} -> prompt stating {len(common)} rules {better:.3f}")
    assert base < 0.3
    assert better > base + 0.25


def test_long_and_contradictory_prompts_lower_compliance() -> None:
    short = RULES_BY_ID["end_done"].phrasings[0]
    padding = " ".join(["Consider the reader and the context of the request."] * 40)
    assert TASK.p_comply_stated(short) > 0.9
    assert TASK.p_comply_stated(f"{short} {padding}") < 0.7
    contradictory = f"{short} Write your entire answer in lowercase letters only. Use ALL CAPS."
    assert TASK.p_comply_stated(contradictory) < TASK.p_comply_stated(short)
    rng = random.Random(0)
    for _ in range(300):
        complied = TASK.complied(contradictory, rng)
        assert not {"lowercase", "uppercase"} <= complied


def examples_for(prompt: str, instances: tuple[Instance, ...]) -> list[ReflectionExample]:
    examples = []
    for instance in instances:
        text = TASK.answer(prompt, instance.input, random.Random(instance.id))
        scored = TASK_SET.score(instance, text)
        examples.append(ReflectionExample(instance.input, text, scored.score, scored.feedback))
    return examples


def test_reflection_reads_the_real_prompt_and_adds_a_violated_rule() -> None:
    batch = TASK_SET.train[:3]
    examples = examples_for(SEED_PROMPT, batch)
    prompt = reflection_prompt("system_prompt", SEED_PROMPT, examples)
    read = read_reflection_prompt(prompt)
    assert read.current_text == SEED_PROMPT
    assert read.inputs == tuple(i.input for i in batch)
    violated = read.violated()
    assert violated and set(violated) <= {r for i in batch for r in i.rules}
    adopted = 0
    for k in range(200):
        reply = respond([{"role": "user", "content": prompt}], random.Random(k))
        assert reply.kind == "reflection"
        parsed = parse_reflection_answer(reply.text, reply.finish_reason)
        if parsed.text is None:
            continue
        adopted += 1
        assert parsed.text.startswith(SEED_PROMPT)
        new_rules = stated_rules(parsed.text)
        assert 1 <= len(new_rules) <= 2 and new_rules <= set(violated)
    assert adopted > 180


def test_reflection_handles_long_fences_and_replaces_a_conflicting_rule() -> None:
    current = "Use ``` fences for code.\nWrite your entire answer in lowercase letters only."
    feedback = "Violated rules:\n" + RULES_BY_ID["uppercase"].feedback
    example = ReflectionExample("Explain volcanoes to a curious teenager.", "x", 0.0, feedback)
    prompt = reflection_prompt("system_prompt", current, [example])
    assert read_reflection_prompt(prompt).current_text == current
    for k in range(50):
        reply = REFLECTION.answer(prompt, random.Random(k))
        parsed = parse_reflection_answer(reply.text, reply.finish_reason)
        if parsed.text is not None:
            assert "uppercase" in stated_rules(parsed.text)
            assert "lowercase" not in stated_rules(parsed.text)
            assert "Use ``` fences for code." in parsed.text


def test_reflection_without_violations_rewords() -> None:
    current = SEED_PROMPT + " " + RULES_BY_ID["title"].phrasings[0]
    example = ReflectionExample("Explain volcanoes.", "x", 1.0, "All rules satisfied.")
    prompt = reflection_prompt("system_prompt", current, [example])
    texts = set()
    for k in range(30):
        parsed = parse_reflection_answer(*_text_and_reason(prompt, k))
        if parsed.text is not None:
            assert stated_rules(parsed.text) == {"title"}
            assert parsed.text != current
            texts.add(parsed.text)
    assert len(texts) > 1


def _text_and_reason(prompt: str, k: int) -> tuple[str, str]:
    reply = REFLECTION.answer(prompt, random.Random(k))
    return reply.text, reply.finish_reason


def test_malformed_and_truncated_answers_occur_rarely_and_are_rejected() -> None:
    examples = examples_for(SEED_PROMPT, TASK_SET.train[3:6])
    prompt = reflection_prompt("system_prompt", SEED_PROMPT, examples)
    outcomes: Counter[str] = Counter()
    specific = 0
    n = 3000
    for k in range(n):
        reply = REFLECTION.answer(prompt, random.Random(k))
        parsed = parse_reflection_answer(reply.text, reply.finish_reason)
        if reply.finish_reason == "length":
            assert "```" in reply.text and parsed.text is None
            assert parsed.reason.startswith("truncated")
            outcomes["truncated"] += 1
        elif "```" not in reply.text:
            assert parsed.text is None and parsed.reason.startswith("malformed")
            outcomes["malformed"] += 1
        else:
            assert parsed.text is not None
            specific += "When the request is about" in parsed.text
    print(f"\nreflection outcomes of {n}: {dict(outcomes)}, instance-specific {specific}")
    assert 0.018 < outcomes["malformed"] / n < 0.045
    assert 0.01 < outcomes["truncated"] / n < 0.032
    assert 0.18 < specific / n < 0.32


def test_anything_else_gets_a_generic_answer() -> None:
    rng = random.Random(0)
    for messages in (
        [],
        [{"role": "user", "content": "hello"}],
        [{"role": "assistant", "content": "?"}],
        [{"role": "system", "content": "Be nice."}, {"role": "assistant", "content": "ok"}],
        [
            {
                "role": "user",
                "content": "You are improving a piece of text that an AI assistant follows.",
            }
        ],
    ):
        reply = respond(messages, rng)
        assert reply.text
    task_reply = respond(
        [{"role": "system", "content": "x"}, {"role": "user", "content": "Tell me a joke."}], rng
    )
    assert task_reply.kind == "task" and task_reply.text
