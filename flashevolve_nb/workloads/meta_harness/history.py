"""The run's history directory: every candidate's code, scores and traces, uncompressed.

Meta-Harness's point is that the proposer reads the *raw* history, not a
summary of it. Each evaluated (or failed) candidate gets a folder,
``NNNN-<artifact id>/``, numbered in the order evaluations finished:

- ``harness.py``: the program, verbatim;
- ``scores.json``: candidate, parent, step, status (``evaluated`` or
  ``failed``), the failure reason, accuracy, context tokens per task, the
  score of every validation task;
- ``traces.jsonl``: one line per validation task: the messages the harness
  built, the model's answers, the answer that counted, score and feedback.

:meth:`HistoryDir.render` is what the proposer's prompt shows of it: the
listing of every file, then whole files, newest candidate first, until a
character budget; what does not fit is named and stays on disk.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CandidateRecord", "HistoryDir"]

FILES = ("scores.json", "harness.py", "traces.jsonl")


@dataclass(frozen=True, slots=True)
class CandidateRecord:
    artifact_id: str
    parent_id: str | None
    step: int
    code: str
    status: str
    """``evaluated`` or ``failed``."""
    reason: str = ""
    accuracy: float | None = None
    context_tokens: float | None = None
    scores: Mapping[str, float] = field(default_factory=dict)
    traces: Sequence[Mapping[str, Any]] = ()


class HistoryDir:
    """One folder per candidate under ``root`` (the run's own directory)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._count = len(self.folders())
        self._cache: dict[Path, str] = {}

    def folders(self) -> list[Path]:
        """Candidate folders, oldest first (not one a killed process left half-written)."""
        return sorted(
            p
            for p in self.root.iterdir()
            if p.is_dir() and p.name[:4].isdigit() and not p.name.endswith(".tmp")
        )

    def candidates(self) -> set[str]:
        """The artifact ids the history holds a folder for."""
        return {f.name.split("-", 1)[1] for f in self.folders() if "-" in f.name}

    def record(self, c: CandidateRecord) -> Path:
        """Write a candidate's folder (the files appear complete or not at all)."""
        folder = self.root / f"{self._count:04d}-{c.artifact_id}"
        self._count += 1
        tmp = folder.with_name(folder.name + ".tmp")
        tmp.mkdir(parents=True)
        (tmp / "harness.py").write_text(c.code, encoding="utf-8")
        scores = {
            "candidate": c.artifact_id, "parent": c.parent_id, "step": c.step,
            "status": c.status, "reason": c.reason, "accuracy": c.accuracy,
            "context_tokens": c.context_tokens, "scores": dict(c.scores),
        }  # fmt: skip
        (tmp / "scores.json").write_text(json.dumps(scores, indent=1) + "\n", encoding="utf-8")
        lines = "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in c.traces)
        (tmp / "traces.jsonl").write_text(lines, encoding="utf-8")
        tmp.rename(folder)
        return folder

    def render(self, budget_chars: int) -> str:
        """The history as the proposer's prompt shows it (paths relative to the root).

        The listing names every file. Then whole files, by priority until
        ``budget_chars``: every candidate's ``scores.json`` and ``harness.py``
        (newest first), then traces (newest first); shown grouped by candidate,
        newest first. What does not fit is named and stays on disk.
        """
        folders = self.folders()
        if not folders:
            return "(no candidates yet)"
        listing = [f"{f.name}/{name}" for f in folders for name in FILES if (f / name).exists()]
        head = ["Files:", *(f"- {p}" for p in listing), ""]
        used = sum(len(s) + 1 for s in head)
        newest = list(reversed(folders))
        order = [(f, n) for n in FILES[:2] for f in newest] + [(f, FILES[2]) for f in newest]
        shown: dict[tuple[Path, str], str] = {}
        left_out: list[str] = []
        for f, name in order:
            text = self._read(f / name)
            if text is None:
                continue
            lang = {"harness.py": "python", "scores.json": "json"}.get(name, "")
            block = f"### {f.name}/{name}\n```{lang}\n{text.rstrip()}\n```\n"
            if used + len(block) > budget_chars:
                left_out.append(f"{f.name}/{name}")
                continue
            shown[(f, name)] = block
            used += len(block)
        out = head + [shown[(f, n)] for f in newest for n in FILES if (f, n) in shown]
        if left_out:
            out.append(
                f"(Not shown for length, still in the directory: {len(left_out)} file(s), "
                f"e.g. {', '.join(left_out[:5])}.)"
            )
        return "\n".join(out)

    def _read(self, path: Path) -> str | None:
        # A candidate's files never change once its folder exists: read each once.
        text = self._cache.get(path)
        if text is None and path.exists():
            text = self._cache[path] = path.read_text(encoding="utf-8")
        return text
