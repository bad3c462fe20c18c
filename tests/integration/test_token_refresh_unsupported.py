"""docs/vk.md, "Service-account tokens": behind an upstream plugin without ``/updateVolumes`` the
API server answers 501 and the VK records a warning Event ``TokenRefreshUnsupported`` on the pod,
which keeps running. A real pod on the real control plane, a VK, the API server and a plugin
process (tests/helpers/relay_plugin.py in front of the local plugin)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.k8s import K8sInfo
from tests.helpers.relay_plugin import requests_seen, start_relay_plugin
from tests.helpers.vk import RunningVK, running_vk, token_volume
from tests.helpers.world import Service, start_api

pytestmark = pytest.mark.integration
TOKEN = "refresh-unsupported-dev-token"


@pytest.fixture
async def vk(
    k8s: K8sInfo, plugin: Service, tmp_path: Path
) -> AsyncIterator[tuple[RunningVK, Service]]:
    relay = start_relay_plugin(tmp_path / "relay", plugin)
    api = start_api(
        tmp_path / "api", {"plugin": {"url": relay.url}, "auth": {"insecure_dev_token": TOKEN}}
    )
    try:
        # a 600 s token (the least the API allows) is due for refresh after 3 s
        async with running_vk(
            k8s, api.url, TOKEN, tmp_path / "vk", "vk-norefresh", token_refresh_fraction=0.005
        ) as running:
            yield running, relay
    finally:
        api.stop()
        relay.stop()


async def events(vk: RunningVK, pod: str) -> list[dict[str, Any]]:
    out = await vk.kubectl(
        "get", "events", "-n", vk.ns, "-o", "json", "--field-selector", f"involvedObject.name={pod}"
    )
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout)["items"])


async def unsupported(vk: RunningVK, pod: str) -> list[dict[str, Any]]:
    """The pod's ``TokenRefreshUnsupported`` Events."""
    return [e for e in await events(vk, pod) if e["reason"] == "TokenRefreshUnsupported"]


async def test_token_refresh_unsupported_is_a_warning_event_and_the_pod_runs_on(
    vk: tuple[RunningVK, Service],
) -> None:
    node, relay = vk
    out = await node.kubectl("create", "serviceaccount", "worker", "-n", node.ns)
    assert out.returncode == 0, out.stderr
    container = {
        "name": "main",
        "image": "none",
        "command": ["sleep", "60"],
        "volumeMounts": [{"name": "tok", "mountPath": "/var/run/secrets/tokens"}],
    }
    manifest = node.pod_manifest(
        "no-refresh", [container], serviceAccountName="worker", volumes=[token_volume(600)]
    )
    out = await node.kubectl("apply", "-f", "-", input=manifest)
    assert out.returncode == 0, out.stderr
    await node.wait_pod("no-refresh", lambda p: p["status"].get("phase") == "Running")
    deadline = asyncio.get_running_loop().time() + 30
    while not (warnings := await unsupported(node, "no-refresh")):
        assert asyncio.get_running_loop().time() < deadline, await events(node, "no-refresh")
        await asyncio.sleep(0.5)
    [warning] = warnings
    assert warning["type"] == "Warning"
    assert warning["message"].startswith("service-account tokens cannot be refreshed remotely")
    assert "/updateVolumes" in warning["message"]
    await asyncio.sleep(4)  # more than one refresh period: the VK does not ask again
    asked = [r for r in requests_seen(relay) if r["path"] == "/updateVolumes"]
    assert len(asked) == 1, asked
    [again] = await unsupported(node, "no-refresh")
    assert again.get("count", 1) == 1
    pod = await node.pod("no-refresh")
    assert pod is not None and pod["status"]["phase"] == "Running"
