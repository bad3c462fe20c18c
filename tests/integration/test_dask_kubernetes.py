"""InterLinkCluster in Kubernetes mode, end to end on the test world: worker pods go through
the real control plane, the virtual kubelet, the API server and the SLURM plugin into the
real SLURM, and connect back to the scheduler in this process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client

from interlink_core.errors import ConfigError
from interlink_core.names import JOB_ID_ANNOTATION
from interlink_dask import InterLinkCluster, WorkerState
from interlink_dask import kubernetes as dask_kubernetes
from interlink_dask.backend import ClusterExists
from interlink_dask.config import load_options
from interlink_dask.kubernetes import KubernetesBackend
from interlink_dask.pods import CLUSTER_LABEL
from tests.helpers.k8s import K8sInfo
from tests.helpers.slurm import SlurmInfo
from tests.helpers.vk import RunningVK, slurm_vk
from tests.helpers.world import REPO, until

pytestmark = pytest.mark.integration
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]


@pytest.fixture
async def vk(k8s: K8sInfo, slurm: SlurmInfo, tmp_path: Path) -> AsyncIterator[RunningVK]:
    async with slurm_vk(k8s, slurm, tmp_path, "vk-dask", heartbeat_check_seconds=1) as running:
        yield running


def options(vk: RunningVK, **more: Any) -> dict[str, Any]:
    return {
        "kubeconfig": vk.k8s.kubeconfig,
        "namespace": vk.ns,
        "node": vk.node,
        "image": "none",  # SLURM runs the worker on the host (runtime: host)
        "worker_command": WORKER,
        "memory": "256MiB",
        "status_interval": 0.5,
        "death_timeout": 30,
        "heartbeat": {"interval": 1, "timeout": 8},
        **more,
    }


async def cluster_pods(vk: RunningVK, name: str) -> list[dict[str, Any]]:
    out = await vk.kubectl(
        "get", "pods", "-n", vk.ns, "-l", f"interlink.eu/dask-cluster={name}", "-o", "json"
    )
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout)["items"])


def live_jobs(ids: set[str]) -> set[str]:
    """Which of these SLURM jobs are still pending or running."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i %T", "-t", "PENDING,RUNNING,CONFIGURING,COMPLETING"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {line.split()[0] for line in out.stdout.splitlines()} & ids


async def job_ids(vk: RunningVK, name: str) -> set[str]:
    pods = await cluster_pods(vk, name)
    return {
        p["metadata"]["annotations"][JOB_ID_ANNOTATION]
        for p in pods
        if JOB_ID_ANNOTATION in (p["metadata"].get("annotations") or {})
    }


async def test_scale_compute_shrink_adapt_logs_and_close_leaves_nothing(vk: RunningVK) -> None:
    jobs: set[str] = set()
    async with InterLinkCluster(asynchronous=True, **options(vk)) as cluster:
        name = cluster.name
        async with Client(cluster, asynchronous=True) as client:
            await cluster.scale(8)
            await client.wait_for_workers(8, timeout=180)
            total = await client.submit(sum, await client.scatter(list(range(10_000))))
            assert total == sum(range(10_000))
            assert sorted(await client.gather(client.map(lambda x: x * 2, range(8)))) == [
                x * 2 for x in range(8)
            ]
            await until(lambda: cluster.worker_state_counts()["connected"] == 8, what="8 conn")
            jobs = await until(lambda: _jobs_if(vk, name, 8), what="8 jobs")
            assert len(jobs) == 8 and live_jobs(jobs) == jobs

            await cluster.scale(2)
            await until(lambda: len(cluster.scheduler_info["workers"]) == 2, what="2 workers")
            await until(lambda: _count(vk, name, 2), what="2 pods left")
            await until(lambda: len(live_jobs(jobs)) == 2, what="6 jobs cancelled")

            logs = await cluster.get_logs()
            pod_logs = {k: v for k, v in logs.items() if k.startswith(name + "-worker-")}
            assert len(pod_logs) == 2
            assert all("Registered to" in text for text in pod_logs.values()), pod_logs

            cluster.adapt(minimum=0, maximum=4, interval="500ms", wait_count=2)
            futures = client.map(lambda x: time.sleep(1) or x, range(40))
            await until(lambda: len(cluster.scheduler_info["workers"]) >= 3, what="adapt up")
            assert sum(await client.gather(futures)) == sum(range(40))
            del futures
            await until(lambda: not cluster.worker_spec, what="adapt down to 0")
            jobs |= await job_ids(vk, name)
    await until(lambda: _count(vk, name, 0), what="no pod left")
    await until(lambda: not live_jobs(jobs), what="no job left")
    leases = await vk.kubectl("get", "leases", "-n", vk.ns, "-o", "name")
    assert f"lease.coordination.k8s.io/{name}" not in leases.stdout


async def _jobs_if(vk: RunningVK, name: str, n: int) -> set[str] | None:
    ids = await job_ids(vk, name)
    return ids if len(ids) == n else None


async def _count(vk: RunningVK, name: str, n: int) -> bool:
    return len(await cluster_pods(vk, name)) == n


async def test_queued_worker_shows_the_batch_reason_then_connects(vk: RunningVK) -> None:
    opts = options(vk, annotations={"slurm-job.vk.io/flags": "--hold"})
    async with InterLinkCluster(asynchronous=True, **opts) as cluster:
        await cluster.scale(1)
        rows = await until(
            lambda: [r for r in cluster.worker_states if r.reason == "JobHeldUser"],
            what="queued with the batch system's reason",
        )
        assert rows[0].state == WorkerState.QUEUED
        assert "queued: 1" in cluster._repr_html_()
        # adaptive scaling does not ask for more while the job waits in the queue
        cluster.adapt(minimum=0, maximum=4, interval="300ms")
        async with Client(cluster, asynchronous=True) as client:
            futures = client.map(lambda x: x, range(20))
            await asyncio.sleep(3)
            assert len(cluster.worker_spec) == 1
            (job,) = await job_ids(vk, cluster.name)
            subprocess.run(["scontrol", "release", job], check=True)
            assert sum(await client.gather(futures)) == sum(range(20))


async def test_bad_settings_fail_before_any_pod_or_lease(vk: RunningVK) -> None:
    with pytest.raises(LookupError, match=f"node: there is no node 'nope'.*{vk.node}"):
        await InterLinkCluster(asynchronous=True, n_workers=2, **options(vk, node="nope"))
    with pytest.raises(ConfigError, match="image: a worker image is required"):
        await InterLinkCluster(asynchronous=True, n_workers=2, **options(vk, image=None))
    pods = await vk.kubectl("get", "pods,leases", "-n", vk.ns, "-o", "name")
    assert pods.stdout.strip() == ""


HOLD = "interlink.eu/test-hold"


async def expired_cluster(vk: RunningVK, name: str) -> str:
    """The Lease of a cluster ``name`` whose client died long ago; its UID."""
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": vk.ns, "labels": {CLUSTER_LABEL: name}},
        "spec": {
            "holderIdentity": "gone:1",
            "leaseDurationSeconds": 8,
            "renewTime": "2020-01-01T00:00:00.000000Z",
        },
    }
    out = await vk.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(lease))
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["metadata"]["uid"])


async def held_pod(vk: RunningVK, name: str, owner: str | None, labels: dict[str, str]) -> None:
    """An unschedulable pod ``name`` that a finalizer keeps while it terminates; owned by the
    Lease of UID ``owner`` (of the same name as the cluster) when given."""
    meta: dict[str, Any] = {"name": name, "namespace": vk.ns, "labels": labels}
    meta["finalizers"] = [HOLD]
    if owner:
        lease = name.rsplit("-worker-", 1)[0]
        meta["ownerReferences"] = [
            {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "name": lease, "uid": owner}
        ]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": "nowhere"},
            "containers": [{"name": "w", "image": "none"}],
        },
    }
    out = await vk.kubectl("create", "-f", "-", input=json.dumps(pod))
    assert out.returncode == 0, out.stderr


async def release(vk: RunningVK, name: str) -> None:
    """Drop the finalizer of ``name`` (it goes if it was deleted)."""
    patch = json.dumps({"metadata": {"finalizers": None}})
    await vk.kubectl("patch", "pod", name, "-n", vk.ns, "--type=merge", "-p", patch)


async def test_a_new_worker_waits_for_the_expired_clusters_pod_of_its_name(
    vk: RunningVK,
) -> None:
    name = "stale-dask"
    old_uid = await expired_cluster(vk, name)
    pod = f"{name}-worker-0"
    await held_pod(vk, pod, old_uid, {CLUSTER_LABEL: name})
    try:
        async with InterLinkCluster(asynchronous=True, **options(vk, name=name)) as cluster:
            backend = cluster.backend
            assert isinstance(backend, KubernetesBackend) and backend.lease is not None
            new_uid = backend.lease["metadata"]["uid"]
            assert new_uid != old_uid  # the expired cluster was replaced
            async with Client(cluster, asynchronous=True) as client:
                await cluster.scale(1)
                old = await vk.wait_pod(pod, lambda p: p["metadata"].get("deletionTimestamp"))
                assert old["metadata"]["ownerReferences"][0]["uid"] == old_uid
                await asyncio.sleep(3)
                # the old pod of that name is terminating: not counted as the new worker
                assert pod not in cluster.workers
                assert [(r.pod, r.state) for r in cluster.worker_states] == [
                    (pod, WorkerState.QUEUED)
                ]
                await release(vk, pod)
                await client.wait_for_workers(1, timeout=180)
                (new,) = await cluster_pods(vk, name)
                assert new["metadata"]["name"] == pod
                assert new["metadata"]["ownerReferences"][0]["uid"] == new_uid
    finally:
        await release(vk, pod)
    await until(lambda: _none_left(vk), what="no pod or lease left")


async def test_create_refuses_a_foreign_pod_and_gives_up_on_one_that_never_goes(
    vk: RunningVK, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "taken-dask"
    foreign, stuck = f"{name}-worker-0", f"{name}-worker-1"
    await held_pod(vk, foreign, None, {})
    await held_pod(vk, stuck, None, {CLUSTER_LABEL: name})
    backend = KubernetesBackend(load_options(**options(vk, name=name)))
    monkeypatch.setattr(dask_kubernetes, "STALE_POD_TIMEOUT", 2.0)
    try:
        await backend.check()
        with pytest.raises(ClusterExists, match=f"pod {foreign} .* is not a worker of cluster"):
            await backend.create(foreign, "tcp://127.0.0.1:1")
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=f"pod {stuck} .* still terminating after 2 s"):
            await backend.create(stuck, "tcp://127.0.0.1:1")
        assert time.monotonic() - started < 10
        gone = await vk.pod(stuck)
        assert gone is not None and gone["metadata"].get("deletionTimestamp")  # deleted by us
        foreign_pod = await vk.pod(foreign)
        assert foreign_pod is not None and not foreign_pod["metadata"].get("deletionTimestamp")
    finally:
        await backend.close(shutdown=True)
        await release(vk, foreign)
        await release(vk, stuck)


CLIENT = textwrap.dedent(
    """
    import json, sys, time
    from distributed import Client
    from interlink_dask import InterLinkCluster
    cluster = InterLinkCluster(**json.loads(sys.argv[1]))
    cluster.scale(2)
    Client(cluster).wait_for_workers(2, timeout=180)
    print(cluster.name, flush=True)
    time.sleep(600)
    """
)


async def test_kill_9_of_the_client_removes_pods_and_jobs(vk: RunningVK, tmp_path: Path) -> None:
    opts = {**options(vk), "kubeconfig": str(vk.k8s.kubeconfig)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, json.dumps(opts)],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "client.log").open("wb"),
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 240)  # type: ignore[union-attr]
        name = line.strip()
        assert name, (tmp_path / "client.log").read_text()[-3000:]
        jobs = await job_ids(vk, name)
        assert len(jobs) == 2 and live_jobs(jobs) == jobs
        proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        # heartbeat timeout 8 s + the VK's check every 1 s + deletion
        await until(lambda: _count(vk, name, 0), 30, "pods reaped")
        await until(lambda: not live_jobs(jobs), 30, "jobs cancelled")
        assert time.monotonic() - killed < 30
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


async def test_docs_example_runs_on_the_test_world(vk: RunningVK, slurm: SlurmInfo) -> None:
    """docs/dask.md's first example, with the site's values (node, image, partition, sizes)
    replaced by the test world's."""
    code = re.findall(r"```python\n(.*?)```", (REPO / "docs/dask.md").read_text(), re.S)[0]
    site = options(
        vk,
        annotations={"slurm-job.vk.io/flags": f"--partition={slurm.partition} --time=00:10:00"},
        cpu=2,
        memory="512MiB",
    )

    class SiteCluster(InterLinkCluster):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, **site})

    printed: list[str] = []
    namespace = {"print": lambda *a: printed.append(" ".join(map(str, a)))}
    code = code.replace("from interlink_dask import InterLinkCluster", "")
    await asyncio.to_thread(exec, code, {**namespace, "InterLinkCluster": SiteCluster})
    assert printed[0].startswith("http://")  # the dashboard link
    assert printed[1].splitlines()[0].split() == ["POD", "STATE", "REASON"]
    await until(lambda: _none_left(vk), what="no pod or lease left")


async def _none_left(vk: RunningVK) -> bool:
    out = await vk.kubectl("get", "pods,leases", "-n", vk.ns, "-o", "name")
    return out.returncode == 0 and not out.stdout.strip()
