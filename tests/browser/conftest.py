"""Browser tests: fixtures from ``browserlab``; failures carry the page's console,
the server's log and a screenshot; the session ends saying where screenshots are."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from browserlab import (
    Browser,
    Lab,
    artifacts_dir,
    browser,
    chromium_path,
    lab,
    playwright_sync,
    screenshots,
)

__all__ = ["browser", "chromium_path", "lab", "playwright_sync"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # A failure in a browser says little by itself: add what the page's console
    # and the server said, and a screenshot of the page as it was.
    report = yield
    if report.when != "call" or not report.failed:
        return report
    b: Browser | None = getattr(item, "fe_browser", None)
    lab_: Lab | None = item.funcargs.get("lab") if hasattr(item, "funcargs") else None
    if b is not None:
        report.sections.append(("browser console (tail)", b.console_tail()))
        with contextlib.suppress(Exception):
            shot = artifacts_dir() / f"{item.name}-failure.png"
            b.page.screenshot(path=str(shot), full_page=True)
            report.sections.append(("failure screenshot", str(shot)))
    if lab_ is not None:
        report.sections.append(("JupyterLab server log (tail)", lab_.log_tail()))
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if screenshots:
        terminalreporter.write_sep("-", "browser test screenshots")
        for path in screenshots:
            terminalreporter.write_line(str(path))
