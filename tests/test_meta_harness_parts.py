"""Meta-Harness's parts without a run: the proposer's parser, the history directory,
the harness template, and the pool's front of accuracy against context tokens."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest

from flashevolve_nb.engine import Artifact, Pool
from flashevolve_nb.engine.selection import ParetoSelector, nondominated_front
from flashevolve_nb.store.codec import artifact_row, decode_scores, encode_scores
from flashevolve_nb.store.resume import load_pool
from flashevolve_nb.store.schema import _SCHEMA
from flashevolve_nb.workloads.meta_harness import (
    CandidateRecord,
    HistoryDir,
    Knobs,
    parse_proposal,
    read_knobs,
    render,
)
from flashevolve_nb.workloads.meta_harness.prompts import PROPOSER_MARKER, proposer_prompt
from flashevolve_nb.workloads.meta_harness.sandbox import Sandbox, SandboxLimits
from flashevolve_nb.workloads.meta_harness.simulated import PROPOSER, TicketTask

CODE = "def update_memory(m, e):\n    return m\n\ndef build_context(t, m):\n    return []\n"


# ---- the proposer's parser ---------------------------------------------------------
def test_the_parser_takes_the_last_block_that_defines_build_context() -> None:
    answer = (
        "I add retrieval.\n\n```python\nprint('a sketch')\n```\n\nThe program:\n"
        f"```python\n{CODE}```\n\nAnd a usage note:\n```\nrun it\n```\n"
    )
    parsed = parse_proposal(answer)
    assert parsed.code == CODE
    assert parsed.rationale.startswith("I add retrieval.")
    # Without a defining block, the last Python (or bare) block.
    assert parse_proposal("```py\nx = 1\n```").code == "x = 1\n"


@pytest.mark.parametrize(
    ("answer", "finish", "reason"),
    [
        ("I would add retrieval.", "stop", "no fenced code block in the answer"),
        ("Thinking...", "length", "no fenced code block in the answer (the answer was cut "
                                  "off at the token limit)"),
        (f"Here:\n```python\n{CODE[:30]}", "length", "the code block is never closed (the "
                                                     "answer was cut off at the token limit)"),
        ("```json\n{}\n```", "stop", "no Python code block in the answer"),
        ("```python\n\n```", "stop", "the code block is empty"),
    ],
)  # fmt: skip
def test_a_malformed_answer_has_no_program_and_a_reason(
    answer: str, finish: str, reason: str
) -> None:
    parsed = parse_proposal(answer, finish)  # type: ignore[arg-type]
    assert parsed.code is None and parsed.reason == reason


def test_the_prompt_shows_interface_history_and_parent() -> None:
    prompt = proposer_prompt("Files:\n- 0000-a0/harness.py", "a0", CODE, 0.25, 40.0)
    assert prompt.startswith(PROPOSER_MARKER)
    assert "def build_context(task, memory):" in prompt  # the interface
    assert "- 0000-a0/harness.py" in prompt
    assert "## Parent harness a0 (accuracy 0.2500, context tokens per task 40)" in prompt
    assert f"```python\n{CODE}```" in prompt


# ---- the history directory -----------------------------------------------------------
def test_the_history_holds_every_candidate_uncompressed(tmp_path: Path) -> None:
    history = HistoryDir(tmp_path / "history")
    assert history.render(10_000) == "(no candidates yet)"
    trace = {"task": "v0", "messages": [{"role": "user", "content": "hi"}], "answers": ["x"],
             "answer": "x", "score": 1.0, "feedback": "correct", "prompt_tokens": 5}  # fmt: skip
    history.record(CandidateRecord("a0", None, 0, CODE, "evaluated", accuracy=1.0,
                                   context_tokens=5.0, scores={"v0": 1.0},
                                   traces=[trace]))  # fmt: skip
    history.record(CandidateRecord("a3", "a0", 2, "def broken(:\n", "failed",
                                   "syntax: SyntaxError at line 1"))  # fmt: skip
    folders = history.folders()
    assert [f.name for f in folders] == ["0000-a0", "0001-a3"]
    assert sorted(p.name for p in folders[0].iterdir()) == [
        "harness.py", "scores.json", "traces.jsonl"
    ]  # fmt: skip
    assert (folders[0] / "harness.py").read_text() == CODE
    scores = json.loads((folders[0] / "scores.json").read_text())
    assert scores == {"candidate": "a0", "parent": None, "step": 0, "status": "evaluated",
                      "reason": "", "accuracy": 1.0, "context_tokens": 5.0,
                      "scores": {"v0": 1.0}}  # fmt: skip
    lines = (folders[0] / "traces.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [trace]
    failed = json.loads((folders[1] / "scores.json").read_text())
    assert failed["status"] == "failed" and failed["reason"].startswith("syntax:")
    shown = history.render(100_000)
    assert "- 0001-a3/traces.jsonl" in shown
    # Newest first, whole files.
    assert shown.index("### 0001-a3/scores.json") < shown.index("### 0000-a0/scores.json")
    assert f"### 0000-a0/harness.py\n```python\n{CODE.rstrip()}\n```" in shown
    # A small budget keeps code and scores before traces, and names what it left out.
    small = history.render(len(shown) - 10)
    assert "### 0000-a0/harness.py" in small and "### 0000-a0/traces.jsonl" not in small
    assert "still in the directory: 1 file(s), e.g. 0000-a0/traces.jsonl" in small
    # A new HistoryDir over the same root continues the numbering.
    again = HistoryDir(tmp_path / "history")
    assert again.record(CandidateRecord("a9", "a0", 5, CODE, "failed", "timeout")).name == (
        "0002-a9"
    )


# ---- the template and the simulated proposer ----------------------------------------------
def test_rendered_harnesses_read_back_and_run_in_the_sandbox() -> None:
    knobs = Knobs(retrieve=3, selection="similar", list_labels=True, format_hint=True,
                  samples=3, per_label=2)  # fmt: skip
    code = render(knobs)
    assert read_knobs(code) == knobs and read_knobs(CODE) is None
    task = TicketTask(seed=0, n_train=12, n_val=2, n_test=1)
    train = [{"id": t.id, "input": t.input, "output": t.output} for t in task.train]
    result = Sandbox(SandboxLimits(time_limit=2.0)).run(
        code, train, [{"id": v.id, "input": v.input} for v in task.val]
    )
    assert result.ok, result.failure
    assert result.samples == 3
    system = result.contexts[0][0]["content"]
    assert "Labels: " in system and "Answer with 'Label: <label>' only." in system
    assert system.count("Input: ") == 3


def test_the_simulated_proposer_edits_what_the_traces_point_at() -> None:
    parent = render(Knobs())
    trace = {"feedback": "answer not in the 'Label: <label>' format"}
    history = (
        "Files:\n\n### 0000-a0/harness.py\n```python\n" + parent + "```\n"
        "### 0000-a0/traces.jsonl\n```\n" + "\n".join([json.dumps(trace)] * 9) + "\n```\n"
    )
    prompt = proposer_prompt(history, "a0", parent, 0.1, 30.0)
    picks = []
    for seed in range(40):
        code = parse_proposal(PROPOSER.answer(prompt, random.Random(seed)).text).code
        knobs = read_knobs(code) if code else None
        if knobs is not None:
            picks.append(knobs)
    assert Knobs() not in picks  # never the tried parent again
    assert sum(k.format_hint for k in picks) > len(picks) / 2


# ---- the pool's objectives --------------------------------------------------------------
def _pool() -> Pool:
    pool = Pool(["v0", "v1"], {"context_tokens": "min"})
    for aid, scores, tokens in [
        ("cheap", (0.0, 0.5), 10.0),
        ("best", (1.0, 1.0), 300.0),
        ("middle", (0.5, 1.0), 50.0),
        ("dominated", (0.5, 0.5), 60.0),
    ]:
        pool.admit(Artifact(aid, {"harness": aid}), scores, 0.0,
                   objectives={"context_tokens": tokens})  # fmt: skip
    return pool


def test_the_pool_keeps_the_front_of_accuracy_against_context_tokens() -> None:
    pool = _pool()
    assert pool.objective_front() == {"cheap", "best", "middle"}
    assert pool.entry("middle").objectives == {"context_tokens": 50.0}
    # The instance fronts alone know only "best"; the frontier adds the trade-offs.
    assert set().union(*pool.fronts()) == {"best", "middle"}
    assert pool.front_ids() == ("cheap", "best", "middle")
    counts = nondominated_front(pool)
    assert counts["cheap"] == 1 and counts["best"] >= 2 and "dominated" not in counts
    picked = {ParetoSelector().select(pool, random.Random(s)).artifact.id for s in range(60)}
    assert picked == {"cheap", "best", "middle"}
    # A pool without objectives is the pool it always was.
    plain = Pool(["v0", "v1"])
    plain.admit(Artifact("x", {"harness": "x"}), (1.0, 0.0), 0.0)
    assert plain.objective_front() == frozenset() and plain.entry("x").objectives == {}


def test_objectives_must_be_declared_and_finite() -> None:
    pool = Pool(["v0"], {"context_tokens": "min"})
    with pytest.raises(ValueError, match=r"not declared by this pool"):
        pool.admit(Artifact("a", {"h": "a"}), (1.0,), 0.0, objectives={"latency": 1.0})
    with pytest.raises(ValueError, match="finite"):
        pool.admit(Artifact("a", {"h": "a"}), (1.0,), 0.0,
                   objectives={"context_tokens": float("nan")})  # fmt: skip
    with pytest.raises(ValueError, match="direction must be"):
        Pool(["v0"], {"context_tokens": "lower"})  # type: ignore[dict-item]
    # An entry without values (speculative, measured later) sits on no objective front.
    pool.admit(Artifact("a", {"h": "a"}), (1.0,), 0.0)
    pool.admit(Artifact("b", {"h": "b"}), (0.0,), 0.0, objectives={"context_tokens": 5.0})
    assert pool.objective_front() == {"b"}


def test_stored_objectives_round_trip_and_old_stores_read_as_none() -> None:
    assert decode_scores(encode_scores((1.0, 0.5), {})) == ((1.0, 0.5), {})
    assert encode_scores((1.0,), {}) == "[1.0]"  # what stores always held
    text = encode_scores((1.0, 0.5), {"context_tokens": 12.5})
    assert decode_scores(text) == ((1.0, 0.5), {"context_tokens": 12.5})
    assert decode_scores(None) == ((), {})
    # A pool log as the store writes it, in the old and the new encoding.
    conn = sqlite3.connect(":memory:")
    conn.executescript(_SCHEMA)
    for aid in ("old", "new"):
        conn.execute("INSERT INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     artifact_row(Artifact(aid, {"harness": aid})))  # fmt: skip
    log = "INSERT INTO pool_log (session, change, version, artifact_id, scores, speculative, t) "
    conn.execute(log + "VALUES (1, 'admit', 1, 'old', '[0.5]', 0, 0.0)")
    conn.execute(log + "VALUES (1, 'admit', 2, 'new', ?, 0, 1.0)",
                 (encode_scores((0.25,), {"context_tokens": 9.0}),))  # fmt: skip
    entries, version = load_pool(conn)
    assert version == 2
    assert [(e.artifact.id, e.scores, dict(e.objectives)) for e in entries] == [
        ("old", (0.5,), {}), ("new", (0.25,), {"context_tokens": 9.0})
    ]  # fmt: skip
    pool = Pool(["v0"], {"context_tokens": "min"})
    pool.restore(entries, version)
    assert pool.objective_front() == {"new"}
