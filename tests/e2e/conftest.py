"""The browser of the e2e tests (Debian's chromium driven by Playwright, one per session);
a failing test leaves a screenshot of every page it opened."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.helpers.world import REPO, need

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "bench" / "out" / "screenshots"
open_pages: list[Page] = []


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    need(CHROMIUM.exists(), "Debian's chromium is not installed (tests/world/system-up)")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield b
        b.close()


def new_page(browser: Browser) -> Page:
    """A page (in a context of its own) that is screenshotted if the test fails."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    open_pages.append(page)
    return page


def shot(page: Page, name: str, selector: str | None = None) -> None:
    """Keep a screenshot (of ``selector`` only, if given) in bench/out/screenshots/."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    target = page.locator(selector) if selector else page
    target.screenshot(path=str(SHOTS / f"{name}.png"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        SHOTS.mkdir(parents=True, exist_ok=True)
        for i, page in enumerate(open_pages):
            if not page.is_closed():
                page.screenshot(path=str(SHOTS / f"FAILED-{item.name}-{i}.png"))
    if report.when == "call":
        open_pages.clear()
