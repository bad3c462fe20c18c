"""The virtual node against the test world's real control plane and a real embedded edge: the
Node and its status, the Lease heartbeat, Ready following the edge, and kube-scheduler binding a
pod to the node."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest

from interlink_core.client import InterLinkClient, Retry, static_token
from interlink_core.embedded import EmbeddedEdge
from interlink_core.models import Accelerator, NodeResources, PingAnswer
from interlink_vk.config import VK_TAINT_KEY, Capacity, EdgeConfig, Taint, VKConfig
from interlink_vk.metrics import VKMetrics
from interlink_vk.node import LEASE_NAMESPACE, NodeController
from tests.helpers.k8s import K8sInfo, kubectl

pytestmark = pytest.mark.integration

JSON = dict[str, Any]


@dataclass
class Running:
    """A NodeController running in this event loop, with its edge."""

    name: str
    api: Any
    controller: NodeController
    edge: EmbeddedEdge
    state_dir: Path

    async def get(self, url: str, **kw: Any) -> JSON | None:
        # Read inside, raise outside: an httpx error raised in the body of call_api would be
        # thrown into kr8s' generator (which retries on some of them).
        async with self.api.call_api("GET", url=url, raise_for_status=False, **kw) as resp:
            code, data = resp.status_code, resp.json()
        if code == 404:
            return None
        assert code == 200, data
        return dict(data)

    async def node(self) -> JSON | None:
        return await self.get(f"nodes/{self.name}")

    async def lease(self) -> JSON | None:
        return await self.get(
            f"leases/{self.name}", version="coordination.k8s.io/v1", namespace=LEASE_NAMESPACE
        )


def conditions(node: JSON) -> dict[str, JSON]:
    return {c["type"]: c for c in node["status"].get("conditions") or []}


async def wait_for(
    what: str, probe: Callable[[], Any], check: Callable[[Any], bool], timeout: float = 15.0
) -> Any:
    """Poll ``await probe()`` until ``check`` holds; its last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while loop.time() < deadline:
        last = await probe()
        if last is not None and check(last):
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {json.dumps(last)[:2000]}")


def count(quantity: str) -> int:
    """A plain count as Kubernetes canonicalises it (``1000`` is stored as ``1k``)."""
    factors = {"k": 10**3, "M": 10**6, "G": 10**9}
    if quantity[-1:] in factors:
        return int(quantity[:-1]) * factors[quantity[-1]]
    return int(quantity)


def ready(node: JSON) -> str:
    return str(conditions(node).get("Ready", {}).get("status"))


def seconds(stamp: str) -> float:
    """Seconds since the epoch of a Kubernetes (Micro)Time."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def distinct(
    what: str, probe: Callable[[], Any], read: Callable[[JSON], str], n: int
) -> list[float]:
    """The next ``n`` distinct values of ``read(await probe())``, as times, in order."""
    seen: list[str] = []
    while len(seen) < n:
        got = await wait_for(what, probe, lambda x: bool(read(x)) and read(x) not in seen, 30)
        seen.append(read(got))
    return [seconds(t) for t in seen]


async def renewals(running: Running, n: int) -> list[float]:
    """The renewTime of the node's Lease, ``n`` times in a row."""
    return await distinct(
        "a lease renewal", running.lease, lambda lease: lease["spec"].get("renewTime", ""), n
    )


async def ready_heartbeats(running: Running, n: int) -> list[float]:
    """The Ready condition's lastHeartbeatTime, ``n`` times in a row."""
    return await distinct(
        "a Ready heartbeat",
        running.node,
        lambda node: str(conditions(node).get("Ready", {}).get("lastHeartbeatTime", "")),
        n,
    )


@pytest.fixture
async def running(k8s: K8sInfo, tmp_path: Path) -> AsyncIterator[Running]:
    name = f"vk-test-{uuid.uuid4().hex[:8]}"
    edge = EmbeddedEdge(state_dir=tmp_path / "edge")
    await asyncio.to_thread(edge.start)
    config = VKConfig(
        node_name=name,
        kubeconfig=k8s.kubeconfig,
        edge=EdgeConfig(url=edge.url, token=edge.token),
        labels={"site": "test-world"},
        taints=[Taint(key="interlink.test/extra", value="yes", effect="PreferNoSchedule")],
        capacity=Capacity(cpu="9999", memory="9Ti", pods="7", accelerators={"nvidia.com/gpu": 2}),
        internal_ip="127.0.0.1",
        kubelet_port=10999,
        ping_interval_seconds=0.5,
        lease_duration_seconds=10,
    )
    api = await kr8s.asyncio.api(kubeconfig=str(k8s.kubeconfig))
    client = InterLinkClient(
        edge.url,
        token=static_token(edge.token),
        retry=Retry(attempts=1),
        timeout=2.0,
    )
    controller = NodeController(api, config, client, ping_timeout=2.0, metrics=VKMetrics())
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    run = Running(name, api, controller, edge, tmp_path / "edge")
    try:
        yield run
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 10)
        finally:
            await client.aclose()
            run.edge.stop()
            kubectl(k8s, "delete", "node", name, "--ignore-not-found", "--wait=false")
            kubectl(k8s, "-n", LEASE_NAMESPACE, "delete", "lease", name, "--ignore-not-found")


async def test_node_registers_with_labels_taints_capacity_and_ready(running: Running) -> None:
    node = await wait_for(
        "a Ready node",
        running.node,
        lambda n: (
            ready(n) == "True" and n["status"].get("capacity", {}).get("cpu") == str(os.cpu_count())
        ),
    )
    labels = node["metadata"]["labels"]
    assert labels["virtual-node.interlink/type"] == "virtual-kubelet"
    assert labels["kubernetes.io/role"] == "agent"
    assert labels["kubernetes.io/hostname"] == running.name
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["type"] == "virtual-kubelet"
    assert labels["site"] == "test-world"
    taints = {(t["key"], t.get("value"), t["effect"]) for t in node["spec"]["taints"]}
    assert (VK_TAINT_KEY, "true", "NoSchedule") in taints
    assert ("interlink.test/extra", "yes", "PreferNoSchedule") in taints

    status = node["status"]
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    # no Hostname address: the apiserver would try to resolve the virtual node's name first
    assert [a["type"] for a in status["addresses"]] == ["InternalIP"]
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10999
    cap = status["capacity"]
    assert cap["cpu"] == str(os.cpu_count())
    assert count(cap["pods"]) == 1000  # the local plugin's max_pods, not 7
    assert cap["memory"].endswith(("Gi", "Mi"))
    assert cap["nvidia.com/gpu"] == "2"  # configured; the local plugin announces none
    assert status["allocatable"] == cap
    info = status["nodeInfo"]
    assert info["operatingSystem"] == "linux"
    assert info["architecture"] == "amd64"
    assert info["kubeletVersion"].endswith("-interlink")
    assert info["containerRuntimeVersion"].startswith("interlink://")

    conds = conditions(node)
    assert conds["InterLinkConnectivity"]["status"] == "True"
    assert conds["InterLinkConnectivity"]["reason"] == "EdgeReachable"
    for ctype in ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable"):
        assert conds[ctype]["status"] == "False"

    # Heartbeats move on, the transition time stays while nothing flips.
    first = conds["Ready"]
    later = await wait_for(
        "a newer heartbeat",
        running.node,
        lambda n: conditions(n)["Ready"]["lastHeartbeatTime"] != first["lastHeartbeatTime"],
        timeout=5,
    )
    assert conditions(later)["Ready"]["lastTransitionTime"] == first["lastTransitionTime"]


async def test_lease_is_held_and_renewed(running: Running) -> None:
    node = await wait_for("the node", running.node, lambda n: ready(n) == "True")
    lease = await wait_for("the lease", running.lease, lambda _: True)
    spec = lease["spec"]
    assert spec["holderIdentity"] == running.name
    assert spec["leaseDurationSeconds"] == 10
    owner = lease["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "Node",
        running.name,
        node["metadata"]["uid"],
    )
    first, second = await renewals(running, 2)
    # renewed every quarter of the duration (2.5 s after the last renewal ended), not at each
    # 0.5 s ping, and before the lease ran out (else the node would count as dead)
    assert 10 / 4 <= second - first < 10


async def test_ready_follows_the_edge(running: Running) -> None:
    await wait_for("a Ready node", running.node, lambda n: ready(n) == "True")
    port, token = running.edge.port, running.edge.token
    before = conditions(await running.node() or {"status": {}})["Ready"]["lastTransitionTime"]

    await asyncio.to_thread(running.edge.stop)
    down = await wait_for("NotReady", running.node, lambda n: ready(n) == "False", timeout=10)
    conds = conditions(down)
    assert conds["InterLinkConnectivity"]["status"] == "False"
    assert conds["InterLinkConnectivity"]["reason"] == "EdgeUnreachable"
    assert conds["InterLinkConnectivity"]["message"]
    assert conds["Ready"]["message"]
    assert conds["Ready"]["lastTransitionTime"] >= before
    assert count(down["status"]["capacity"]["pods"]) == 1000  # the last capacity is kept

    running.edge = EmbeddedEdge(state_dir=running.state_dir, port=port, token=token)
    await asyncio.to_thread(running.edge.start)
    up = await wait_for("Ready again", running.node, lambda n: ready(n) == "True", timeout=15)
    assert conditions(up)["InterLinkConnectivity"]["status"] == "True"


async def test_scheduler_binds_a_pod_and_the_node_stays(k8s: K8sInfo, running: Running) -> None:
    await wait_for("a Ready node", running.node, lambda n: ready(n) == "True")
    pod_name = f"vk-sched-{uuid.uuid4().hex[:6]}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": "default"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": running.name},
            "tolerations": [{"key": VK_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1"]}],
        },
    }
    out = await asyncio.to_thread(kubectl, k8s, "apply", "-f", "-", input=json.dumps(pod))
    assert out.returncode == 0, out.stderr
    try:
        bound = await wait_for(
            "the pod bound to the node",
            lambda: running.get(f"pods/{pod_name}", namespace="default"),
            lambda p: p["spec"].get("nodeName") == running.name,
            timeout=20,
        )
        assert bound["spec"]["nodeName"] == running.name
        # The node lifecycle controller marks a node NotReady once neither its Lease nor its
        # Ready heartbeat moved for its grace period (40 s or more): both keep moving, every
        # step well within the lease's 10 s, and the node is still Ready, untainted.
        lease_times = await renewals(running, 3)
        assert all(b - a < 10 for a, b in itertools.pairwise(lease_times)), lease_times
        beats = await ready_heartbeats(running, 3)
        assert all(b - a < 10 for a, b in itertools.pairwise(beats)), beats
        node = await running.node()
        assert node is not None
        assert ready(node) == "True"
        assert conditions(node)["Ready"]["reason"] != "NodeStatusUnknown"
        keys = {t["key"] for t in node["spec"]["taints"]}
        assert "node.kubernetes.io/unreachable" not in keys
        assert "node.kubernetes.io/not-ready" not in keys
    finally:
        await asyncio.to_thread(
            kubectl,
            k8s,
            "-n",
            "default",
            "delete",
            "pod",
            pod_name,
            "--grace-period=0",
            "--force",
            "--ignore-not-found",
        )


class ScriptedEdge:
    """An edge whose ping answer the test sets (the local plugin announces no taints)."""

    def __init__(self) -> None:
        self.answer = PingAnswer(status="ok")

    async def ping(self) -> PingAnswer:
        return self.answer


async def test_edge_taints_are_applied_and_foreign_taints_kept(
    k8s: K8sInfo, tmp_path: Path
) -> None:
    name = f"vk-test-{uuid.uuid4().hex[:8]}"
    config = VKConfig(
        node_name=name,
        edge=EdgeConfig(url="http://127.0.0.1:1"),
        ping_interval_seconds=0.3,
        lease_duration_seconds=10,
    )
    api = await kr8s.asyncio.api(kubeconfig=str(k8s.kubeconfig))
    edge = ScriptedEdge()
    edge.answer = PingAnswer(
        status="ok",
        resources=NodeResources(
            cpu="64",
            memory="256Gi",
            pods="50",
            accelerators=[Accelerator(resourceType="nvidia.com/gpu", available="8")],
        ),
        taints=[{"key": "site.example/maintenance", "value": "soon", "effect": "NoSchedule"}],
    )
    controller = NodeController(api, config, edge, metrics=VKMetrics())  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    run = Running(name, api, controller, EmbeddedEdge(state_dir=tmp_path), tmp_path)

    def taint_keys(n: JSON) -> set[str]:
        return {t["key"] for t in n["spec"].get("taints") or []}

    try:
        node = await wait_for(
            "the edge's taint",
            run.node,
            lambda n: "site.example/maintenance" in taint_keys(n),
        )
        cap = node["status"]["capacity"]
        assert (cap["cpu"], cap["memory"], cap["pods"], cap["nvidia.com/gpu"]) == (
            "64",
            "256Gi",
            "50",
            "8",
        )
        out = await asyncio.to_thread(
            kubectl, k8s, "taint", "node", name, "someone.else/taint=x:PreferNoSchedule"
        )
        assert out.returncode == 0, out.stderr
        # An answer without taints leaves the edge's taint on the node (upstream's rule)...
        edge.answer = PingAnswer(status="ok")
        registry = controller.metrics.registry

        def pings() -> float:
            labels = {"operation": "ping", "outcome": "ok"}
            return registry.get_sample_value("interlink_vk_edge_calls_total", labels) or 0.0

        seen = pings()
        while pings() < seen + 3:  # three pings answered without taints
            await asyncio.sleep(0.1)
        assert "site.example/maintenance" in taint_keys(await run.node() or {})
        # ... an empty list removes it. The edge drops its taint and its GPUs: both
        # disappear, the foreign taint stays.
        edge.answer = PingAnswer(
            status="ok", resources=NodeResources(cpu="64", memory="256Gi", pods="50"), taints=[]
        )
        node = await wait_for(
            "the edge's taint gone",
            run.node,
            lambda n: "site.example/maintenance" not in taint_keys(n),
        )
        assert {VK_TAINT_KEY, "someone.else/taint"} <= taint_keys(node)
        # Config accelerators are none here, so the GPUs the edge no longer offers go away.
        node = await wait_for(
            "the GPUs gone",
            run.node,
            lambda n: "nvidia.com/gpu" not in n["status"]["capacity"],
            timeout=5,
        )
        assert "nvidia.com/gpu" not in node["status"]["allocatable"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        kubectl(k8s, "delete", "node", name, "--ignore-not-found", "--wait=false")
        kubectl(k8s, "-n", LEASE_NAMESPACE, "delete", "lease", name, "--ignore-not-found")
