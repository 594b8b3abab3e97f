"""``run.report(path)``: the dashboard as one self-contained HTML file.

The file holds the same front-end bundle the notebook widget runs and the
run's whole model as JSON, so it opens in any browser with no kernel and no
network: for sharing a run, or showing a recorded one in class.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from flashevolve_nb.ui.dashboard import bundle

__all__ = ["write_report"]

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body {{ margin: 16px; font-family: system-ui, sans-serif; }}</style>
<style>{css}</style>
</head>
<body>
<div id="fe-root"></div>
<script id="fe-data" type="application/json">{data}</script>
<script type="module">
{js}
globalThis.flashevolveRenderStandalone(
  document.getElementById("fe-root"),
  JSON.parse(document.getElementById("fe-data").textContent),
);
</script>
</body>
</html>
"""


def _inert(text: str) -> str:
    # Inside <script>, only "</script" (any case) and "<!--" can end or confuse it;
    # "<\\/" reads the same to JSON and to JavaScript strings and regular expressions.
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def write_report(model: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``model`` (a dashboard model, PROTOCOL.md) as an HTML file at ``path``."""
    js = bundle("dashboard.js")
    if not js:
        raise FileNotFoundError(
            "the dashboard's front-end bundle is missing (flashevolve_nb/ui/static/dashboard.js); "
            "in a source checkout build it: cd widgets && npm ci && npm run build"
        )
    out = Path(path)
    if out.is_dir():
        raise IsADirectoryError(f"{out} is a directory; give a file name such as {out}/run.html")
    if not out.parent.exists():
        raise FileNotFoundError(f"{out.parent} does not exist; create it or choose another path")
    meta = model.get("meta", {})
    title = html.escape(f"{meta.get('name', 'run')} · flashevolve_nb")
    # In the data every "<" is written as \u003c: the same string to JSON, and no tag to HTML.
    data = json.dumps(model, ensure_ascii=False, allow_nan=False).replace("<", "\\u003c")
    page = _PAGE.format(title=title, css=bundle("dashboard.css"), data=data, js=_inert(js))
    out.write_text(page, encoding="utf-8")
    return out
