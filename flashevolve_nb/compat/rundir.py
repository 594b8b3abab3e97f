"""``run_dir`` for a ``gepa``-style run: results to read back, and a file that stops the run.

What is written there, after every admission and at the end:

- ``result.json``: ``GEPAResult.to_dict()``'s format, so
  ``GEPAResult.from_dict(json.load(f))`` reads it (JSON turns non-string ids
  into strings, as it does for ``gepa``);
- ``candidates.json``: the candidates in index order, as ``gepa`` writes it.

Creating ``gepa.stop`` in it stops the run as it stops ``gepa``: no new
iteration starts, the ones in flight finish.

``gepa`` also pickles its state there and resumes from it. This does not: a
directory that already holds a run (``result.json``, or ``gepa``'s
``gepa_state.bin``) is refused rather than silently overwritten or
half-resumed; resuming lives in the run store (``flashevolve_nb.start(...,
run_dir=..., resume=True)``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from flashevolve_nb.compat.result import OptimizeResult

__all__ = ["RunDir"]


class RunDir:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        for name, whose in (("result.json", "a flashevolve"), ("gepa_state.bin", "a gepa")):
            if (self.path / name).exists():
                raise FileExistsError(
                    f"run_dir {str(self.path)!r} already holds {whose} run ({name}); this "
                    "optimize() cannot resume it: use a new directory"
                )
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def stop_file(self) -> Path:
        return self.path / "gepa.stop"

    def stop_requested(self) -> bool:
        return self.stop_file.exists()

    def save(self, result: OptimizeResult) -> None:
        self._write("result.json", result.to_dict())
        self._write("candidates.json", [dict(c) for c in result.candidates])

    def _write(self, name: str, data: Any) -> None:
        target = self.path / name
        tmp = target.with_name(name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, target)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"
