"""What a harness is: the interface every candidate program implements.

A harness is one Python file (the artifact's ``harness`` component) that
decides what the task model sees. It defines

- ``update_memory(memory, example) -> memory``: called once per labelled
  training example, in order, starting from ``memory = None``; returns the new
  memory (what to store: everything, a few per label, a summary...). The
  example is a dict ``{"id": str, "input": str, "output": str}``.
- ``build_context(task, memory) -> messages``: the chat messages the task
  model gets for ``task`` (``{"id": str, "input": str}``): a non-empty list of
  ``{"role": "system" | "user" | "assistant", "content": str}`` (what to
  retrieve from memory and how to show it).
- optionally ``SAMPLES`` (an int, 1 to 5, default 1): answers to ask per task;
  the most frequent one counts (self-consistency).

A harness is a pure function of its inputs: it runs in a sandbox without
network, processes or writes outside its directory (:mod:`.sandbox`), may
import only the standard modules the sandbox preloads
(:data:`~flashevolve_nb.workloads.meta_harness.runner.PRELOADED`), and never
calls a model itself; the engine makes the calls with the messages it built.
It is scored on accuracy and on the context tokens it spends (the pool keeps
the Pareto front of the two).
"""

from __future__ import annotations

from flashevolve_nb.workloads.meta_harness.runner import MAX_SAMPLES, PRELOADED

__all__ = ["COMPONENT", "INTERFACE", "MAX_SAMPLES", "PRELOADED"]

COMPONENT = "harness"
"""The artifact's one component: the harness program's source."""

INTERFACE = f"""\
A harness is one Python file defining:

def update_memory(memory, example):
    # Called once per labelled training example, in order, starting with memory=None.
    # example = {{"id": str, "input": str, "output": str}}. Return the new memory:
    # decide what to store.
    ...

def build_context(task, memory):
    # task = {{"id": str, "input": str}}. Return the chat messages the task model sees:
    # a non-empty list of {{"role": "system" | "user" | "assistant", "content": str}}.
    # Decide what to retrieve from memory and how to show it.
    ...

SAMPLES = 1  # optional, 1..{MAX_SAMPLES}: answers asked per task; the most frequent counts.

Rules: the file runs in a sandbox without network, subprocesses or writes outside its
working directory, with a time and a memory limit. It may import only these standard
modules: {", ".join(PRELOADED)}. It never calls a model: the caller sends the messages
build_context returns. Iteration over sets is unordered: sort what you show.
A harness is judged on accuracy (higher is better) and on context tokens per task
(lower is better)."""
