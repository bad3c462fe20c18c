"""InterLinkCluster in direct mode against a real interLink API server and the local plugin:
workers are real ``dask worker`` processes started through the wire contract."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import dask.config
import pytest
from distributed import Client

from interlink_core.client import InterLinkClient, static_token
from interlink_core.errors import BackendUnavailable
from interlink_dask import InterLinkCluster, WorkerState
from tests.helpers.world import Service, start_api, start_plugin

pytestmark = pytest.mark.integration
TOKEN = "dask-direct-dev-token"
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Service]]:
    root = tmp_path_factory.mktemp("dask-edge")
    plugin = start_plugin(root / "plugin")
    api = start_api(
        root / "api", {"plugin": {"url": plugin.url}, "auth": {"insecure_dev_token": TOKEN}}
    )
    yield api, plugin
    api.stop()
    plugin.stop()


def options(edge: tuple[Service, Service], tmp_path: Path, **more: Any) -> dict[str, Any]:
    api, _ = edge
    return {
        "mode": "direct",
        "direct": {"url": api.url, "token": TOKEN},
        "worker_command": WORKER,
        "memory": "512MiB",
        "state_dir": tmp_path / "dask",
        "status_interval": 0.3,
        "death_timeout": 20,
        **more,
    }


def remote_pods(edge: tuple[Service, Service]) -> list[str]:
    """Pod directories the local plugin still holds (one per live pod)."""
    pods = edge[1].root / "state" / "pods"
    return sorted(p.name for p in pods.iterdir()) if pods.is_dir() else []


async def until(cond: Callable[[], bool | Awaitable[bool]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ok = cond()
        if not isinstance(ok, bool):
            ok = await ok
        if ok:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def cluster(edge: tuple[Service, Service], tmp_path: Path) -> AsyncIterator[InterLinkCluster]:
    async with InterLinkCluster(asynchronous=True, **options(edge, tmp_path)) as c:
        yield c


async def test_scale_compute_shrink_and_close_leaves_nothing(
    edge: tuple[Service, Service], tmp_path: Path
) -> None:
    before = remote_pods(edge)
    async with InterLinkCluster(asynchronous=True, **options(edge, tmp_path)) as cluster:
        async with Client(cluster, asynchronous=True) as client:
            await cluster.scale(4)
            await client.wait_for_workers(4, timeout=90)
            future = client.submit(lambda xs: sum(x * x for x in xs), range(1000))
            assert await future == sum(x * x for x in range(1000))
            await until(lambda: cluster.worker_state_counts()["connected"] == 4)
            assert len(remote_pods(edge)) == len(before) + 4

            await cluster.scale(2)
            await until(lambda: len(cluster.scheduler_info["workers"]) == 2)
            await until(lambda: len(remote_pods(edge)) == len(before) + 2)
            assert [r.state for r in cluster.worker_states] == [WorkerState.CONNECTED] * 2

            logs = await cluster.get_logs()
            pod_logs = [k for k in logs if k.startswith(cluster.name + "-worker-")]
            assert len(pod_logs) == 2
            assert all("Registered to" in logs[k] for k in pod_logs)
            assert "connected: 2" in cluster._repr_html_()
    await until(lambda: remote_pods(edge) == before)


async def test_processes_per_pod_and_scale_by_jobs(
    edge: tuple[Service, Service], tmp_path: Path
) -> None:
    opts = options(edge, tmp_path, processes=2, cpu=2, memory="1GiB")
    async with InterLinkCluster(asynchronous=True, **opts) as cluster:
        async with Client(cluster, asynchronous=True) as client:
            await cluster.scale(4)  # 4 workers = 2 pods
            await client.wait_for_workers(4, timeout=90)
            assert len(cluster.worker_spec) == 2
            names = sorted(w["name"] for w in cluster.scheduler_info["workers"].values())
            pod = cluster.name + "-worker-0"
            assert names[:2] == [f"{pod}-0", f"{pod}-1"]
            assert all(w["nthreads"] == 1 for w in cluster.scheduler_info["workers"].values())
            await cluster.scale(jobs=1)
            await until(lambda: len(cluster.scheduler_info["workers"]) == 2)
            assert len(cluster.worker_spec) == 1


async def test_adapt_scales_up_under_load_and_back_down(cluster: InterLinkCluster) -> None:
    cluster.adapt(minimum=0, maximum=3, interval="300ms", wait_count=2, target_duration="1s")
    async with Client(cluster, asynchronous=True) as client:
        futures = client.map(lambda x: time.sleep(0.5) or x, range(30))
        await until(lambda: len(cluster.scheduler_info["workers"]) >= 2, timeout=90)
        assert sum(await client.gather(futures)) == sum(range(30))
        del futures  # results released: nothing keeps the workers busy or holding data
        await until(lambda: not cluster.worker_spec, timeout=60)


async def test_from_name_reconnects_and_scales_through_the_owner(
    cluster: InterLinkCluster, edge: tuple[Service, Service], tmp_path: Path
) -> None:
    # attaching needs only the name (and where records are): no edge URL, no image
    attached = await InterLinkCluster.from_name(
        cluster.name, asynchronous=True, mode="direct", state_dir=tmp_path / "dask"
    )
    assert attached.scheduler_address == cluster.scheduler_address
    await attached.scale(2)
    await until(lambda: len(cluster.scheduler_info["workers"]) == 2, timeout=90)
    await until(lambda: [r.state for r in attached.worker_states] == [WorkerState.CONNECTED] * 2)
    await attached.close()  # only disconnects
    assert cluster.status.name == "running"
    assert len(cluster.worker_spec) == 2
    with pytest.raises(LookupError, match="no running cluster 'nope'"):
        await InterLinkCluster.from_name(
            "nope",
            asynchronous=True,
            mode="direct",
            state_dir=tmp_path / "dask",
            direct={"url": edge[0].url, "token": TOKEN},
        )


async def test_same_name_twice_is_refused(
    cluster: InterLinkCluster, edge: tuple[Service, Service], tmp_path: Path
) -> None:
    with pytest.raises(Exception, match="is running"):
        await InterLinkCluster(asynchronous=True, **options(edge, tmp_path, name=cluster.name))


async def test_unreachable_edge_and_wrong_token_fail_before_any_pod(
    edge: tuple[Service, Service], tmp_path: Path
) -> None:
    before = remote_pods(edge)
    with pytest.raises(BackendUnavailable, match=r"direct\.url: cannot reach"):
        await InterLinkCluster(
            asynchronous=True,
            n_workers=2,
            **options(edge, tmp_path, direct={"url": "http://127.0.0.1:9", "token": TOKEN}),
        )
    with pytest.raises(PermissionError, match=r"direct\.token"):
        await InterLinkCluster(
            asynchronous=True,
            n_workers=2,
            **options(edge, tmp_path, direct={"url": edge[0].url, "token": "wrong"}),
        )
    assert remote_pods(edge) == before


async def discovered() -> list[tuple[str, type]]:
    """What a discovery tool (dask-ctl) sees: our ``dask_cluster_discovery`` entry point."""
    (ep,) = [
        e for e in entry_points(group="dask_cluster_discovery") if e.name == "interlinkcluster"
    ]
    return [x async for x in ep.load()()]


async def test_discovery_entry_point_lists_the_cluster_and_from_name_attaches(
    cluster: InterLinkCluster, tmp_path: Path
) -> None:
    with dask.config.set({"interlink.state-dir": str(tmp_path / "dask")}):
        assert await discovered() == [(cluster.name, InterLinkCluster)]
        attached = await InterLinkCluster.from_name(cluster.name, asynchronous=True)
        try:
            assert attached.scheduler_address == cluster.scheduler_address
            assert attached.dashboard_link
        finally:
            await attached.close()
    await cluster.close()  # the owner is gone: nothing left to discover
    with dask.config.set({"interlink.state-dir": str(tmp_path / "dask")}):
        assert await discovered() == []


CLIENT = """
import json, sys, time
from distributed import Client
from interlink_dask import InterLinkCluster
cluster = InterLinkCluster(**json.loads(sys.argv[1]))
cluster.scale(2)
Client(cluster).wait_for_workers(2, timeout=120)
print(json.dumps(list(cluster.backend.pods.values())), flush=True)
time.sleep(600)
"""


async def test_kill_9_of_the_client_ends_the_workers_after_death_timeout(
    edge: tuple[Service, Service], tmp_path: Path
) -> None:
    opts = options(edge, tmp_path, death_timeout=10)
    opts["state_dir"] = str(opts["state_dir"])
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, json.dumps(opts)],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "client.log").open("wb"),
        text=True,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 180)  # type: ignore[union-attr]
        pods = json.loads(line or "null")
        assert pods, (tmp_path / "client.log").read_text()[-3000:]
        proc.kill()
        async with InterLinkClient(edge[0].url, token=static_token(TOKEN)) as api:

            async def all_ended() -> bool:
                statuses = await api.status_json(pods)
                states = [c["state"] for s in statuses for c in s["containers"]]
                return len(states) == 2 and all("terminated" in st for st in states)

            await until(all_ended, timeout=60)  # death-timeout 10 s + slack
            for pod in pods:
                await api.delete(pod)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
