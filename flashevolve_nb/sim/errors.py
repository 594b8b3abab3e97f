"""Errors a simulated server answers with, as a real one would.

::

    LLMError (flashevolve_nb.llm.protocol)
     └── RateLimited   the API's per-minute limit is used up (HTTP 429);
                       wait ``retry_after`` simulated seconds and try again
"""

from __future__ import annotations

from flashevolve_nb.llm.protocol import LLMError

__all__ = ["RateLimited"]


class RateLimited(LLMError):
    """Too many requests or tokens this minute; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: float, detail: str = "") -> None:
        self.retry_after = max(0.0, float(retry_after))
        message = f"rate limited (429): retry after {self.retry_after:.2f} simulated seconds"
        super().__init__(f"{message}; {detail}" if detail else message)
