"""The run store: what a run writes, reading it back, and refusing directories not ours."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from toy import ToyWorkload

from flashevolve_nb import open_run
from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine import Budget, Pipeline, PipelineConfig
from flashevolve_nb.engine.events import Admitted, PolicyDecision
from flashevolve_nb.llm.secret import Secret
from flashevolve_nb.store import (
    CorruptRunDir,
    ForeignRunDir,
    IncompatibleRun,
    NothingToResume,
    RunDirError,
    RunDirInUse,
    RunExists,
    attach,
)
from flashevolve_nb.store.schema import DB_NAME


def toy_pipeline(seconds: float = 40.0, **config: object) -> Pipeline:
    return Pipeline(
        ToyWorkload(),
        PipelineConfig(depth=3, budget=Budget(max_sim_seconds=seconds), **config),  # type: ignore[arg-type]
    )


def tree_digest(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_stored_run_reads_back_as_the_live_run(tmp_path: Path) -> None:
    # The GEPA demo with a staleness policy: events of many kinds, artifacts inside events.
    demo = build_demo(DemoConfig(minutes=6, n_val=12, policy="guarded:1", staleness_lab=True))
    store = attach(demo.pipeline, tmp_path / "run", config={"note": "round trip"})
    live = await demo.run()
    assert store.closed  # the store closes itself when the run ends
    assert any(isinstance(e, PolicyDecision) and e.artifact is not None for e in live.events)

    with open_run(tmp_path / "run") as stored:
        assert stored.status == "finished"
        assert stored.events_frame().equals(live.events_frame())
        result = stored.result()
        assert result.finish_reason == live.finish_reason
        assert (result.mode, result.seed) == (live.mode, live.seed)
        assert result.stats == live.stats
        assert result.pool == live.pool
        assert result.best.components == live.best.components
        assert result.pool_frame().equals(live.pool_frame())
        # Lineage: every admitted artifact leads back to the seed.
        for entry in live.pool.entries:
            chain = stored.lineage(entry.artifact.id)
            assert chain[0] == entry.artifact and chain[-1].origin == "seed"
        usage = stored.usage_frame()
        assert set(usage.role) == {"task", "reflection"}
        assert usage.prompt_tokens.sum() + usage.completion_tokens.sum() == live.stats.tokens
        assert stored.sessions[0].config["run"] == {"note": "round trip"}
        assert stored.sessions[0].config["pipeline"]["policy"] == "guarded:1"


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_an_admission_is_durable_before_it_is_reported(tmp_path: Path) -> None:
    p = toy_pipeline()
    attach(p, tmp_path / "run")
    db = tmp_path / "run" / DB_NAME
    seen: list[tuple[int, bool]] = []

    def check(e: object) -> None:
        if isinstance(e, Admitted):
            # Another connection, as another process would read it, at the moment of the report.
            with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as other:
                row = other.execute(
                    "SELECT artifact_id FROM pool_log WHERE change = 'admit' AND version = ?",
                    (e.version,),
                ).fetchone()
            seen.append((e.version, row == (e.artifact_id,)))

    p.bus.subscribe(check)
    await p.run()
    assert len(seen) > 5
    assert all(durable for _, durable in seen)
    assert [v for v, _ in seen] == list(range(1, len(seen) + 1))


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_secrets_never_reach_the_store(tmp_path: Path) -> None:
    p = toy_pipeline(10)
    config = {
        "api_key": "sk-live-123456",
        "backend": {"token": "tok-abcdef", "base_url": "http://user:pw-98765@host:8000/v1"},
        "key": Secret("sk-other-424242"),
        "max_tokens": 300,
    }
    attach(p, tmp_path / "run", config=config)
    await p.run()
    raw = b"".join(f.read_bytes() for f in (tmp_path / "run").iterdir())
    for secret in (b"sk-live-123456", b"tok-abcdef", b"pw-98765", b"sk-other-424242"):
        assert secret not in raw
    with open_run(tmp_path / "run") as stored:
        run = stored.config["run"]
    assert run["api_key"] == "***" and run["key"] == "***" and run["max_tokens"] == 300
    assert run["backend"] == {"token": "***", "base_url": "http://***@host:8000/v1"}


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_with_a_store_memory_keeps_a_ring_of_events(tmp_path: Path) -> None:
    p = toy_pipeline(200)
    attach(p, tmp_path / "run", memory_events=50)
    result = await p.run()
    assert len(result.events) == 50
    with open_run(tmp_path / "run") as stored:
        assert len(stored.events) > 400
        assert stored.events[-50:] == result.events  # frozen dataclasses compare by value
        assert stored.stats == result.stats


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_store_that_cannot_write_stops_the_run(tmp_path: Path) -> None:
    p = toy_pipeline(1000)
    store = attach(p, tmp_path / "run")
    reported: list[int] = []

    def fill_the_disk(e: object) -> None:
        if isinstance(e, Admitted):
            reported.append(e.version)
            if e.version == 5:  # SQLite's own "database or disk is full" from now on
                pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
                store._conn.execute(f"PRAGMA max_page_count = {pages}")

    p.bus.subscribe(fill_the_disk)
    result = await p.run()
    assert result.finish_reason.startswith("failed: the run store could not write")
    assert p.state == "failed"
    with open_run(tmp_path / "run") as stored:
        log = stored.pool_log()
    # Nothing was reported that the store does not hold.
    assert set(reported) <= set(log.version)


def test_a_foreign_directory_is_refused_and_left_alone(tmp_path: Path) -> None:
    d = tmp_path / "notes"
    d.mkdir()
    (d / "thesis.txt").write_text("three years of work")
    before = tree_digest(d)
    with pytest.raises(ForeignRunDir, match=r"not empty and holds no flashevolve_nb run.*thesis"):
        attach(toy_pipeline(), d)
    with pytest.raises(ForeignRunDir):
        attach(toy_pipeline(), d, resume=True)
    assert tree_digest(d) == before

    f = tmp_path / "a-file"
    f.write_text("x")
    with pytest.raises(ForeignRunDir, match="is a file"):
        attach(toy_pipeline(), f)


def test_a_foreign_or_damaged_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    other = tmp_path / "other-app"
    other.mkdir()
    with sqlite3.connect(other / DB_NAME) as c:
        c.execute("CREATE TABLE accounts (id INTEGER, balance REAL)")
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / DB_NAME).write_bytes(b"this is no database" * 100)
    for d, error, match in (
        (other, ForeignRunDir, "not a flashevolve_nb run store"),
        (garbage, CorruptRunDir, "not a readable SQLite database"),
    ):
        before = tree_digest(d)
        for resume in (False, True):
            with pytest.raises(error, match=match):
                attach(toy_pipeline(), d, resume=resume)
        with pytest.raises(error):
            open_run(d)
        assert tree_digest(d) == before


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_an_existing_run_is_never_overwritten(tmp_path: Path) -> None:
    d = tmp_path / "run"
    p = toy_pipeline(10)
    attach(p, d)
    await p.run()
    before = tree_digest(d)
    with pytest.raises(RunExists, match=r"already holds a run \(1 session.*resume=True"):
        attach(toy_pipeline(), d)
    assert tree_digest(d) == before
    assert isinstance(RunExists("x"), ValueError)  # bad input, as a config mistake is


def test_resume_needs_a_run_and_a_newer_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NothingToResume, match="no run is stored"):
        attach(toy_pipeline(), tmp_path / "nothing", resume=True)
    assert not (tmp_path / "nothing").exists()
    with pytest.raises(RunDirError, match="no run is stored"):
        open_run(tmp_path / "nothing")

    d = tmp_path / "future"
    store = attach(toy_pipeline(), d)
    store.close()
    with sqlite3.connect(d / DB_NAME) as c:
        c.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'")
    with pytest.raises(RunDirError, match=r"store format 99.*Upgrade flashevolve_nb"):
        attach(toy_pipeline(), d, resume=True)


def test_a_run_being_written_is_not_opened_for_writing_twice(tmp_path: Path) -> None:
    d = tmp_path / "run"
    first = attach(toy_pipeline(), d)
    try:
        with pytest.raises(RunDirInUse, match=r"is being written by pid \d+"):
            attach(toy_pipeline(), d, resume=True)
        with open_run(d) as stored:  # reading is fine meanwhile
            assert stored.status == "running"
    finally:
        first.close()
    attach(toy_pipeline(), d, resume=True).close()


def test_a_run_continues_only_with_its_own_validation_set(tmp_path: Path) -> None:
    d = tmp_path / "run"
    attach(toy_pipeline(), d).close()
    other = Pipeline(ToyWorkload(n_instances=5), PipelineConfig())
    with pytest.raises(IncompatibleRun, match=r"validated on 3 instance.*validates on 5"):
        attach(other, d, resume=True)
