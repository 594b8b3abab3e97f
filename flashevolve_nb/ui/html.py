"""Small HTML fragments for the dashboard, with every piece of text escaped.

Artifacts, feedback, repair prompts and answers are LLM text: data, never
markup. Everything that reaches an ``HTML`` widget is built here, and every
string from outside goes through :func:`esc` on the way in.
"""

from __future__ import annotations

import difflib
import html
import math
from collections.abc import Iterable, Mapping

__all__ = ["artifact_html", "badge", "diff_html", "esc", "num", "pre", "table"]

_PRE = (
    "white-space:pre-wrap;word-break:break-word;margin:2px 0;padding:4px 6px;line-height:1.35;"
    "background:rgba(127,127,127,0.08);border-radius:3px;font-size:12px;"
    "max-height:{h}px;overflow:auto"
)


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def num(x: float, digits: int = 3) -> str:
    """A number for display; NaN (nothing yet) shows as a dash."""
    if isinstance(x, float) and math.isnan(x):
        return "–"
    return f"{x:,.{digits}f}"


def pre(text: str, max_height: int = 260, limit: int = 20_000) -> str:
    """Text shown as it is (escaped), cut at ``limit`` characters."""
    cut = text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit:,} more)"
    return f'<pre style="{_PRE.format(h=max_height)}">{esc(cut)}</pre>'


def badge(text: str, colour: str) -> str:
    return (
        f'<span style="background:{colour};color:white;padding:1px 7px;'
        f'border-radius:8px;font-size:12px">{esc(text)}</span>'
    )


def table(header: Iterable[str], rows: Iterable[Iterable[str]], *, raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then the caller escaped them)."""
    cell = (lambda c: c) if raw else esc
    head = "".join(f'<th style="text-align:left;padding:1px 8px">{esc(h)}</th>' for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td style="padding:1px 8px">{cell(c)}</td>' for c in row) + "</tr>"
        for row in rows
    )
    return f'<table style="border-collapse:collapse;font-size:12px"><tr>{head}</tr>{body}</table>'


def artifact_html(components: Mapping[str, str], max_height: int = 260) -> str:
    return "".join(
        f"<div><b>{esc(name)}</b>{pre(text, max_height)}</div>" for name, text in components.items()
    )


def diff_html(before: Mapping[str, str], after: Mapping[str, str]) -> str:
    """A line diff per component, removed lines red and added green; text escaped."""
    parts = []
    for name in dict.fromkeys([*before, *after]):
        a = before.get(name, "").splitlines()
        b = after.get(name, "").splitlines()
        if a == b:
            parts.append(f"<div><b>{esc(name)}</b>: unchanged</div>")
            continue
        lines = []
        for line in difflib.ndiff(a, b):
            tag, body = line[:2], line[2:]
            if tag == "- ":
                lines.append(f'<span style="background:rgba(220,50,50,0.25)">- {esc(body)}</span>')
            elif tag == "+ ":
                lines.append(f'<span style="background:rgba(50,170,80,0.25)">+ {esc(body)}</span>')
            elif tag == "  ":
                lines.append(f"  {esc(body)}")
        parts.append(
            f'<div><b>{esc(name)}</b><pre style="{_PRE.format(h=320)}">'
            + "\n".join(lines)
            + "</pre></div>"
        )
    return "".join(parts)
