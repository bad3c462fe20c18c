"""Server cost of the interLink sidebar, in Kubernetes mode on the test world: ``--clusters``
clusters (each owned by its own "kernel" process) grow to ``--pods`` worker pods each on a
virtual node (one ``interlink vk`` process in front of the local plugin; workers are ``sleep``,
so every pod goes queued → starting → running), while one sidebar stream follows every
cluster's rows (all tables open: the worst case).

Measured:
- CPU-seconds of the Jupyter server (REST + stream) against the virtual kubelet's own CPU over
  the same window, while all the pods change state (read from /proc);
- ``GET clusters`` (all summaries) and ``GET clusters/{name}`` (one cluster's rows) latency
  with every pod in place, p50/p95 over ``--requests`` calls each.

    .venv/bin/python bench/bench_sidebar_server.py [--clusters 10] [--pods 100] [--requests 50]

Prints a table and writes bench/out/sidebar_server.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import httpx  # noqa: E402
import machine  # noqa: E402  (bench/, next to this script)
from percentiles import summary_ms  # noqa: E402

from tests.helpers.jupyter import (  # noqa: E402
    TOKEN,
    jupyter_server,
    kernel_cluster,
    write_dask_config,
)
from tests.helpers.k8s import ensure_k8s  # noqa: E402
from tests.helpers.vk_world import World  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def follow(url: str, names: list[str], stop: asyncio.Event, counter: list[int]) -> None:
    """A sidebar with every cluster's table open: counts the messages it gets."""
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"type": "rows", "clusters": names}))
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                msg = await ws.receive(timeout=0.5)
                if msg.type == aiohttp.WSMsgType.TEXT:
                    counter[0] += 1
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    return


async def timed(http: httpx.AsyncClient, path: str, n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        answer = await http.get(path)
        samples.append(time.perf_counter() - t0)
        answer.raise_for_status()
    return summary_ms(samples)


async def running_pods(http: httpx.AsyncClient, lab: Any) -> int:
    clusters = (await http.get(lab.api("clusters"))).json()["clusters"]
    return sum(c["counts"]["running"] for c in clusters)


async def run(n_clusters: int, pods: int, requests: int) -> dict[str, Any]:
    k8s = ensure_k8s()
    with tempfile.TemporaryDirectory(prefix="bench-sidebar-server-") as tmp:
        root = Path(tmp)
        world = World(root / "world", k8s, None)  # the local plugin
        await world.start()
        try:
            config = write_dask_config(
                root / "dask",
                {
                    "kubeconfig": str(k8s.kubeconfig),
                    "namespace": world.ns,
                    "node": world.node,
                    "image": "none",
                    "worker-command": ["sh", "-c", "sleep 900", "worker"],
                    "memory": "16MiB",
                    "cpu": 0.001,  # 1,000 pods fit the node's 2 CPUs
                    "status-interval": 5,
                },
            )
            env = {"KUBECONFIG": str(k8s.kubeconfig)}
            names = [f"cost-{i}" for i in range(n_clusters)]
            with contextlib.ExitStack() as stack:
                for name in names:
                    stack.enter_context(kernel_cluster(config, {"name": name}, env=env))
                lab = stack.enter_context(jupyter_server(root / "lab", config, env=env))
                return await measure(lab, world, names, pods, requests)
        finally:
            world.stop()


async def measure(
    lab: Any, world: World, names: list[str], pods: int, requests: int
) -> dict[str, Any]:
    assert world.vk is not None
    stop = asyncio.Event()
    messages = [0]
    async with httpx.AsyncClient(
        base_url=lab.url, headers={"Authorization": f"token {TOKEN}"}, timeout=120
    ) as http:
        await http.get(lab.api("clusters"))
        stream = asyncio.create_task(follow(lab.ws_url(), names, stop, messages))
        await asyncio.sleep(2)
        server0, vk0, t0 = cpu_seconds(lab.proc.pid), cpu_seconds(world.vk.pid), time.monotonic()
        for name in names:
            (
                await http.post(lab.api(f"clusters/{name}/scale"), json={"jobs": pods})
            ).raise_for_status()
        total = len(names) * pods
        deadline = time.monotonic() + 600
        while await running_pods(http, lab) < total and time.monotonic() < deadline:
            await asyncio.sleep(2)
        await asyncio.sleep(5)  # the last changes reach the stream
        window = time.monotonic() - t0
        server_cpu = cpu_seconds(lab.proc.pid) - server0
        vk_cpu = cpu_seconds(world.vk.pid) - vk0
        running = await running_pods(http, lab)
        summaries = await timed(http, lab.api("clusters"), requests)
        rows = await timed(http, lab.api(f"clusters/{names[0]}"), requests)
        stop.set()
        await stream
        for name in names:
            await http.post(lab.api(f"clusters/{name}/scale"), json={"jobs": 0})
    return {
        "clusters": len(names),
        "pods_per_cluster": pods,
        "pods_running": running,
        "window_s": window,
        "server_cpu_s": server_cpu,
        "vk_cpu_s": vk_cpu,
        "server_to_vk_cpu": server_cpu / vk_cpu if vk_cpu else None,
        "stream_messages": messages[0],
        "get_clusters": summaries,
        "get_cluster_rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    before = machine.start()
    r = asyncio.run(run(args.clusters, args.pods, args.requests))
    r["machine"] = machine.finish(before)
    r["ratios"] = {"CPU while 1,000 pods start, Jupyter server / VK": r["server_to_vk_cpu"]}
    print("sidebar server cost")
    print(
        f"{r['clusters']} clusters x {r['pods_per_cluster']} pods, {r['pods_running']} running "
        f"after {r['window_s']:.0f} s; {r['stream_messages']} stream messages"
    )
    print(
        f"CPU in that window: Jupyter server {r['server_cpu_s']:.1f} s, virtual kubelet "
        f"{r['vk_cpu_s']:.1f} s (ratio {r['server_to_vk_cpu']:.2f})"
    )
    for key, label in (("get_clusters", "GET clusters"), ("get_cluster_rows", "GET clusters/x")):
        s = r[key]
        print(f"{label:<16} p50 {s['p50_ms']:6.1f} ms   p95 {s['p95_ms']:6.1f} ms   n={s['n']}")
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sidebar_server.json").write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
