"""The browser of the e2e tests (Debian's chromium driven by Playwright, one per session);
a failing test leaves a screenshot of every page it opened."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.helpers.world import REPO, free_port, need, stop

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "bench" / "out" / "screenshots"
open_pages: list[Page] = []


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One headless chromium for the whole session; its DevTools URL."""
    need(CHROMIUM.exists(), "Debian's chromium is not installed (tests/world/system-up)")
    port = free_port()
    profile = tmp_path_factory.mktemp("chromium")
    proc = subprocess.Popen(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--remote-debugging-port={port}",
            "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(profile / "chromium.log").open("wb"),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/json/version", timeout=2):
                break
        except OSError:
            assert proc.poll() is None, (profile / "chromium.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "chromium's DevTools never answered"
            time.sleep(0.2)
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    """Playwright (sync API) attached to the session's chromium, for one module: its event
    loop must not outlive the module, or the asyncio tests after it could not run."""
    with sync_playwright() as p:
        b = p.chromium.connect_over_cdp(chromium)
        yield b
        for context in b.contexts[1:]:  # the first is chromium's own default context
            context.close()


def new_page(browser: Browser) -> Page:
    """A page (in a context of its own) that is screenshotted if the test fails."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    open_pages.append(page)
    return page


def open_lab_sidebar(browser: Browser, url: str, wait_ms: float) -> Page:
    """JupyterLab at ``url`` (with its token) in a new page, the interLink sidebar open and its
    stream live."""
    page = new_page(browser)
    page.goto(url)
    tab = page.locator('.jp-SideBar [data-id="interlink-sidebar"]')
    tab.wait_for(timeout=wait_ms)
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    expect(page.get_by_test_id("interlink-connection")).to_have_text("live", timeout=wait_ms)
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
