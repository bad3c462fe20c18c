"""The interLink sidebar in a real browser (Debian's chromium driven by Playwright) on a real
JupyterLab with the extension installed from the built wheel (``INTERLINK_LAB_PYTHON``, set by
CI), on a real edge (API server + local plugin) in direct mode. Screenshots are kept in
``bench/out/screenshots/`` (docs/jupyter.md shows the telling ones)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import open_lab_sidebar, shot
from tests.helpers.jupyter import (
    TOKEN,
    WORKER,
    Jupyter,
    jupyter_server,
    lab_python,
    write_dask_config,
)
from tests.helpers.k8s import K8sInfo
from tests.helpers.slurm import SlurmInfo
from tests.helpers.vk_world import World
from tests.helpers.world import Service, start_api, start_plugin

pytestmark = pytest.mark.integration
EDGE_TOKEN = "sidebar-dev-token"
WAIT = 120_000  # ms: workers start as real processes on a busy 2-core machine


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Jupyter, Path, Service]]:
    root = tmp_path_factory.mktemp("sidebar")
    plugin = start_plugin(root / "plugin")
    api = start_api(
        root / "api", {"plugin": {"url": plugin.url}, "auth": {"insecure_dev_token": EDGE_TOKEN}}
    )
    config = write_dask_config(
        root / "dask",
        {
            "mode": "direct",
            "direct": {"url": api.url, "token": EDGE_TOKEN},
            "worker-command": WORKER,
            "memory": "512MiB",
            "status-interval": 0.5,
            "death-timeout": 30,
            "state-dir": str(root / "dask-state"),
        },
    )
    try:
        with jupyter_server(
            root / "lab",
            config,
            lab=True,
            python=lab_python(),
            extension={"max_workers": 8, "refresh_interval": 0.5},
        ) as server:
            yield server, config, plugin
    finally:
        api.stop()
        plugin.stop()


def open_sidebar(browser: Browser, server: Jupyter) -> Page:
    return open_lab_sidebar(browser, f"{server.url}/lab?token={TOKEN}&reset", WAIT)


def sidebar_shot(page: Page, name: str) -> None:
    shot(page, name, "#interlink-sidebar")


def close_from_the_sidebar(page: Page, name: str, plugin: Service | None = None) -> None:
    """Close with the card's button and the dialog; the card goes, and (given the edge's
    plugin) so do the pods at the edge."""
    page.get_by_test_id(f"interlink-close-{name}").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Close cluster", exact=True).click()
    expect(page.get_by_test_id(f"interlink-cluster-{name}")).to_have_count(0, timeout=WAIT)
    if plugin is None:
        return
    pods = plugin.root / "state" / "pods"
    deadline = time.monotonic() + 60
    while pods.is_dir() and list(pods.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not pods.is_dir() or not list(pods.iterdir()), "the pods are deleted at the edge"


def count(page: Page, cluster: str, state: str) -> object:
    return page.get_by_test_id(f"interlink-count-{cluster}-{state}")


def test_create_scale_adapt_and_close_from_the_sidebar(
    browser: Browser, lab: tuple[Jupyter, Path, Service]
) -> None:
    server, _, plugin = lab
    page = open_sidebar(browser, server)
    edge = page.locator('[data-testid^="interlink-edge-"]')
    expect(edge).to_have_count(1)
    expect(edge).to_contain_text("127.0.0.1")

    page.get_by_test_id("interlink-new-toggle").click()
    page.get_by_test_id("interlink-new-name").fill("ui-a")
    page.get_by_test_id("interlink-new-workers").fill("0")
    page.get_by_test_id("interlink-new-submit").click()
    card = page.get_by_test_id("interlink-cluster-ui-a")
    expect(card).to_be_visible(timeout=WAIT)
    expect(card).to_contain_text("direct")

    page.get_by_test_id("interlink-scale-input-ui-a").fill("3")
    page.get_by_test_id("interlink-scale-button-ui-a").click()
    expect(count(page, "ui-a", "connected")).to_have_text("3", timeout=WAIT)
    expect(page.get_by_test_id("interlink-bar-ui-a")).to_have_attribute(
        "aria-label", re.compile("3 connected")
    )
    page.get_by_test_id("interlink-workers-toggle-ui-a").click()
    rows = page.locator('[data-testid^="interlink-row-state-ui-a-worker-"]')
    expect(rows).to_have_count(3, timeout=WAIT)
    expect(rows.first).to_have_text(re.compile("connected"))
    job = page.locator('[data-testid^="interlink-row-job-ui-a-worker-"]').first
    expect(job).not_to_have_text("")
    sidebar_shot(page, "sidebar-cluster-connected")
    page.get_by_test_id("interlink-logs-ui-a-worker-0").click()  # the log viewer
    expect(page.get_by_test_id("interlink-log-text")).to_contain_text("Registered to", timeout=WAIT)
    shot(page, "lab-worker-log")

    page.get_by_test_id("interlink-adapt-min-ui-a").fill("1")
    page.get_by_test_id("interlink-adapt-max-ui-a").fill("3")
    page.get_by_test_id("interlink-adapt-button-ui-a").click()
    expect(page.get_by_test_id("interlink-adapt-text-ui-a")).to_contain_text(
        "Adaptive", timeout=WAIT
    )
    expect(rows).to_have_count(1, timeout=WAIT)  # idle: down to the minimum

    page.get_by_test_id("interlink-scale-input-ui-a").fill("0")
    page.get_by_test_id("interlink-scale-button-ui-a").click()
    expect(page.get_by_test_id("interlink-adapt-text-ui-a")).to_have_text("Manual", timeout=WAIT)
    expect(rows).to_have_count(0, timeout=WAIT)

    close_from_the_sidebar(page, "ui-a", plugin)
    page.close()


def run_cell(page: Page, code: str) -> None:
    """Type ``code`` into the active notebook's last cell and run it (Shift+Enter)."""
    editor = page.locator(".jp-NotebookPanel .jp-Cell .cm-content").last
    editor.click()
    page.keyboard.insert_text(code)  # no auto-closed brackets
    page.keyboard.press("Shift+Enter")


def test_a_cluster_made_in_a_notebook_appears_and_its_code_can_be_inserted(
    browser: Browser, lab: tuple[Jupyter, Path, Service]
) -> None:
    server, _, plugin = lab
    page = open_sidebar(browser, server)
    page.get_by_text("Python 3 (ipykernel)").first.click()  # a new notebook, a real kernel
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=WAIT)
    # typed before the kernel is up, a Shift+Enter can be lost: wait for it to be idle
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=WAIT)
    run_cell(
        page,
        "from interlink_dask import InterLinkCluster\n"
        'cluster = InterLinkCluster(name="nb-a", n_workers=1)',
    )
    first = page.locator(".jp-NotebookPanel .jp-CodeCell").first
    expect(first.locator(".jp-InputPrompt")).to_contain_text("[1]", timeout=WAIT)
    card = page.get_by_test_id("interlink-cluster-nb-a")
    expect(card).to_be_visible(timeout=WAIT)
    expect(card).to_contain_text("a kernel")
    expect(count(page, "nb-a", "connected")).to_have_text("1", timeout=WAIT)

    page.get_by_test_id("interlink-insert-nb-a").click()
    cells = page.locator(".jp-NotebookPanel .jp-CodeCell")
    expect(cells.last).to_contain_text('InterLinkCluster.from_name("nb-a")', timeout=WAIT)
    inserted = cells.nth(cells.count() - 1)  # running it adds a cell below: keep this one
    expect(inserted).to_contain_text("Client(cluster)")
    inserted.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")  # the inserted code attaches to the running cluster
    expect(inserted.locator(".jp-OutputArea")).to_contain_text("nb-a", timeout=WAIT)
    sidebar_shot(page, "sidebar-notebook-cluster")
    shot(page, "lab-notebook-and-sidebar")

    close_from_the_sidebar(page, "nb-a", plugin)
    page.close()


@pytest.fixture(scope="module")
def slurm_node(
    k8s: K8sInfo, slurm: SlurmInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """A virtual node in front of the test world's SLURM, as its own processes."""
    world = World(tmp_path_factory.mktemp("slurm-node"), k8s, slurm.partition)
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API runs a loop in this thread
        pool.submit(asyncio.run, world.start()).result()
    yield world
    world.stop()


def test_the_worlds_slurm_node_and_a_held_job_in_the_sidebar(
    browser: Browser, slurm_node: World, k8s: K8sInfo, tmp_path: Path
) -> None:
    world = slurm_node
    config = write_dask_config(
        tmp_path / "dask",
        {
            "kubeconfig": str(k8s.kubeconfig),
            "namespace": world.ns,
            "node": world.node,
            "image": "none",  # SLURM runs the worker on the host (runtime: host)
            "worker-command": WORKER,
            "memory": "256MiB",
            "status-interval": 0.5,
            "annotations": {"slurm-job.vk.io/flags": "--hold"},
        },
    )
    env = {"KUBECONFIG": str(k8s.kubeconfig)}
    with jupyter_server(tmp_path / "lab", config, lab=True, python=lab_python(), env=env) as server:
        page = open_sidebar(browser, server)
        node = page.get_by_test_id(f"interlink-node-{world.node}")
        expect(node).to_be_visible(timeout=WAIT)
        expect(page.get_by_test_id(f"interlink-node-ready-{world.node}")).to_have_text("Ready")
        page.get_by_test_id("interlink-new-toggle").click()
        page.get_by_test_id("interlink-new-name").fill("kube-ui")
        page.get_by_test_id("interlink-new-workers").fill("1")
        page.get_by_test_id("interlink-new-submit").click()
        expect(page.get_by_test_id("interlink-cluster-kube-ui")).to_be_visible(timeout=WAIT)
        page.get_by_test_id("interlink-workers-toggle-kube-ui").click()
        reason = page.get_by_test_id("interlink-row-reason-kube-ui-worker-0")
        expect(reason).to_have_text("JobHeldUser", timeout=WAIT)
        expect(page.get_by_test_id("interlink-row-state-kube-ui-worker-0")).to_contain_text(
            "queued"
        )
        job = page.get_by_test_id("interlink-row-job-kube-ui-worker-0").inner_text().strip()
        assert job.isdigit(), job
        expect(count(page, "kube-ui", "queued")).to_have_text("1")
        sidebar_shot(page, "sidebar-held-job")
        shot(page, "lab-held-job")

        subprocess.run(["scontrol", "release", job], check=True)
        expect(page.get_by_test_id("interlink-row-state-kube-ui-worker-0")).to_contain_text(
            "connected", timeout=WAIT
        )
        close_from_the_sidebar(page, "kube-ui")
        page.close()
