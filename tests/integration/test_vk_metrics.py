"""The VK's ``/metrics`` on its kubelet API, through the real apiserver (``kubectl get --raw
/api/v1/nodes/<node>/proxy/metrics``) and directly: authorized like a kubelet's (``get`` on
``nodes/metrics``), anonymous callers 401, callers without that right 403."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.k8s import K8sInfo, kubectl
from tests.helpers.vk import RunningVK, host_ip, local_vk
from tests.helpers.world import free_port, need

pytestmark = pytest.mark.integration


@pytest.fixture
async def vk(k8s: K8sInfo, tmp_path: Path) -> AsyncIterator[RunningVK]:
    ip = host_ip()  # the apiserver does not proxy nodes/<node>/proxy to loopback addresses
    need(ip is not None, "no non-loopback address on this host for the kubelet API")
    async with local_vk(k8s, tmp_path, "vk-metrics", ip=ip, port=free_port()) as (running, _):
        yield running


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text answer by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_through_the_apiserver(vk: RunningVK) -> None:
    pod = vk.pod_manifest("m", [{"name": "main", "image": "x", "command": ["sleep", "600"]}])
    refused = vk.pod_manifest("refused", [{"name": "main", "image": "x"}])  # no command: 400
    for spec in (pod, refused):
        assert (await vk.kubectl("apply", "-f", "-", input=spec)).returncode == 0
    await vk.wait_pod("m", lambda p: p["status"].get("phase") == "Running")
    await vk.wait_pod("refused", lambda p: p["status"].get("phase") == "Failed")
    assert (await vk.kubectl("logs", "m", "-n", vk.ns)).returncode == 0

    out = await vk.kubectl("get", "--raw", f"/api/v1/nodes/{vk.node}/proxy/metrics")
    assert out.returncode == 0, out.stderr
    found = samples(out.stdout)
    assert value(found, "interlink_vk_pods", phase="Running") == 1
    assert value(found, "interlink_vk_pods", phase="Failed") == 1
    assert value(found, "interlink_vk_node_ready") == 1
    assert value(found, "interlink_vk_reaped_pods_total") == 0
    assert value(found, "interlink_vk_edge_calls_total", operation="create", outcome="ok") == 1
    assert (
        value(found, "interlink_vk_edge_calls_total", operation="create", outcome="rejected") == 1
    )
    for op in ("status", "ping", "logs"):
        assert value(found, "interlink_vk_edge_calls_total", operation=op, outcome="ok") >= 1, op
        assert value(found, "interlink_vk_edge_call_seconds_count", operation=op) >= 1, op
    assert value(found, "interlink_vk_edge_call_seconds_bucket", operation="create", le="+Inf") == 2
    assert value(found, "interlink_vk_status_cycle_seconds_count", kind="full") >= 1


async def test_metrics_refuse_anonymous_and_unauthorized_callers(vk: RunningVK) -> None:
    url = f"https://{vk.ip}:{vk.port}/metrics"
    ctx = ssl.create_default_context(cafile=str(vk.k8s.ca))
    role = f"proxy-only-{uuid.uuid4().hex[:6]}"
    await vk.kubectl("create", "serviceaccount", "nobody", "-n", vk.ns)
    await vk.kubectl("create", "serviceaccount", "proxier", "-n", vk.ns)
    await vk.kubectl(
        "create", "clusterrole", role, "--verb=get", "--resource=nodes/proxy", "--resource=nodes"
    )
    await vk.kubectl(
        "create",
        "clusterrolebinding",
        role,
        f"--clusterrole={role}",
        f"--serviceaccount={vk.ns}:proxier",
    )
    try:
        nobody = (await vk.kubectl("create", "token", "nobody", "-n", vk.ns)).stdout.strip()
        proxier = (await vk.kubectl("create", "token", "proxier", "-n", vk.ns)).stdout.strip()
        async with httpx.AsyncClient(verify=ctx) as http:
            assert (await http.get(url)).status_code == 401
            bad = await http.get(url, headers={"Authorization": "Bearer not-a-token"})
            assert bad.status_code == 401
            denied = await http.get(url, headers={"Authorization": f"Bearer {nobody}"})
            assert denied.status_code == 403
            assert "subresource=metrics" in denied.json()["error"]
            # nodes/proxy (enough for logs) is not nodes/metrics
            other = await http.get(url, headers={"Authorization": f"Bearer {proxier}"})
            assert other.status_code == 403, other.text
            admin = await http.get(url, headers={"Authorization": f"Bearer {vk.k8s.admin_token}"})
            assert admin.status_code == 200
            assert admin.headers["content-type"].startswith("text/plain")
            assert "interlink_vk_node_ready" in admin.text
        # through the apiserver, a user who may not proxy to nodes is refused there
        denied_proxy = await asyncio.to_thread(
            kubectl,
            vk.k8s,
            f"--token={nobody}",
            "get",
            "--raw",
            f"/api/v1/nodes/{vk.node}/proxy/metrics",
        )
        assert denied_proxy.returncode != 0 and "forbidden" in denied_proxy.stderr.lower()
    finally:
        await vk.kubectl("delete", "clusterrolebinding", role)
        await vk.kubectl("delete", "clusterrole", role)
