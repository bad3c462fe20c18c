"""dask-labextension and the interLink sidebar side by side in a real browser: "+ NEW" makes an
InterLinkCluster (factory set as docs/dask.md shows, started adaptively by
``labextension.default.adapt``); its SCALE dialog asks for 2 workers; the interLink sidebar
shows them connected, the scaling "Manual", and they stay."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import new_page, shot
from tests.helpers.jupyter import (
    TOKEN,
    WORKER,
    Jupyter,
    jupyter_server,
    lab_python,
    write_dask_config,
)
from tests.helpers.world import Service, start_api, start_plugin

pytestmark = pytest.mark.integration
EDGE_TOKEN = "dask-lab-browser-token"
WAIT = 120_000


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Jupyter, Service]]:
    plugin = start_plugin(tmp_path / "plugin")
    api = start_api(
        tmp_path / "api",
        {"plugin": {"url": plugin.url}, "auth": {"insecure_dev_token": EDGE_TOKEN}},
    )
    config = write_dask_config(
        tmp_path / "dask",
        {
            "mode": "direct",
            "direct": {"url": api.url, "token": EDGE_TOKEN},
            "worker-command": WORKER,
            "memory": "512MiB",
            "status-interval": 0.5,
            "state-dir": str(tmp_path / "dask-state"),
        },
        labextension={
            "factory": {
                "module": "interlink_dask",
                "class": "InterLinkCluster",
                "args": [],
                "kwargs": {},
            },
            "default": {"adapt": {"minimum": 0, "maximum": 20}},
        },
    )
    try:
        with jupyter_server(tmp_path / "lab", config, lab=True, python=lab_python()) as server:
            yield server, plugin
    finally:
        api.stop()
        plugin.stop()


def test_scale_dialog_after_a_default_adaptive_start_keeps_the_workers(
    browser: Browser, lab: tuple[Jupyter, Service]
) -> None:
    server, plugin = lab
    page = new_page(browser)
    page.goto(f"{server.url}/lab?token={TOKEN}&reset")
    dask_tab = page.locator('.jp-SideBar [data-id="dask-dashboard-launcher"]')
    dask_tab.wait_for(timeout=WAIT)
    dask_tab.click()
    page.locator(".dask-DaskClusterManager").get_by_text("NEW", exact=True).click()
    item = page.locator(".dask-ClusterListingItem")
    expect(item).to_have_count(1, timeout=WAIT)
    item.locator(".dask-ClusterListingItem-scale").click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator(".dask-ScalingCheckbox").uncheck()  # started adaptive: go manual
    dialog.locator(".dask-ScalingInput").first.fill("2")
    dialog.get_by_role("button", name="SCALE").click()
    shot(page, "dask-labextension-scaled")

    page.locator('.jp-SideBar [data-id="interlink-sidebar"]').click()
    card = page.locator('[data-testid^="interlink-cluster-"]')
    expect(card).to_have_count(1, timeout=WAIT)
    name = str(card.get_attribute("data-testid")).removeprefix("interlink-cluster-")
    connected = page.get_by_test_id(f"interlink-count-{name}-connected")
    expect(connected).to_have_text("2", timeout=WAIT)
    expect(page.get_by_test_id(f"interlink-adapt-text-{name}")).to_have_text("Manual")
    time.sleep(8)  # adaptive scaling (1 s interval, wait-count 3) would have retired them
    expect(connected).to_have_text("2")
    pods = plugin.root / "state" / "pods"
    assert len(list(pods.iterdir())) == 2
    shot(page, "dask-labextension-and-sidebar")
    page.close()
