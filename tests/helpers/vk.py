"""A whole virtual kubelet (node, pod sync, kubelet API) running in the test's event loop
against the real control plane, with a cluster admin approving its serving CSR."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kr8s.asyncio

from interlink_core.client import InterLinkClient, Retry, static_token
from interlink_vk.config import VK_TAINT_KEY, VKConfig
from interlink_vk.kube import Kube
from interlink_vk.kubelet import serve_kubelet
from interlink_vk.node import NodeController
from interlink_vk.pods import PodController
from tests.helpers.k8s import K8sInfo, kubectl


@dataclass
class RunningVK:
    """A running virtual node and a namespace of the test's own."""

    k8s: K8sInfo
    node: str
    ns: str
    ip: str
    port: int

    async def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """kubectl off the event loop (the VK answers in this very loop)."""
        return await asyncio.to_thread(kubectl, self.k8s, *args, input=input, timeout=timeout)

    def pod_manifest(
        self,
        name: str,
        containers: list[dict[str, Any]],
        annotations: dict[str, str] | None = None,
        **spec: Any,
    ) -> str:
        """A pod that kube-scheduler places on this virtual node."""
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": self.ns, "annotations": annotations or {}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": self.node},
                    "tolerations": [{"key": VK_TAINT_KEY, "operator": "Exists"}],
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1,
                    "containers": containers,
                    **spec,
                },
            }
        )

    async def pod(self, name: str) -> dict[str, Any] | None:
        out = await self.kubectl("get", "pod", name, "-n", self.ns, "-o", "json")
        return json.loads(out.stdout) if out.returncode == 0 else None

    async def wait_pod(self, name: str, cond: Any, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = await self.pod(name)
            if last is not None and cond(last):
                return last
            await asyncio.sleep(0.3)
        raise AssertionError(f"pod {name} never met the condition: {json.dumps(last)[:3000]}")


async def approve_csr(k8s: K8sInfo, node: str, stop: asyncio.Event) -> None:
    """What a cluster admin does: approve the node's kubelet-serving CSR."""
    while not stop.is_set():
        out = await asyncio.to_thread(kubectl, k8s, "get", "csr", "-o", "json")
        for csr in json.loads(out.stdout or '{"items": []}')["items"]:
            labels = csr["metadata"].get("labels") or {}
            conditions = (csr.get("status") or {}).get("conditions") or []
            approved = any(c["type"] == "Approved" for c in conditions)
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


@asynccontextmanager
async def running_vk(
    k8s: K8sInfo, edge_url: str, token: str, state: Path, prefix: str = "vk"
) -> AsyncIterator[RunningVK]:
    """Node + pod sync + kubelet API for one fresh virtual node, cleaned up afterwards."""
    node = f"{prefix}-{uuid.uuid4().hex[:6]}"
    ns = f"t-{uuid.uuid4().hex[:6]}"
    ip = f"127.0.{random.randint(2, 250)}.{random.randint(2, 250)}"
    kubectl(k8s, "create", "namespace", ns)
    config = VKConfig(
        node_name=node,
        edge={"url": edge_url, "token": token},
        internal_ip=ip,
        kubelet_port=10250,
        status_interval_seconds=0.5,
        ping_interval_seconds=1,
        state_dir=state,
    )
    api = await kr8s.asyncio.api(kubeconfig=str(k8s.kubeconfig))
    async with InterLinkClient(
        edge_url, token=static_token(token), retry=Retry(attempts=2, base_delay=0.1)
    ) as client:
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(NodeController(api, config, client).run(stop)),
            asyncio.create_task(PodController(Kube(api), config, client).run(stop)),
            asyncio.create_task(serve_kubelet(config, Kube(api), client, stop, state)),
            asyncio.create_task(approve_csr(k8s, node, stop)),
        ]
        try:
            await until_listening(ip, 10250, tasks[2])
            yield RunningVK(k8s, node, ns, ip, 10250)
        finally:
            kubectl(k8s, "delete", "pods", "--all", "-n", ns, "--wait=false")
            await asyncio.sleep(1.5)  # let the VK delete remotely
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
            kubectl(k8s, "delete", "namespace", ns, "--wait=false")
            kubectl(k8s, "delete", "node", node)
            kubectl(k8s, "delete", "lease", node, "-n", "kube-node-lease")
