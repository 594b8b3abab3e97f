"""Events as data: the recorder's DataFrame, the ring, the result frames."""

from __future__ import annotations

import pytest
from toy import ToyWorkload

from flashevolve_nb.engine import Pipeline, PipelineConfig, Recorder, events_frame
from flashevolve_nb.engine.events import Admitted, StepStarted


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_events_become_a_dataframe_with_one_row_per_event() -> None:
    result = await Pipeline(ToyWorkload(max_steps=4), PipelineConfig(depth=2)).run()
    frame = result.events_frame()
    assert list(frame.columns[:3]) == ["seq", "t", "kind"]
    assert len(frame) == len(result.events)
    assert frame["seq"].tolist() == list(range(len(frame)))
    assert frame["t"].is_monotonic_increasing
    admitted = frame[frame.kind == "admitted"]
    assert admitted["version"].tolist() == [1, 2, 3, 4, 5]
    assert set(frame.kind) >= {"run_started", "step_started", "item_queued", "admitted"}

    pool = result.pool_frame()
    assert pool["artifact_id"].tolist() == [e.artifact.id for e in result.pool.entries]
    assert pool["origin"].tolist() == ["seed"] + ["proposal"] * 4
    assert pool.loc[pool.score.idxmax(), "artifact_id"] == result.best.id


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_event_history_keeps_the_most_recent_events_only() -> None:
    pipe = Pipeline(ToyWorkload(max_steps=20), PipelineConfig(event_history=50))
    result = await pipe.run()
    assert len(result.events) == 50
    assert result.events[-1].kind == "run_finished"
    # Statistics are folded in as events arrive, so the ring loses none of them.
    assert result.stats.accepted == 20


def test_empty_frame_has_the_fixed_columns() -> None:
    assert list(events_frame([]).columns) == ["seq", "t", "kind"]
    rec = Recorder(maxlen=2)
    for i in range(3):
        rec(StepStarted(t=float(i), step=i, parent_id="a0", base_version=0))
    assert [e.step for e in rec.events] == [1, 2]  # type: ignore[attr-defined]
    row = Admitted(
        t=1.0, step=1, artifact_id="a1", parents=("a0",), origin="proposal", version=2,
        score=0.5, is_best=True,
    ).to_row()  # fmt: skip
    assert row["kind"] == "admitted" and row["parents"] == ("a0",)
