"""A workload written from docs/WORKLOADS.md only runs with every engine mechanism.

``examples/third_party_workload.py`` evolves a selection of hints with its own
stages; these tests check that a run of it is judged by the chosen staleness
policy, speculates (and settles every speculation), is steered by the adaptive
controller, improves on its seed and is reproducible under a seed. They also
check that the Python in docs/WORKLOADS.md compiles, that its excerpts are
still in the files they name, and that its complete blocks run.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from collections import Counter
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

from flashevolve_nb.engine import (
    DecisionPoints,
    ModelRoles,
    PartialStages,
    PendingValidations,
    Rebasing,
    RunResult,
    StepsFromParent,
    ValidationStage,
)
from flashevolve_nb.engine.events import (
    Admitted,
    ControllerAction,
    PolicyDecision,
    SpeculationConfirmed,
    SpeculationRolledBack,
    SpeculativeAdmitted,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "third_party_workload.py"
DOC = ROOT / "docs" / "WORKLOADS.md"


def example() -> ModuleType:
    name = "third_party_workload_example"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
    return sys.modules[name]


@cache
def run(policy: str, seed: int = 0, minutes: float = 20.0) -> RunResult:
    ex = example()
    result: RunResult = ex.run(ex.build(seed, minutes, policy))
    return result


def of(result: RunResult, kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in result.events if isinstance(e, kind)]


# ---- the contract ---------------------------------------------------------------------
def test_the_example_meets_the_capabilities_speculation_and_policies_need() -> None:
    workload = example().build().workload
    for capability in (
        DecisionPoints, ValidationStage, PartialStages, PendingValidations, StepsFromParent,
        ModelRoles, Rebasing,
    ):  # fmt: skip
        assert isinstance(workload, capability), capability.__name__
    assert workload.validation_stage in workload.partial_stages
    assert workload.llm_for("repair") is not workload.llm_for("task")
    with pytest.raises(KeyError, match="roles: task, repair"):
        workload.llm_for("curator")


# ---- one run, each mechanism -----------------------------------------------------------
@pytest.mark.parametrize("policy", ["reflective", "guarded"])
def test_a_run_uses_the_policy_speculation_and_the_controller(policy: str) -> None:
    result = run(policy)
    s = result.stats
    assert s.items_failed == 0 and s.llm_errors == 0
    # Staleness: stale proposals met the chosen policy at the workload's decision points.
    decisions = of(result, PolicyDecision)
    assert decisions and {d.policy for d in decisions} == {policy}
    assert {d.point for d in decisions} == {"validate", "admit"}
    assert len(decisions) == sum(s.decisions.values())
    assert 0 <= s.stale_seen - len(decisions) <= 1  # a repair call the deadline cut short
    # Speculation: admitted on a validation prefix, then confirmed or rolled back, all settled.
    assert s.partial_releases > 0
    assert s.speculative_admitted == len(of(result, SpeculativeAdmitted)) > 0
    assert s.speculation_confirmed == len(of(result, SpeculationConfirmed))
    assert s.speculation_rolled_back == len(of(result, SpeculationRolledBack))
    assert s.speculation_confirmed + s.speculation_rolled_back == s.speculative_admitted
    assert s.speculation_confirmed > 0 and s.speculation_rolled_back > 0
    assert not any(e.speculative for e in result.pool.entries)
    # The adaptive controller moved workers or depth.
    actions = of(result, ControllerAction)
    assert s.controller_actions == len(actions) > 0
    assert {a.source for a in actions} == {"controller"}
    # And the evolution worked.
    assert s.proposals > 0 and s.accepted > 0
    assert result.best_score > s.seed_score + 0.2


def test_guarded_accepts_mild_staleness_and_discards_the_rest() -> None:
    decisions = of(run("guarded"), PolicyDecision)
    by = Counter(d.decision for d in decisions)
    assert by["accept"] > 0 and by["discard"] > 0 and set(by) == {"accept", "discard"}
    for d in decisions:
        assert (d.decision == "accept") == (d.staleness <= 2), d


def test_reflective_repairs_are_validated_and_admitted() -> None:
    result = run("reflective")
    patches = [d for d in of(result, PolicyDecision) if d.decision == "patch"]
    assert patches and all(d.replacement is not None for d in patches)
    repaired = {e.artifact_id for e in of(result, Admitted) if e.origin == "repair"}
    assert repaired & {d.replacement.id for d in patches if d.replacement}
    assert result.stats.repaired_admitted > 0


def test_rebase_reapplies_a_stale_swap_onto_the_best() -> None:
    result = run("rebase", minutes=8.0)
    patches = [d for d in of(result, PolicyDecision) if d.decision == "patch"]
    assert patches, result.stats.decisions
    for d in patches:
        assert d.replacement is not None and d.replacement.note.startswith("rebase of ")
    assert result.stats.repaired_admitted > 0


def test_the_same_seed_gives_the_same_events_and_another_seed_others() -> None:
    def rows(result: RunResult) -> list[dict[str, object]]:
        # Exactly, in order: a step's speculative tails are cancelled in the order they
        # started, so even calls cut off at one instant report alike.
        return [e.to_row() for e in result.events]

    ex = example()
    first = run("guarded:1", seed=5, minutes=6.0)
    second = ex.run(ex.build(5, 6.0, "guarded:1"))
    assert rows(first) == rows(second)
    assert first.pool == second.pool and first.stats == second.stats
    assert rows(run("guarded:1", seed=6, minutes=6.0)) != rows(first)


def test_main_prints_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert example().main(["--minutes", "6", "--policy", "guarded"]) == 0
    out = capsys.readouterr().out
    assert "workload: hint-selection:rulebook" in out
    assert re.search(r"stale decisions \(guarded\): [1-9]\d* \(\d+ accept, 0 patch", out), out
    assert re.search(r"speculative admissions: [1-9]\d* \(\d+ confirmed, \d+ rolled back\)", out)
    assert re.search(r"controller actions: [1-9]", out)


# ---- docs/WORKLOADS.md ----------------------------------------------------------------------
BLOCK = re.compile(r"(?:<!-- excerpt: (?P<path>\S+) -->\n)?```python\n(?P<code>.*?)```", re.S)


def doc_blocks() -> list[tuple[str | None, str]]:
    blocks = [(m["path"], m["code"]) for m in BLOCK.finditer(DOC.read_text())]
    assert len(blocks) >= 10, "docs/WORKLOADS.md lost its Python blocks"
    return blocks


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_every_python_block_in_the_doc_compiles() -> None:
    for path, code in doc_blocks():
        code = textwrap.dedent(code)
        name = f"WORKLOADS.md ({path or 'complete'})"
        try:
            compile(code, name, "exec", ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError:
            if path is None:
                raise
            # An excerpt from a method body (it returns): compile it as one.
            compile("async def excerpt():\n" + textwrap.indent(code, "    "), name, "exec")


def test_every_excerpt_in_the_doc_is_in_the_file_it_names() -> None:
    excerpts = [(p, c) for p, c in doc_blocks() if p is not None]
    assert {p for p, _ in excerpts} >= {"examples/third_party_workload.py"}
    for path, code in excerpts:
        source = _lines((ROOT / path).read_text())
        want = _lines(code)
        found = any(source[i : i + len(want)] == want for i in range(len(source)))
        assert found, f"this excerpt is no longer in {path}:\n{code}"


COMPLETE = [c for p, c in doc_blocks() if p is None]


@pytest.mark.parametrize("code", COMPLETE, ids=[f"block{i}" for i in range(len(COMPLETE))])
def test_the_complete_python_blocks_in_the_doc_run(code: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{code}\n{done.stdout}\n{done.stderr}"
    assert done.stdout.strip()


def test_the_docs_index_links_the_workload_guide() -> None:
    assert "(WORKLOADS.md)" in (ROOT / "docs" / "README.md").read_text()
