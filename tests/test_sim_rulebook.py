"""The rulebook task: checkers agree with the answer builder, instances are sane and seeded."""

from __future__ import annotations

import random

import pytest

from flashevolve_nb.sim import RulebookTask
from flashevolve_nb.sim.answers import compose_answer
from flashevolve_nb.sim.behaviour import _REWORDINGS
from flashevolve_nb.sim.rulebook import TOPICS, topic_of
from flashevolve_nb.sim.rules import CONFLICTS, RULES, RULES_BY_ID, conflicts_with, stated_rules

IDS = [r.id for r in RULES]


def _random_complied(rng: random.Random, max_size: int) -> frozenset[str]:
    chosen: set[str] = set()
    for rule_id in rng.sample(IDS, rng.randint(0, max_size)):
        if not conflicts_with(rule_id) & chosen:
            chosen.add(rule_id)
    return frozenset(chosen)


def test_universe_has_a_few_dozen_rules_and_some_conflicts() -> None:
    assert 24 <= len(RULES) <= 30
    assert len(set(IDS)) == len(IDS)
    assert len({r.feedback for r in RULES}) == len(RULES)
    assert len(CONFLICTS) >= 3
    assert all(len(pair) == 2 and pair <= set(IDS) for pair in CONFLICTS)


@pytest.mark.parametrize("seed", range(5))
def test_builder_and_checkers_agree_for_small_complied_sets(seed: int) -> None:
    rng = random.Random(seed)
    for trial in range(400):
        complied = _random_complied(rng, 6)
        text = compose_answer(rng.choice(TOPICS).name, complied, random.Random(trial))
        for rule in RULES:
            assert rule.check(text) == (rule.id in complied), (rule.id, sorted(complied), text)


@pytest.mark.parametrize("seed", range(3))
def test_builder_keeps_every_rule_but_brevity_for_large_sets(seed: int) -> None:
    rng = random.Random(100 + seed)
    for trial in range(300):
        complied = _random_complied(rng, len(IDS))
        text = compose_answer(rng.choice(TOPICS).name, complied, random.Random(trial))
        for rule in RULES:
            if rule.id != "max_words":
                assert rule.check(text) == (rule.id in complied), (rule.id, sorted(complied))
        if "max_words" not in complied:
            assert not RULES_BY_ID["max_words"].check(text)


def test_builder_refuses_conflicting_sets() -> None:
    with pytest.raises(ValueError, match="conflicting"):
        compose_answer("volcanoes", {"lowercase", "uppercase"}, random.Random(0))


def test_each_phrasing_states_exactly_its_rule() -> None:
    for rule in RULES:
        for phrasing in rule.phrasings:
            assert stated_rules(phrasing) == {rule.id}, phrasing
            assert rule.states(phrasing.upper()) and rule.states(phrasing.lower())


def test_neutral_sentences_state_no_rule() -> None:
    task = RulebookTask()
    neutral = [
        task.seed_candidate()["system_prompt"],
        *_REWORDINGS,
        *(f"When the request is about {t.name}, mention {t.detail}." for t in TOPICS),
        *(i.input for i in task.train + task.val + task.test),
    ]
    for text in neutral:
        assert stated_rules(text) == frozenset(), text


def test_recognisers_tolerate_rewording() -> None:
    assert RULES_BY_ID["end_done"].states("Please conclude each reply with DONE.")
    assert RULES_BY_ID["no_commas"].states("Avoid commas entirely.")
    assert RULES_BY_ID["lowercase"].states("answer in lower-case")
    assert RULES_BY_ID["max_words"].states("Use no more than 40 words.")


def test_instances_are_seeded_and_never_need_a_conflicting_pair() -> None:
    a, b, c = RulebookTask(seed=3), RulebookTask(seed=3), RulebookTask(seed=4)
    assert a.train == b.train and a.val == b.val and a.test == b.test
    assert a.val != c.val
    assert (len(a.train), len(a.val), len(a.test)) == (60, 40, 100)
    for instance in a.train + a.val + a.test:
        assert 3 <= len(instance.rules) <= 5
        assert len(set(instance.rules)) == len(instance.rules)
        assert not any(pair <= set(instance.rules) for pair in CONFLICTS)
        assert topic_of(instance.input) is not None
    ids = [i.id for i in a.train + a.val + a.test]
    assert len(set(ids)) == len(ids)


def test_rule_frequencies_are_skewed() -> None:
    task = RulebookTask(seed=0, n_train=400, n_val=0, n_test=0)
    counts = {r: sum(r in i.rules for i in task.train) for r in IDS}
    ranked = sorted(counts.values(), reverse=True)
    assert ranked[0] > 4 * ranked[-1]


def test_score_feedback_and_messages() -> None:
    task = RulebookTask()
    instance = task.val[0]
    perfect = compose_answer("volcanoes", set(instance.rules), random.Random(0))
    assert task.score(instance, perfect).score == 1.0
    assert task.score(instance, perfect).feedback == "All rules satisfied."
    bad = task.score(instance, "")
    assert bad.score < 1.0
    lines = bad.feedback.splitlines()
    assert lines[0] == "Violated rules:"
    assert set(lines[1:]) <= {RULES_BY_ID[r].feedback for r in instance.rules}
    messages = task.messages({"a": "First.", "b": "Second."}, instance)
    assert messages == [
        {"role": "system", "content": "First.\n\nSecond."},
        {"role": "user", "content": instance.input},
    ]
    assert task.name == "rulebook"
