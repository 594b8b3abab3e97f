"""LLM access: one async protocol, several backends."""

from __future__ import annotations

from flashevolve_nb.llm.protocol import LLM, Completion, LLMError, Message, Usage

__all__ = ["LLM", "Completion", "LLMError", "Message", "Usage"]
