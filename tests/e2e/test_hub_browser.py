"""The hub's spawn page in a real browser: a user logs in, picks the SLURM profile and a
walltime, watches the batch queue in the progress log, and lands in JupyterLab (the
single-user server runs in the SLURM job) with the interLink sidebar there."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from interlink_core.names import JOB_ID_ANNOTATION
from tests.e2e.conftest import new_page, shot
from tests.helpers.hub import Hub, wait_for

pytestmark = pytest.mark.integration
WAIT = 180_000  # ms: a SLURM job starts a whole Jupyter server on a busy 2-core machine


def test_spawn_page_shows_the_queue_and_lands_in_jupyterlab_with_the_sidebar(
    browser: Browser, hub: Hub
) -> None:
    page = new_page(browser)
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", "frank")
    page.fill("#password_input", "any")
    page.click("#login_submit")
    page.goto(f"{hub.url}/hub/spawn")
    expect(page.get_by_text("HPC via SLURM")).to_be_visible(timeout=WAIT)
    page.check('input[name="profile"][value="slurm"]')
    page.select_option('select[name="profile-option-slurm--walltime"]', "00:30:00")
    shot(page, "hub-spawn-form")
    page.get_by_role("button", name="Start").click()

    log = page.locator("#progress-log")
    expect(log).to_contain_text("Queued: BeginTime", timeout=WAIT)
    shot(page, "hub-spawn-queued")
    page.wait_for_url(re.compile(r"/user/frank/lab"), timeout=WAIT)
    tab = page.locator('.jp-SideBar [data-id="interlink-sidebar"]')
    expect(tab).to_be_attached(timeout=WAIT)
    tab.click()
    expect(page.get_by_test_id("interlink-connection")).to_have_text("live", timeout=WAIT)
    shot(page, "hub-lab-with-sidebar")

    pods = [p for p in hub.pods() if p["metadata"]["name"].startswith("jupyter-frank")]
    (pod,) = pods
    job = pod["metadata"]["annotations"][JOB_ID_ANNOTATION]
    assert pod["spec"]["nodeName"].startswith("hub-slurm-")
    assert job.isdigit()
    page.close()
    hub.stop_server("frank")
    wait_for(lambda: not [p for p in hub.pods() if "frank" in p["metadata"]["name"]], 60, "pod")
