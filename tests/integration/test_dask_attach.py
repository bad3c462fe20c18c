"""docs/dask.md, "Reconnecting and discovery": ``InterLinkCluster.from_name(name)`` attaches to
a cluster another process runs, looking in the configured mode first and then in the other;
``scale()`` and ``adapt()`` on the attached object are carried out by the owner. The owner is a
process of its own; its workers are pods on a virtual node (in-process VK, local plugin) of the
real control plane, or go straight to the edge in direct mode."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from distributed import Client

from interlink_core.embedded import EmbeddedEdge
from interlink_dask import InterLinkCluster, WorkerState
from tests.helpers.k8s import K8sInfo
from tests.helpers.vk import RunningVK, local_vk
from tests.helpers.world import stop, until

pytestmark = pytest.mark.integration
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]
OWNER = """
import json, sys
from interlink_dask import InterLinkCluster
cluster = InterLinkCluster(**json.loads(sys.argv[1]))
print(json.dumps({"name": cluster.name, "contact": cluster.contact_address}), flush=True)
sys.stdin.read()  # until the test closes our stdin
cluster.close()
"""


@pytest.fixture
async def vk(k8s: K8sInfo, tmp_path: Path) -> AsyncIterator[tuple[RunningVK, EmbeddedEdge]]:
    async with local_vk(k8s, tmp_path, "vk-attach", heartbeat_check_seconds=1) as running:
        yield running


def k8s_options(vk: RunningVK, **more: Any) -> dict[str, Any]:
    return {
        "kubeconfig": str(vk.k8s.kubeconfig),
        "namespace": vk.ns,
        "node": vk.node,
        "image": "none",  # the local plugin runs the worker command on this host
        "worker_command": WORKER,
        "memory": "256MiB",
        "status_interval": 0.5,
        "death_timeout": 30,
        "heartbeat": {"interval": 1, "timeout": 8},
        **more,
    }


@contextmanager
def owner(options: dict[str, Any], log: Path) -> Iterator[dict[str, str]]:
    """A process that runs an InterLinkCluster with ``options`` until we close its stdin;
    yields its name and the scheduler's contact address (what the workers dial)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        assert line, f"the owner did not start:\n{log.read_text()}"
        yield dict(json.loads(line))
        proc.stdin.close()  # the owner closes its cluster (and deletes its pods)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        stop(proc)


def states(cluster: InterLinkCluster) -> list[WorkerState]:
    return [r.state for r in cluster.worker_states]


async def worker_pods(vk: RunningVK, name: str) -> list[str]:
    out = await vk.kubectl(
        "get", "pods", "-n", vk.ns, "-l", f"interlink.eu/dask-cluster={name}", "-o", "name"
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


async def test_from_name_in_kubernetes_mode_and_adapt_through_the_attached_cluster(
    vk: tuple[RunningVK, EmbeddedEdge], tmp_path: Path
) -> None:
    node, _ = vk
    with owner(k8s_options(node), tmp_path / "owner.log") as owned:
        name = owned["name"]
        attached = await InterLinkCluster.from_name(
            name, asynchronous=True, kubeconfig=str(node.k8s.kubeconfig), namespace=node.ns
        )
        try:
            assert attached.scheduler_address == owned["contact"]
            assert states(attached) == []
            await attached.adapt(
                minimum=1, maximum=2, interval="500ms", wait_count=2, target_duration="1s"
            )
            # the owner adapts: up to the minimum at once, shown on the attached object
            await until(lambda: attached.adaptive_bounds == (1, 2), what="adaptive bounds")
            await until(lambda: states(attached) == [WorkerState.CONNECTED], what="1 connected")
            assert len(await worker_pods(node, name)) == 1
            async with Client(owned["contact"], asynchronous=True) as client:
                futures = client.map(lambda x: time.sleep(0.5) or x, range(40))
                await until(
                    lambda: states(attached) == [WorkerState.CONNECTED] * 2, what="2 connected"
                )
                assert sum(await client.gather(futures)) == sum(range(40))
                assert len(await worker_pods(node, name)) == 2  # never above the maximum
                del futures
            await until(lambda: len(attached.worker_states) == 1, what="back to the minimum")
            # a manual scale, through the attached object, ends adaptive scaling
            await attached.scale(0)
            await until(lambda: attached.adaptive_bounds is None, what="adaptive stopped")
            await until(lambda: attached.worker_states == [], what="no worker")
            await until(lambda: _no_pods(node, name), what="no pod")
        finally:
            await attached.close()  # only disconnects
        assert attached.status.name == "closed"
        async with Client(owned["contact"], asynchronous=True, timeout=10) as client:
            assert client.status == "running"  # the owner's scheduler is still up


async def _no_pods(vk: RunningVK, name: str) -> bool:
    return not await worker_pods(vk, name)


async def test_from_name_falls_back_to_the_other_mode(
    vk: tuple[RunningVK, EmbeddedEdge], tmp_path: Path
) -> None:
    """A Kubernetes-mode cluster found from a direct-mode configuration, and a direct-mode
    cluster found from a Kubernetes-mode one."""
    node, edge = vk
    state = tmp_path / "dask"
    with owner(k8s_options(node), tmp_path / "k8s-owner.log") as owned:
        attached = await InterLinkCluster.from_name(
            owned["name"],
            asynchronous=True,
            mode="direct",
            state_dir=state,
            kubeconfig=str(node.k8s.kubeconfig),
            namespace=node.ns,
        )
        try:
            assert attached.scheduler_address == owned["contact"]
            await attached.scale(1)
            await until(lambda: states(attached) == [WorkerState.CONNECTED], what="1 connected")
            assert len(await worker_pods(node, owned["name"])) == 1  # a pod: Kubernetes mode
        finally:
            await attached.close()
    direct = {
        "mode": "direct",
        "direct": {"url": edge.url, "token": edge.token},
        "worker_command": WORKER,
        "memory": "256MiB",
        "state_dir": str(state),
        "status_interval": 0.5,
        "death_timeout": 30,
    }
    with owner(direct, tmp_path / "direct-owner.log") as owned:
        attached = await InterLinkCluster.from_name(
            owned["name"],
            asynchronous=True,
            state_dir=state,
            kubeconfig=str(node.k8s.kubeconfig),
            namespace=node.ns,
        )
        try:
            assert attached.options.mode == "kubernetes"  # looked there first
            assert attached.scheduler_address == owned["contact"]
            await attached.scale(1)
            await until(lambda: states(attached) == [WorkerState.CONNECTED], what="1 connected")
            assert await worker_pods(node, owned["name"]) == []  # no pod: direct mode
        finally:
            await attached.close()
    with pytest.raises(LookupError, match="no running cluster 'nope'"):
        await InterLinkCluster.from_name(
            "nope",
            asynchronous=True,
            state_dir=state,
            kubeconfig=str(node.k8s.kubeconfig),
            namespace=node.ns,
        )
