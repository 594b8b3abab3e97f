"""The engine's synchronous mode on the simulated vLLM server has GEPA's profile.

The simulator's own calibration test drives a hand-written GEPA loop; this one
drives the product: ``mode="sync"`` of the pipeline with the GEPA workload, at
a paper-like validation set (see test_sim_calibration.py for why 150).
Figure 2 of the paper: evaluation takes most of the time (>= 70%), about 10
requests are in flight, task outputs average ~700 tokens with a long tail.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

import pytest

from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine.events import ItemFinished, LLMCallFinished


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_sync_mode_spends_most_time_validating() -> None:
    pipeline = build_demo(
        DemoConfig(mode="sync", n_val=150, n_train=60, n_test=10, minutes=40, time_scale=1.0)
    ).pipeline
    result = await pipeline.run()
    per_stage: dict[str, float] = defaultdict(float)
    for e in result.events:
        if isinstance(e, ItemFinished):
            per_stage[e.stage] += e.duration
    total = result.stats.sim_seconds
    shares = {k: v / total for k, v in per_stage.items()}
    lengths = sorted(
        e.completion_tokens
        for e in result.events
        if isinstance(e, LLMCallFinished) and e.role == "task"
    )
    p99 = lengths[int(0.99 * (len(lengths) - 1))]
    print(
        f"\nsync GEPA on simulated vllm: shares {shares}, in-flight mean "
        f"{result.stats.inflight_mean:.1f} peak {result.stats.inflight_peak}, task tokens mean "
        f"{statistics.mean(lengths):.0f} p99 {p99}, steps {result.stats.steps}"
    )
    assert shares["validate"] + shares["gate"] >= 0.70
    assert shares["validate"] >= 0.6
    assert 5.0 <= result.stats.inflight_mean <= 12.0
    assert result.stats.inflight_peak <= 10
    assert 550 <= statistics.mean(lengths) <= 900
    assert p99 >= 4000
