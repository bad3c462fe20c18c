"""A whole virtual kubelet (node, pod sync, heartbeat reaper, kubelet API) running in the
test's event loop against the real control plane, with a cluster admin approving its serving
CSR."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import random
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kr8s.asyncio
import yaml

from interlink_core.client import InterLinkClient, Retry, static_token
from interlink_core.embedded import EmbeddedEdge
from interlink_vk.config import VK_TAINT_KEY, EdgeConfig, VKConfig
from interlink_vk.kube import Kube
from interlink_vk.kubelet import serve_kubelet
from interlink_vk.metrics import VKMetrics
from interlink_vk.node import NodeController
from interlink_vk.pods import PodController
from interlink_vk.reaper import HeartbeatReaper
from tests.helpers.k8s import K8sInfo, kubectl
from tests.helpers.slurm import SlurmInfo
from tests.helpers.world import INTERLINK, REPO, start_api, start_plugin


@dataclass
class RunningVK:
    """A running virtual node and a namespace of the test's own."""

    k8s: K8sInfo
    node: str
    ns: str
    ip: str
    port: int
    metrics: VKMetrics
    pods: PodController

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


def helm_role_kubeconfig(k8s: K8sInfo, dest: Path) -> Path:
    """A kubeconfig for the ServiceAccount of the Helm chart's RBAC (its ServiceAccount and
    templates/rbac.yaml, rendered by ``helm template`` as release ``interlink-vk`` in namespace
    ``interlink``), so the VK runs with exactly the rights the chart grants."""
    from tests.helpers.helm import template  # builds helm on first use (cached)

    kubectl(k8s, "create", "namespace", "interlink")  # exists already on a second call
    rendered = template(
        "--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml",
        "--set", "edge.url=https://edge.invalid,edge.credentials.token=unused",
        release="interlink-vk", namespace="interlink", chart=REPO / "helm/interlink-vk",
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    out = kubectl(k8s, "apply", "-f", "-", input=rendered.stdout)
    assert out.returncode == 0, out.stderr
    token = kubectl(k8s, "create", "token", "interlink-vk", "-n", "interlink", "--duration=2h")
    assert token.returncode == 0, token.stderr
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "world",
                "cluster": {"server": k8s.server, "certificate-authority": str(k8s.ca)},
            }
        ],
        "users": [{"name": "interlink-vk", "user": {"token": token.stdout.strip()}}],
        "contexts": [{"name": "vk", "context": {"cluster": "world", "user": "interlink-vk"}}],
        "current-context": "vk",
    }
    dest.write_text(json.dumps(config))
    return dest


def host_ip() -> str | None:
    """This host's address on its default route (not loopback), if it has one: the apiserver
    proxies ``nodes/<node>/proxy`` only to addresses that are not loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("198.51.100.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        addr = str(s.getsockname()[0])
    return None if ipaddress.ip_address(addr).is_loopback else addr


class TaskWatch:
    """The VK's background tasks, each of which must run until ``stop`` is set. One that ends
    earlier (crashed or returned) cancels the test that started them, and :meth:`check` then
    fails it with the task's error; cancellation at teardown is fine."""

    def __init__(self, tasks: dict[str, asyncio.Task[None]], stop: asyncio.Event) -> None:
        self.tasks = tasks
        self.stop = stop
        self.tearing_down = False
        self.died: list[str] = []
        self.test = asyncio.current_task()
        for name, task in tasks.items():
            task.add_done_callback(functools.partial(self._done, name))

    def _done(self, name: str, task: asyncio.Task[None]) -> None:
        if task.cancelled() and self.tearing_down:
            return
        error = None if task.cancelled() else task.exception()
        if error is None and self.stop.is_set():
            return
        self.died.append(f"{name}: {error!r}" if error else f"{name}: ended before teardown")
        if not self.tearing_down and self.test is not None and not self.test.done():
            self.test.cancel(f"the VK's {name} died")

    async def stopped(self, timeout: float) -> None:
        """Wait until every task ended after ``stop``; one still running at ``timeout`` is
        cancelled and counts as died."""
        _, pending = await asyncio.wait(self.tasks.values(), timeout=timeout)
        for name, task in self.tasks.items():
            if task in pending:
                self.died.append(f"{name}: still running {timeout} s after stop")
                task.cancel()
        if pending:
            await asyncio.wait(pending)

    def check(self) -> None:
        """Fail with every background task that died (this replaces the test's own error,
        which is then most likely a consequence; it stays chained)."""
        if not self.died:
            return
        if self.test is not None and self.test.cancelling():
            self.test.uncancel()
        errors = [t.exception() for t in self.tasks.values() if not t.cancelled()]
        cause = next((e for e in errors if e is not None), None)
        raise AssertionError("background tasks of the VK died: " + "; ".join(self.died)) from cause


@asynccontextmanager
async def running_vk(
    k8s: K8sInfo,
    edge_url: str,
    token: str,
    state: Path,
    prefix: str = "vk",
    ip: str | None = None,
    port: int = 10250,
    kubeconfig: Path | None = None,
    **settings: Any,
) -> AsyncIterator[RunningVK]:
    """Node + pod sync + reaper + kubelet API for one fresh virtual node, cleaned up afterwards
    (``settings`` override the VKConfig defaults of the tests). The kubelet API listens on a
    loopback address of its own unless ``ip`` is given; the VK talks to Kubernetes as the
    admin unless ``kubeconfig`` names another identity."""
    node = f"{prefix}-{uuid.uuid4().hex[:6]}"
    ns = f"t-{uuid.uuid4().hex[:6]}"
    ip = ip or loopback_ip()
    kubectl(k8s, "create", "namespace", ns)
    config = VKConfig(
        node_name=node,
        edge=EdgeConfig(url=edge_url, token=token),
        internal_ip=ip,
        kubelet_port=port,
        state_dir=state,
        **{"status_interval_seconds": 0.5, "ping_interval_seconds": 1, **settings},
    )
    api = await kr8s.asyncio.api(kubeconfig=str(kubeconfig or k8s.kubeconfig))
    metrics = VKMetrics()
    async with (
        InterLinkClient(
            edge_url, token=static_token(token), retry=Retry(attempts=2, base_delay=0.1)
        ) as client,
        Kube(api) as kube,
    ):
        stop = asyncio.Event()
        pods = PodController(kube, config, client, metrics)
        tasks = {
            "node controller": NodeController(kube, config, client, metrics=metrics).run(stop),
            "pod sync": pods.run(stop),
            "kubelet API": serve_kubelet(config, kube, client, stop, state, metrics),
            "CSR approver": approve_csr(k8s, node, stop),
            "heartbeat reaper": HeartbeatReaper(kube, config, pods.leased, metrics).run(stop),
        }
        watch = TaskWatch({name: asyncio.create_task(c) for name, c in tasks.items()}, stop)
        try:
            await until_listening(ip, port, watch.tasks["kubelet API"])
            yield RunningVK(k8s, node, ns, ip, port, metrics, pods)
        finally:
            watch.tearing_down = True
            kubectl(k8s, "delete", "pods", "--all", "-n", ns, "--wait=false")
            await asyncio.sleep(1.5)  # let the VK delete remotely
            stop.set()
            await watch.stopped(timeout=20)
            kubectl(k8s, "delete", "namespace", ns, "--wait=false")
            kubectl(k8s, "delete", "node", node)
            kubectl(k8s, "delete", "lease", node, "-n", "kube-node-lease")
            watch.check()


SLURM_EDGE_TOKEN = "slurm-edge-dev-token"


@asynccontextmanager
async def slurm_vk(
    k8s: K8sInfo,
    slurm: SlurmInfo,
    root: Path,
    prefix: str,
    plugin_config: dict[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[RunningVK]:
    """A virtual node backed by the real SLURM: the SLURM plugin (``runtime: host`` unless
    ``plugin_config`` says otherwise) behind an API server with a development token, and a VK
    in this event loop (``settings`` as for :func:`running_vk`)."""
    config = {"runtime": "host", "partition": slurm.partition, **(plugin_config or {})}
    async with plugin_vk(k8s, root, prefix, "slurm", config, **settings) as running:
        yield running


@asynccontextmanager
async def plugin_vk(
    k8s: K8sInfo,
    root: Path,
    prefix: str,
    backend: str,
    plugin_config: dict[str, Any],
    **settings: Any,
) -> AsyncIterator[RunningVK]:
    """A virtual node backed by ``interlink plugin <backend>`` (with ``plugin_config``) behind
    an API server with a development token, and a VK in this event loop."""
    plugin = start_plugin(root / "plugin", backend, config=plugin_config)
    api = start_api(
        root / "api",
        {"plugin": {"url": plugin.url}, "auth": {"insecure_dev_token": SLURM_EDGE_TOKEN}},
    )
    try:
        async with running_vk(
            k8s, api.url, SLURM_EDGE_TOKEN, root / "vk", prefix, **settings
        ) as running:
            yield running
    finally:
        api.stop()
        plugin.stop()


@asynccontextmanager
async def local_vk(
    k8s: K8sInfo, root: Path, prefix: str, **settings: Any
) -> AsyncIterator[tuple[RunningVK, EmbeddedEdge]]:
    """A virtual node backed by the ``local`` plugin: an embedded edge (API server + plugin,
    development token) under ``root/edge`` and a VK in this event loop (``settings`` as for
    :func:`running_vk`)."""
    with EmbeddedEdge(state_dir=root / "edge") as edge:
        async with running_vk(k8s, edge.url, edge.token, root / "vk", prefix, **settings) as vk:
            yield vk, edge


TOKEN_DIR = "/var/run/secrets/tokens"


def token_watcher(image: str = "busybox") -> dict[str, Any]:
    """A container that waits (up to 30 s, else exit 3) until its service-account token file
    changes, then prints ``changed`` and the new token."""
    watch = (
        f"t={TOKEN_DIR}/token; first=$(cat $t); i=0; "
        'while [ "$(cat $t)" = "$first" ]; do i=$((i+1)); [ $i -gt 300 ] && exit 3; '
        "sleep 0.1; done; echo changed; cat $t"
    )
    return {
        "name": "main",
        "image": image,
        "command": ["sh", "-c", watch],
        "volumeMounts": [{"name": "tok", "mountPath": TOKEN_DIR}],
    }


def token_volume(seconds: int) -> dict[str, Any]:
    """A projected volume with one service-account token of this lifetime."""
    source = {"serviceAccountToken": {"path": "token", "expirationSeconds": seconds}}
    return {"name": "tok", "projected": {"sources": [source]}}


# --- `interlink vk` as a process of its own ------------------------------------------------------


def loopback_ip() -> str:
    """A loopback address of its own for a VK's kubelet API (other VKs may run on this host)."""
    return f"127.0.{random.randint(2, 250)}.{random.randint(2, 250)}"


def start_vk_process(
    k8s: K8sInfo, root: Path, node: str, edge_url: str, token: str, **settings: Any
) -> subprocess.Popen[bytes]:
    """``interlink vk`` as its own process for ``node``: its configuration written to
    ``root/vk.yaml`` (``settings`` added to it; state under ``root/vk-state``), its output
    appended to ``root/vk.log``. Calling it again restarts the same VK."""
    config = root / "vk.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "node_name": node,
                "kubeconfig": str(k8s.kubeconfig),
                "edge": {"url": edge_url, "token": token},
                "state_dir": str(root / "vk-state"),
                **settings,
            }
        )
    )
    return subprocess.Popen(
        [*INTERLINK, "vk", "--config", str(config), "--log-level", "info"],
        stdout=(root / "vk.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
