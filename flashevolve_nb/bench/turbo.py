"""``turbo-gepa`` in the benchmark: why it is not part of the run (yet), said where it is asked for.

Checked here (Nov 2026, turbo-gepa 0.1.6):

- It installs, but only apart from this package: through ``litellm`` it pulls
  ``openai`` 2.x, and this package runs on ``openai`` 3.x, so installing it
  beside us would downgrade our client (``pip install --dry-run`` in a
  throwaway venv shows ``openai-2.54.0``). It works in a venv of its own.
- It can be pointed at the loopback server (LiteLLM ``openai/<model>`` with an
  API base), but its reflection prompts are its own, and the simulator's
  scripted reflection model reads ours (gepa's are restated in ours in plain
  sight, :func:`~flashevolve_nb.compat.simulated.to_simulator_prompt`). Against
  the simulator it would get generic answers, evolve nothing, and its figures
  would mean nothing. A restatement of turbo-gepa's prompts is the missing piece.

Asking for ``--systems ...,turbo-gepa`` therefore reports this reason in the
output instead of a number.
"""

from __future__ import annotations

from typing import Any

from flashevolve_nb.bench.figures import RunFigures
from flashevolve_nb.errors import FlashEvolveError

__all__ = ["REASON", "TurboUnavailable", "run_turbo"]

REASON = (
    "turbo-gepa 0.1.6 is not part of this run: it needs openai 2.x (via litellm) while "
    "this package needs openai 3.x, so it only installs in a separate venv, and the "
    "simulator's reflection model does not read turbo-gepa's reflection prompts (it would "
    "evolve nothing); see flashevolve_nb/bench/turbo.py"
)


class TurboUnavailable(FlashEvolveError, RuntimeError):
    """turbo-gepa cannot take part; the message says why and what would be needed."""


def run_turbo(base_url: str, model: str, **kwargs: Any) -> RunFigures:
    """Always raises :class:`TurboUnavailable` with the reason (see the module docstring)."""
    raise TurboUnavailable(REASON)
