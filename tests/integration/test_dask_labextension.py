"""InterLinkCluster as dask-labextension's cluster factory, driven through the extension's
own REST API in a real Jupyter server (what the "+ NEW" button and the scale dialog call)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers.world import Service, free_port, start_api, start_plugin, stop

pytestmark = pytest.mark.integration
TOKEN = "dask-lab-dev-token"
JUPYTER_TOKEN = "lab-token-123"


@pytest.fixture(params=[{}, {"adapt": {"minimum": 0, "maximum": 20}}], ids=["plain", "adapt"])
def jupyter(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[httpx.Client, Service]]:
    """dask-labextension with InterLinkCluster as its factory; ``adapt``: with the
    ``labextension.default.adapt`` setting docs/dask.md shows."""
    plugin = start_plugin(tmp_path / "plugin")
    api = start_api(
        tmp_path / "api", {"plugin": {"url": plugin.url}, "auth": {"insecure_dev_token": TOKEN}}
    )
    config = tmp_path / "dask-config"
    config.mkdir()
    (config / "labextension.yaml").write_text(
        yaml.safe_dump(
            {
                "labextension": {
                    "factory": {
                        "module": "interlink_dask",
                        "class": "InterLinkCluster",
                        "args": [],
                        "kwargs": {
                            "mode": "direct",
                            "direct": {"url": api.url, "token": TOKEN},
                            "worker-command": [
                                sys.executable,
                                "-m",
                                "distributed.cli.dask_worker",
                            ],
                            "memory": "512MiB",
                            "status-interval": 0.5,
                            "state-dir": str(tmp_path / "dask"),
                        },
                    },
                    "default": request.param,
                }
            }
        )
    )
    port = free_port()
    log = tmp_path / "jupyter.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            "--no-browser",
            "--allow-root",
            f"--ServerApp.port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={JUPYTER_TOKEN}",
            f"--ServerApp.root_dir={tmp_path}",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "DASK_CONFIG": str(config), "JUPYTER_RUNTIME_DIR": str(tmp_path)},
        start_new_session=True,
    )
    http = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"token {JUPYTER_TOKEN}"},
        timeout=120,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if http.get("/api/status").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        yield http, plugin
    finally:
        http.close()
        stop(proc)
        api.stop()
        plugin.stop()


def live_pods(plugin: Service) -> list[str]:
    pods = plugin.root / "state" / "pods"
    return sorted(p.name for p in pods.iterdir()) if pods.is_dir() else []


def wait_model(http: httpx.Client, cid: str, cond: Any, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    model: dict[str, Any] = {}
    while time.monotonic() < deadline:
        model = http.get(f"/dask/clusters/{cid}").json()
        if cond(model):
            return model
        time.sleep(0.5)
    raise AssertionError(f"cluster model never met the condition: {model}")


def test_labextension_starts_scales_adapts_and_closes_an_interlink_cluster(
    jupyter: tuple[httpx.Client, Service],
) -> None:
    http, plugin = jupyter
    created = http.put("/dask/clusters/", json={})
    assert created.status_code == 200, created.text
    model = created.json()
    assert model["name"] == "InterLinkCluster 1"
    assert model["scheduler_address"].startswith("tcp://")
    cid = model["id"]
    assert [c["id"] for c in http.get("/dask/clusters/").json()] == [cid]

    scaled = http.patch(f"/dask/clusters/{cid}", json={"workers": 2})
    assert scaled.status_code == 200, scaled.text
    model = wait_model(http, cid, lambda m: m["workers"] == 2)
    assert model["cores"] == 2
    assert len(live_pods(plugin)) == 2

    adapted = http.patch(f"/dask/clusters/{cid}", json={"adapt": {"minimum": 1, "maximum": 3}})
    assert adapted.json()["adapt"] == {"minimum": 1, "maximum": 3}
    wait_model(http, cid, lambda m: m["workers"] == 1)  # idle: down to the minimum

    assert http.delete(f"/dask/clusters/{cid}").status_code == 204
    assert http.get("/dask/clusters/").json() == []
    deadline = time.monotonic() + 30
    while live_pods(plugin) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert live_pods(plugin) == []


def test_scale_after_the_default_adaptive_start_keeps_the_workers(
    jupyter: tuple[httpx.Client, Service],
) -> None:
    """The SCALE dialog after a cluster started adaptively (``labextension.default.adapt``):
    the manual scale ends adaptive scaling, so the two workers stay (they used to be retired
    again by the extension's Adaptive a few seconds later)."""
    http, plugin = jupyter
    model = http.put("/dask/clusters/", json={}).json()
    cid = model["id"]
    scaled = http.patch(f"/dask/clusters/{cid}", json={"workers": 2})
    assert scaled.status_code == 200, scaled.text
    assert scaled.json().get("adapt") is None
    wait_model(http, cid, lambda m: m["workers"] == 2)
    time.sleep(8)  # adaptive scaling (interval 1 s, wait-count 3) would retire idle workers
    model = http.get(f"/dask/clusters/{cid}").json()
    assert model["workers"] == 2 and model.get("adapt") is None
    assert len(live_pods(plugin)) == 2
    assert http.delete(f"/dask/clusters/{cid}").status_code == 204
