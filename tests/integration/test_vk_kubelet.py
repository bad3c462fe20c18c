"""`kubectl logs` through the real apiserver to the VK's kubelet API, which answers from the
edge; the serving certificate comes from a kubelet-serving CSR that the admin approves; anonymous
and unauthorized callers are refused like a kubelet refuses them."""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import kr8s.asyncio
import pytest

from interlink_core.client import InterLinkClient, Retry, static_token
from interlink_core.embedded import EmbeddedEdge
from interlink_vk.config import VK_TAINT_KEY, VKConfig
from interlink_vk.kube import Kube
from interlink_vk.kubelet import serve_kubelet
from interlink_vk.node import NodeController
from interlink_vk.pods import PodController
from tests.helpers.k8s import K8sInfo, kubectl

pytestmark = pytest.mark.integration


@dataclass
class VK:
    k8s: K8sInfo
    node: str
    ns: str
    ip: str
    port: int

    async def kubectl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        # off the event loop: the VK answers in this very loop
        return await asyncio.to_thread(kubectl, self.k8s, *args, timeout=timeout)


async def approve_csr(k8s: K8sInfo, node: str, stop: asyncio.Event) -> None:
    """What a cluster admin does: approve the node's kubelet-serving CSR."""
    while not stop.is_set():
        out = await asyncio.to_thread(kubectl, k8s, "get", "csr", "-o", "json")
        for csr in json.loads(out.stdout or '{"items": []}')["items"]:
            labels = csr["metadata"].get("labels") or {}
            approved = any(
                c["type"] == "Approved" for c in (csr.get("status") or {}).get("conditions") or []
            )
            if labels.get("interlink.eu/node") == node and not approved:
                await asyncio.to_thread(
                    kubectl, k8s, "certificate", "approve", csr["metadata"]["name"]
                )
        await asyncio.sleep(0.5)


async def until_listening(ip: str, port: int, server: asyncio.Task[None]) -> None:
    """Wait until the kubelet API accepts connections (its CSR is approved and signed)."""
    for _ in range(150):
        if server.done():
            server.result()  # raise what stopped it
            raise AssertionError("the kubelet API server stopped")
        try:
            _, writer = await asyncio.open_connection(ip, port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise AssertionError(f"the kubelet API never listened on {ip}:{port}")


@pytest.fixture
async def vk(k8s: K8sInfo, tmp_path: Path) -> AsyncIterator[VK]:
    node = f"vk-logs-{uuid.uuid4().hex[:6]}"
    ns = f"t-{uuid.uuid4().hex[:6]}"
    ip = f"127.0.{random.randint(2, 250)}.{random.randint(2, 250)}"
    port = 10250
    kubectl(k8s, "create", "namespace", ns)
    with EmbeddedEdge(state_dir=tmp_path / "edge") as edge:
        config = VKConfig(
            node_name=node,
            edge={"url": edge.url, "token": edge.token},
            internal_ip=ip,
            kubelet_port=port,
            status_interval_seconds=0.5,
            ping_interval_seconds=1,
            state_dir=tmp_path / "vk",
        )
        api = await kr8s.asyncio.api(kubeconfig=str(k8s.kubeconfig))
        async with InterLinkClient(
            edge.url, token=static_token(edge.token), retry=Retry(attempts=2, base_delay=0.1)
        ) as client:
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(NodeController(api, config, client).run(stop)),
                asyncio.create_task(PodController(Kube(api), config, client).run(stop)),
                asyncio.create_task(
                    serve_kubelet(config, Kube(api), client, stop, tmp_path / "vk")
                ),
                asyncio.create_task(approve_csr(k8s, node, stop)),
            ]
            try:
                await until_listening(ip, port, tasks[2])
                yield VK(k8s, node, ns, ip, port)
            finally:
                kubectl(k8s, "delete", "pods", "--all", "-n", ns, "--wait=false")
                await asyncio.sleep(1.5)
                stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
    kubectl(k8s, "delete", "namespace", ns, "--wait=false")
    kubectl(k8s, "delete", "node", node)
    kubectl(k8s, "delete", "lease", node, "-n", "kube-node-lease")


def pod(vk: VK, name: str, containers: list[dict[str, Any]]) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": vk.ns},
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": vk.node},
                "tolerations": [{"key": VK_TAINT_KEY, "operator": "Exists"}],
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": containers,
            },
        }
    )


async def wait_phase(vk: VK, name: str, phases: tuple[str, ...], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = await vk.kubectl("get", "pod", name, "-n", vk.ns, "-o", "jsonpath={.status.phase}")
        if out.stdout in phases:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"pod {name} never reached {phases}")


async def test_kubectl_logs_through_the_apiserver(vk: VK) -> None:
    spec = pod(
        vk,
        "talker",
        [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", "echo one; echo two; echo three"],
            },
            {"name": "side", "image": "busybox", "command": ["sh", "-c", "echo from-side"]},
        ],
    )
    out = await asyncio.to_thread(kubectl, vk.k8s, "apply", "-f", "-", input=spec)
    assert out.returncode == 0, out.stderr
    await wait_phase(vk, "talker", ("Succeeded",))
    logs = await vk.kubectl("logs", "talker", "-n", vk.ns, "-c", "main")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "one\ntwo\nthree\n"
    assert (
        await vk.kubectl("logs", "talker", "-n", vk.ns, "-c", "main", "--tail=1")
    ).stdout == "three\n"
    stamped = (
        await vk.kubectl("logs", "talker", "-n", vk.ns, "-c", "main", "--timestamps")
    ).stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["one", "two", "three"]
    assert stamped[0].startswith("20") and "T" in stamped[0].split(" ", 1)[0]
    assert (await vk.kubectl("logs", "talker", "-n", vk.ns, "-c", "side")).stdout == "from-side\n"
    assert (
        await vk.kubectl("logs", "talker", "-n", vk.ns, "-c", "main", "--since=1h")
    ).stdout == "one\ntwo\nthree\n"
    assert (
        await vk.kubectl("logs", "talker", "-n", vk.ns, "-c", "main", "--limit-bytes=6")
    ).stdout == "one\ntw"


async def test_kubectl_logs_follow_streams(vk: VK) -> None:
    spec = pod(
        vk,
        "ticker",
        [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", "for i in 1 2 3 4; do echo tick$i; sleep 0.5; done"],
            }
        ],
    )
    await asyncio.to_thread(kubectl, vk.k8s, "apply", "-f", "-", input=spec)
    await wait_phase(vk, "ticker", ("Running", "Succeeded"))
    t0 = time.monotonic()
    out = await vk.kubectl("logs", "-f", "ticker", "-n", vk.ns)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "tick1\ntick2\ntick3\ntick4\n"
    assert time.monotonic() - t0 > 0.5  # it waited for the lines to be written


async def test_anonymous_and_unauthorized_callers_are_refused(vk: VK) -> None:
    url = f"https://{vk.ip}:{vk.port}/containerLogs/{vk.ns}/nope/main"
    ctx = ssl.create_default_context(cafile=str(vk.k8s.ca))
    async with httpx.AsyncClient(verify=ctx) as http:
        for _ in range(100):  # the server starts once its certificate is issued
            try:
                anonymous = await http.get(url)
                break
            except httpx.ConnectError:
                await asyncio.sleep(0.3)
        assert anonymous.status_code == 401
        await vk.kubectl("create", "serviceaccount", "nobody", "-n", vk.ns)
        token = (await vk.kubectl("create", "token", "nobody", "-n", vk.ns)).stdout.strip()
        denied = await http.get(url, headers={"Authorization": f"Bearer {token}"})
        assert denied.status_code == 403
        assert "nodes" in denied.json()["error"] and "proxy" in denied.json()["error"]
        garbage = await http.get(url, headers={"Authorization": "Bearer not-a-token"})
        assert garbage.status_code == 401
        admin = await http.get(url, headers={"Authorization": f"Bearer {vk.k8s.admin_token}"})
        assert admin.status_code == 404  # allowed, and the pod does not exist
