"""Pool bookkeeping, Pareto fronts and parent selection."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from flashevolve_nb.engine import (
    Artifact,
    CurrentBest,
    EpsilonGreedy,
    Origin,
    ParetoSelector,
    Pool,
    make_selector,
)
from flashevolve_nb.engine.selection import nondominated_front


def art(i: str) -> Artifact:
    return Artifact(id=i, components={"p": f"text {i}"}, origin=Origin.PROPOSAL)


def test_version_increments_on_every_admission_and_removal() -> None:
    pool = Pool(["x", "y"])
    assert pool.version == 0
    e1 = pool.admit(art("a"), [0.1, 0.2], now=1.0)
    e2 = pool.admit(art("b"), [0.3, 0.0], now=2.0)
    assert (e1.version, e2.version, pool.version) == (1, 2, 2)
    assert [e.artifact.id for e in pool.since(1)] == ["b"]
    assert pool.since(2) == ()
    pool.remove("b")
    assert pool.version == 3
    assert "b" not in pool
    assert pool.fronts() == (frozenset({"a"}), frozenset({"a"}))


def test_admission_rejects_duplicates_and_wrong_score_counts() -> None:
    pool = Pool(["x", "y"])
    pool.admit(art("a"), [0.1, 0.2], now=0)
    with pytest.raises(ValueError, match="already in the pool"):
        pool.admit(art("a"), [0.1, 0.2], now=0)
    with pytest.raises(ValueError, match="expected 2 validation scores"):
        pool.admit(art("b"), [0.1], now=0)
    with pytest.raises(ValueError, match="unique"):
        Pool(["x", "x"])


def test_per_instance_fronts_keep_ties_and_specialists() -> None:
    pool = Pool(["i1", "i2", "i3"])
    pool.admit(art("generalist"), [0.8, 0.8, 0.8], now=0)
    pool.admit(art("specialist"), [1.0, 0.0, 0.0], now=0)
    pool.admit(art("tie"), [0.0, 0.8, 0.5], now=0)
    pool.admit(art("weak"), [0.1, 0.1, 0.1], now=0)
    assert pool.fronts() == (
        frozenset({"specialist"}),
        frozenset({"generalist", "tie"}),
        frozenset({"generalist"}),
    )
    assert pool.front_ids() == ("generalist", "specialist", "tie")
    assert pool.best().artifact.id == "generalist"


def test_nondominated_front_drops_redundant_members() -> None:
    pool = Pool(["i1", "i2", "i3"])
    pool.admit(art("generalist"), [0.8, 0.8, 0.8], now=0)
    pool.admit(art("specialist"), [1.0, 0.0, 0.0], now=0)
    # "tie" is only on the i2 front, which "generalist" also covers: redundant.
    pool.admit(art("tie"), [0.0, 0.8, 0.5], now=0)
    assert nondominated_front(pool) == {"generalist": 2, "specialist": 1}


def test_pareto_selection_samples_by_front_frequency_and_is_seeded() -> None:
    pool = Pool(["i1", "i2", "i3"])
    pool.admit(art("generalist"), [0.8, 0.8, 0.8], now=0)
    pool.admit(art("specialist"), [1.0, 0.0, 0.0], now=0)
    pool.admit(art("weak"), [0.1, 0.1, 0.1], now=0)
    sel = ParetoSelector()
    rng = random.Random(7)
    picks = Counter(sel.select(pool, rng).artifact.id for _ in range(3000))
    assert set(picks) == {"generalist", "specialist"}
    assert picks["generalist"] / 3000 == pytest.approx(2 / 3, abs=0.04)
    again = random.Random(7)
    assert [sel.select(pool, again).artifact.id for _ in range(50)] == [
        sel.select(pool, r).artifact.id for r in [random.Random(7)] for _ in range(50)
    ]


def test_current_best_and_epsilon_greedy() -> None:
    pool = Pool(["i1"])
    pool.admit(art("a"), [0.2], now=0)
    pool.admit(art("b"), [0.9], now=0)
    assert CurrentBest().select(pool, random.Random(0)).artifact.id == "b"
    eg = EpsilonGreedy(0.5)
    rng = random.Random(3)
    picks = Counter(eg.select(pool, rng).artifact.id for _ in range(2000))
    assert picks["a"] / 2000 == pytest.approx(0.25, abs=0.04)
    assert make_selector("epsilon_greedy:0.2") == EpsilonGreedy(0.2)
    with pytest.raises(ValueError, match="unknown candidate selection"):
        make_selector("roulette")
    with pytest.raises(ValueError, match="epsilon"):
        EpsilonGreedy(1.5)


def test_artifacts_are_immutable_and_derive_keeps_lineage() -> None:
    parent = Artifact(id="p", components={"a": "one", "b": "two"})
    child = parent.derive("c", {"b": "TWO"}, origin=Origin.HUMAN, base_version=3, created_at=1.0)
    assert dict(child) == {"a": "one", "b": "TWO"}
    assert child.parents == ("p",) and child.origin is Origin.HUMAN and child.base_version == 3
    assert dict(parent) == {"a": "one", "b": "two"}
    with pytest.raises(TypeError):
        child.components["a"] = "x"  # type: ignore[index]
    with pytest.raises(AttributeError):
        child.id = "z"  # type: ignore[misc]
    with pytest.raises(KeyError, match="unknown component"):
        parent.derive("d", {"zz": "x"}, origin=Origin.HUMAN, base_version=0, created_at=0)
    with pytest.raises(ValueError, match="at least one component"):
        Artifact(id="e", components={})
