"""Browser tests keep a screenshot of every page they leave open when they fail."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        from tests.e2e.test_sidebar_browser import SHOTS, open_pages

        SHOTS.mkdir(parents=True, exist_ok=True)
        for i, page in enumerate(open_pages):
            if not page.is_closed():
                page.screenshot(path=str(SHOTS / f"FAILED-{item.name}-{i}.png"))
    if report.when == "call":
        from tests.e2e.test_sidebar_browser import open_pages

        open_pages.clear()
