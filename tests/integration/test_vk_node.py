"""The virtual node against the test world's real control plane and real edges (an embedded
edge, the SLURM plugin, an upstream-style plugin process): the Node and its status, the Lease
heartbeat, Ready following the edge, taints and capacity from the edge's ping, and
kube-scheduler binding a pod to the node."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest

from interlink_core.client import InterLinkClient, Retry, static_token
from interlink_core.embedded import EmbeddedEdge
from interlink_vk.config import VK_TAINT_KEY, Capacity, EdgeConfig, Taint, VKConfig
from interlink_vk.kube import Kube
from interlink_vk.metrics import VKMetrics
from interlink_vk.node import LEASE_NAMESPACE, NodeController
from tests.helpers.k8s import K8sInfo, kubectl
from tests.helpers.slurm import SlurmInfo
from tests.helpers.upstream_standin import start_standin
from tests.helpers.world import Service, free_port, start_api, start_plugin

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
    controller = NodeController(Kube(api), config, client, ping_timeout=2.0, metrics=VKMetrics())
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
            await controller.kube.aclose()
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


DEV_TOKEN = "vk-node-dev-token"


@asynccontextmanager
async def node_on(
    k8s: K8sInfo, edge_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Running, NodeController]]:
    """A NodeController (pinging every 0.3 s) for a fresh node name against ``edge_url``."""
    name = f"vk-test-{uuid.uuid4().hex[:8]}"
    config = VKConfig(
        node_name=name,
        edge=EdgeConfig(url=edge_url, token=DEV_TOKEN),
        ping_interval_seconds=0.3,
        lease_duration_seconds=10,
    )
    api = await kr8s.asyncio.api(kubeconfig=str(k8s.kubeconfig))
    async with InterLinkClient(edge_url, token=static_token(DEV_TOKEN)) as client:
        controller = NodeController(Kube(api), config, client, metrics=VKMetrics())
        stop = asyncio.Event()
        task = asyncio.create_task(controller.run(stop))
        try:
            yield (
                Running(name, api, controller, EmbeddedEdge(state_dir=tmp_path), tmp_path),
                (controller),
            )
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            await controller.kube.aclose()
            kubectl(k8s, "delete", "node", name, "--ignore-not-found", "--wait=false")
            kubectl(k8s, "-n", LEASE_NAMESPACE, "delete", "lease", name, "--ignore-not-found")


def taint_keys(n: JSON) -> set[str]:
    return {t["key"] for t in n["spec"].get("taints") or []}


# tests/world/slurm-up: one node of 64 CPUs in a partition with OverSubscribe=FORCE:4, so SLURM
# runs 256 one-CPU jobs at once; the node announces that (plugin setting announce_cpu unset)
WORLD_SLURM_RUNNABLE_CPUS = "256"


async def test_the_slurm_plugins_taints_are_applied_and_foreign_taints_kept(
    k8s: K8sInfo, slurm: SlurmInfo, tmp_path: Path
) -> None:
    """A site sets ``taints:`` in the SLURM plugin's configuration and restarts it: the node
    follows; a taint someone else set stays; the capacity is SLURM's."""
    maintenance = {"key": "site.example/maintenance", "value": "soon", "effect": "NoSchedule"}
    settings = {"runtime": "host", "partition": slurm.partition, "max_pods": 50}
    plugin = start_plugin(tmp_path / "plugin", "slurm", {**settings, "taints": [maintenance]})
    api = start_api(
        tmp_path / "api", {"plugin": {"url": plugin.url}, "auth": {"insecure_dev_token": DEV_TOKEN}}
    )
    try:
        async with node_on(k8s, api.url, tmp_path) as (run, _):
            node = await wait_for(
                "the plugin's taint", run.node, lambda n: maintenance["key"] in taint_keys(n)
            )
            assert {"key": maintenance["key"], "value": "soon", "effect": "NoSchedule"} in node[
                "spec"
            ]["taints"]
            cap = node["status"]["capacity"]
            assert (cap["cpu"], cap["pods"]) == (WORLD_SLURM_RUNNABLE_CPUS, "50")
            out = await asyncio.to_thread(
                kubectl, k8s, "taint", "node", run.name, "someone.else/taint=x:PreferNoSchedule"
            )
            assert out.returncode == 0, out.stderr
            # the site drops the taint from the plugin's configuration and restarts it
            plugin.stop()
            plugin = start_plugin(tmp_path / "plugin", "slurm", {**settings, "taints": []})
            node = await wait_for(
                "the plugin's taint gone",
                run.node,
                lambda n: maintenance["key"] not in taint_keys(n),
                timeout=30,
            )
            assert {VK_TAINT_KEY, "someone.else/taint"} <= taint_keys(node)
    finally:
        api.stop()
        plugin.stop()


async def test_edge_gpus_come_and_go_and_absent_taints_leave_the_node_alone(
    k8s: K8sInfo, slurm: SlurmInfo, tmp_path: Path
) -> None:
    """The site moves its API server from our SLURM plugin (which sets a taint) to an
    upstream-style plugin (a process speaking upstream's ping: quantities as strings, GPUs, no
    taints): the GPUs appear in the node's capacity, the taint stays (no taints in a ping
    means "leave them"), and the GPUs go when the plugin stops offering them."""
    maintenance = {"key": "site.example/maintenance", "value": "soon", "effect": "NoSchedule"}
    settings = {"runtime": "host", "partition": slurm.partition, "taints": [maintenance]}
    slurm_plugin = start_plugin(tmp_path / "plugin", "slurm", settings)
    port = free_port()

    def api_for(plugin: Service) -> Service:
        config = {"plugin": {"url": plugin.url}, "auth": {"insecure_dev_token": DEV_TOKEN}}
        return start_api(tmp_path / "api", config, port=port)

    api = api_for(slurm_plugin)
    standin: Service | None = None
    try:
        async with node_on(k8s, api.url, tmp_path) as (run, _):
            await wait_for(
                "the plugin's taint", run.node, lambda n: maintenance["key"] in taint_keys(n)
            )
            api.stop()
            standin, _ = start_standin(tmp_path / "standin", gpus=8)
            api = api_for(standin)
            node = await wait_for(
                "the GPUs",
                run.node,
                lambda n: "nvidia.com/gpu" in n["status"]["capacity"],
                timeout=30,
            )
            cap = node["status"]["capacity"]
            assert (cap["cpu"], cap["memory"], cap["pods"], cap["nvidia.com/gpu"]) == (
                "8",
                "16Gi",
                "100",
                "8",
            )
            assert maintenance["key"] in taint_keys(node)
            # the plugin is restarted without GPUs: they leave the node, the taint stays
            standin.stop()
            standin, _ = start_standin(tmp_path / "standin", gpus=0)
            node = await wait_for(
                "the GPUs gone",
                run.node,
                lambda n: "nvidia.com/gpu" not in n["status"]["capacity"],
                timeout=30,
            )
            assert "nvidia.com/gpu" not in node["status"]["allocatable"]
            assert maintenance["key"] in taint_keys(node)
    finally:
        api.stop()
        slurm_plugin.stop()
        if standin is not None:
            standin.stop()
