"""ACE values: the playbook format, delta application, ids at apply time, rebase."""

from __future__ import annotations

import itertools
import random

import pytest

from flashevolve_nb.engine import Artifact
from flashevolve_nb.workloads.ace import (
    Add,
    Bullet,
    BulletIds,
    Delete,
    Delta,
    Merge,
    Playbook,
    PlaybookFormatError,
    Tag,
    Update,
    apply_delta,
)
from flashevolve_nb.workloads.ace.delta import resolve
from flashevolve_nb.workloads.ace.playbook import normalise
from flashevolve_nb.workloads.ace.rebase import moves, rebase

TEXT = """\
## guidelines
[b-1] helpful=0 harmful=0 :: Read the request carefully before answering.
[b-4] helpful=3 harmful=1 :: Stay on the topic of the request.

## formatting
[b-2] helpful=2 harmful=0 :: End every answer with the word DONE.

## pitfalls
"""


def ids_from(start: int) -> BulletIds:
    return BulletIds(start)


# ---- the text format ----------------------------------------------------------------


def test_playbook_text_round_trips() -> None:
    pb = Playbook.parse(TEXT)
    assert pb.sections == ("guidelines", "formatting", "pitfalls")
    assert pb.ids() == ("b-1", "b-4", "b-2")
    assert pb.get("b-4") == Bullet("b-4", "guidelines", "Stay on the topic of the request.", 3, 1)
    assert pb.render() == TEXT
    assert Playbook.parse(pb.render()) == pb
    assert pb.max_number() == 4


def test_a_playbook_keeps_section_order_and_one_line_bullets() -> None:
    pb = Playbook(
        ("a",),
        (Bullet("b-2", "b", "second\nline"), Bullet("b-1", "a", "first"), Bullet("x", "b", "z")),
    )
    assert pb.sections == ("a", "b")
    assert pb.ids() == ("b-1", "b-2", "x")
    assert pb.get("b-2") is not None and pb.get("b-2").content == "second line"  # type: ignore[union-attr]
    assert Playbook.parse(pb.render()) == pb
    assert Playbook().render() == "" and Playbook.parse("") == Playbook()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[b-1] helpful=0 harmful=0 :: x", "line 1: a bullet before any '## section' line"),
        ("## a\n- a loose line", "line 2: expected '## section'"),
        ("## a\n[b-1] helpful=0 harmful=0 :: x\n[b-1] helpful=0 harmful=0 :: y", "appears twice"),
        ("## a\n## a", "line 2: section 'a' appears twice"),
        ("## a\n[b-1] helpful=-1 harmful=0 :: x", "line 2: expected"),
    ],
)
def test_a_malformed_playbook_names_its_line(text: str, message: str) -> None:
    with pytest.raises(PlaybookFormatError, match=message):
        Playbook.parse(text)


def test_normalised_text_ignores_case_punctuation_and_spacing() -> None:
    assert normalise("End every answer with the word DONE.") == normalise(
        "  end every answer, with the word 'done'!"
    )
    assert normalise("Use ISO dates") != normalise("Use US dates")


# ---- applying a delta -------------------------------------------------------------------


def test_ids_are_allocated_when_a_delta_is_applied_not_when_proposed() -> None:
    pb = Playbook.parse(TEXT)
    ids = ids_from(5)
    ids.observe(pb)
    # Two steps propose from the same playbook at once: neither names an id.
    first = Delta((Add("formatting", "Write all dates in ISO format."),))
    second = Delta((Add("formatting", "Do not use any commas in your answer."),))
    a = apply_delta(pb, first, ids.allocate)
    b = apply_delta(pb, second, ids.allocate)
    assert a.added == ("b-5",) and b.added == ("b-6",)
    # Applied in the other order, the ids follow the order of application.
    again = ids_from(5)
    assert apply_delta(pb, second, again.allocate).added == ("b-5",)
    # A counter never hands out an id a playbook uses.
    low = BulletIds(1)
    low.observe(pb)
    assert low.allocate() == "b-5"


def test_every_operation_applies_and_is_recorded() -> None:
    pb = Playbook.parse(TEXT)
    delta = Delta(
        (
            Add("pitfalls", "Do not invent dates."),
            Update("b-1", "Read the whole request first."),
            Merge(("b-4", "b-1"), "Read the whole request and stay on its topic."),
            Delete("b-2"),
        ),
        (Tag("b-1", "helpful"), Tag("b-2", "harmful")),
    )
    applied = apply_delta(pb, delta, ids_from(10).allocate)
    out = applied.playbook
    assert applied.added == ("b-10", "b-11")
    assert applied.updated == ("b-1",) and applied.deleted == ("b-2",)
    assert applied.merged == {"b-1": "b-11", "b-4": "b-11"}
    assert out.ids() == ("b-11", "b-10")
    merged = out.get("b-11")
    assert merged == Bullet(
        "b-11", "guidelines", "Read the whole request and stay on its topic.", 4, 1
    )
    assert out.in_section("pitfalls")[0].content == "Do not invent dates."
    assert applied.tags_applied == 2 and applied.changed_bullets
    record = applied.record()
    assert record["merged"] == {"b-1": "b-11", "b-4": "b-11"} and record["deleted"] == ["b-2"]


def test_tags_follow_merges_and_are_dropped_for_deleted_bullets() -> None:
    pb = Playbook.parse(TEXT)
    ids = ids_from(10)
    # Meanwhile, b-1 and b-4 were merged into b-10 and b-2 was deleted.
    newer = apply_delta(
        pb, Delta((Merge(("b-1", "b-4"), "Read and stay on topic."), Delete("b-2"))), ids.allocate
    )
    assert newer.merged == {"b-1": "b-10", "b-4": "b-10"}
    moved = {k: [v] for k, v in newer.merged.items()}
    stale = Delta(
        (Add("formatting", "Write numbers as digits."),),
        (
            Tag("b-1", "helpful"),
            Tag("b-4", "harmful"),
            Tag("b-2", "helpful"),
            Tag("b-9", "harmful"),
        ),
    )
    applied = apply_delta(newer.playbook, stale, ids.allocate, moved)
    assert (applied.tags_applied, applied.tags_remapped, applied.tags_dropped) == (0, 2, 2)
    b10 = applied.playbook.get("b-10")
    assert b10 is not None and (b10.helpful, b10.harmful) == (3 + 1, 1 + 1)
    assert any("moved to b-10" in n for n in applied.notes)
    assert any("b-2 dropped" in n for n in applied.notes)


def test_update_and_delete_of_a_gone_bullet_are_dropped_merge_follows() -> None:
    pb = Playbook.parse(TEXT)
    ids = ids_from(10)
    newer = apply_delta(pb, Delta((Merge(("b-1", "b-4"), "Merged."),)), ids.allocate).playbook
    moved = {"b-1": ["b-10"], "b-4": ["b-10"]}
    stale = Delta(
        (
            Update("b-1", "Read slowly."),
            Delete("b-4"),
            Merge(("b-1", "b-2"), "Merged again with DONE."),
        )
    )
    applied = apply_delta(newer, stale, ids.allocate, moved)
    assert applied.operations_dropped == 2
    assert applied.merged == {"b-10": "b-11", "b-2": "b-11"}
    assert applied.playbook.ids() == ("b-11",)
    assert resolve("b-1", applied.playbook, {**moved, "b-10": ["b-11"]}) == "b-11"
    assert resolve("b-3", applied.playbook, moved) is None


def test_duplicate_adds_and_updates_are_skipped_and_counted() -> None:
    pb = Playbook.parse(TEXT)
    applied = apply_delta(
        pb,
        Delta(
            (
                Add("formatting", "end every answer with the word done"),
                Update("b-1", "Stay on the topic of the request!"),
                Update("b-4", "stay on the topic of the request."),
            )
        ),
        ids_from(10).allocate,
    )
    assert applied.duplicates == 2 and not applied.changed_bullets
    assert applied.playbook == pb


# ---- rebase -------------------------------------------------------------------------------


def test_a_stale_delta_is_rebased_onto_the_newest_playbook_without_duplicates() -> None:
    base = Playbook.parse(TEXT)
    ids = ids_from(5)
    # Two steps start from ``base``; the first one's delta is admitted first.
    fresh = Delta((Add("formatting", "Write all dates in ISO format (YYYY-MM-DD)."),))
    stale = Delta(
        (
            Add("formatting", "write all dates in ISO format (yyyy-mm-dd)"),
            Add("formatting", "Do not use any commas in your answer."),
            Update("b-4", "Stay on topic."),
        ),
        (Tag("b-2", "helpful"),),
    )
    newest = apply_delta(base, fresh, ids.allocate).playbook
    applied = rebase(stale, newest, ids, {})
    out = applied.playbook
    assert applied.duplicates == 1
    assert applied.added == ("b-6",)
    assert out.ids() == ("b-1", "b-4", "b-2", "b-5", "b-6")
    assert out.get("b-4").content == "Stay on topic."  # type: ignore[union-attr]
    assert out.get("b-2").helpful == 3  # type: ignore[union-attr]
    assert len({normalise(b.content) for b in out}) == len(out)


def test_moves_are_read_from_the_artifacts_records() -> None:
    arts = [
        Artifact("a1", {"playbook": ""}, meta={"ace": {"merged": {"b-1": "b-5"}}}),
        Artifact("a2", {"playbook": ""}, meta={"ace": {"merged": {"b-1": "b-7", "b-5": "b-9"}}}),
        Artifact("a3", {"playbook": ""}, meta={"ace": "not a record"}),
        Artifact("a4", {"playbook": ""}),
    ]
    assert moves(arts) == {"b-1": ["b-5", "b-7"], "b-5": ["b-9"]}


def _random_delta(rng: random.Random, pb: Playbook) -> Delta:
    existing = list(pb.ids())
    phrases = [f"Rule number {k}." for k in range(8)]
    ops: list[Add | Update | Merge | Delete] = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["add", "add", "update", "merge", "delete"])
        if kind == "add" or not existing:
            ops.append(Add(rng.choice(["x", "y"]), rng.choice(phrases)))
        elif kind == "update":
            ops.append(Update(rng.choice(existing), rng.choice(phrases)))
        elif kind == "merge" and len(existing) >= 2:
            ops.append(Merge(tuple(rng.sample(existing, 2)), rng.choice(phrases)))
        else:
            ops.append(Delete(rng.choice(existing)))
    tags = tuple(
        Tag(rng.choice(existing), rng.choice(["helpful", "harmful"])) for _ in range(2) if existing
    )
    return Delta(tuple(ops), tags)


def test_rebased_concurrent_deltas_in_any_order_leave_no_duplicate_ids_or_dangling_tags() -> None:
    rng = random.Random(17)
    for _ in range(40):
        base = Playbook.parse(TEXT)
        deltas = [_random_delta(rng, base) for _ in range(4)]  # all proposed from ``base``
        for order in itertools.islice(itertools.permutations(deltas), 6):
            ids = BulletIds()
            ids.observe(base)
            current, history = base, Artifact("seed", {"playbook": base.render()})
            artifacts = [history]
            allocated: list[str] = []
            for delta in order:
                applied = rebase(delta, current, ids, moves(artifacts))
                current = applied.playbook
                artifacts.append(
                    Artifact(f"a{len(artifacts)}", {"playbook": ""}, meta={"ace": applied.record()})
                )
                allocated += applied.added
                assert applied.tags_applied + applied.tags_remapped + applied.tags_dropped == len(
                    delta.tags
                )
                assert Playbook.parse(current.render()) == current
                assert len(set(current.ids())) == len(current)
                assert len({normalise(b.content) for b in current}) == len(current)
            assert len(set(allocated)) == len(allocated)  # an id is never handed out twice
