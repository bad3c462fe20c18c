"""10,000 tracked pods on one virtual kubelet, with the local plugin edge (API server + plugin,
each a process of its own) and ``interlink vk`` as its own process on the test world's control
plane.

A pod runner is a process of ~12 MB, so 10,000 running pods do not fit on this machine: the
plugin runs ``--max-running`` pods at once and queues the others (``max_running``; they wait
Pending with reason ``Queued: MaxRunning``, as a batch system's queued jobs). Every pod the VK
tracks (not terminal: Running or queued) is in its status calls, so for each count in
``--scale`` (default 1,000 then 10,000 pods in all) the bench measures over ``--cycles`` full
status cycles:

- edge ``/status`` calls per status cycle (full cycles, all pods, every ``--interval`` s; and
  the VK's pending cycles for the pods not Running yet, every 0.5 s by default), counted by the
  VK and by the API server (must be 1);
- the mean time of a full and of a pending cycle (the VK's histogram);
- CPU seconds of the VK, the API server and the plugin per status cycle (``/proc/<pid>/stat``);
- RSS of the VK (target < 300 MB at 10,000), the API server and the plugin;

with ``--time-delete``, it then deletes every pod and times how long until none is left in
Kubernetes or at the edge (else the VK is stopped, its node deleted, the pods deleted at once
with one delete-collection call of grace 0, and the bench kills the runners it left). No pod is
lost: every pod is tracked, has one job id, and has one pod directory at the edge.

    .venv/bin/python bench/bench_vk_scale.py [--scale 1000,10000] [--max-running 250]
        [--interval 5] [--cycles 3]

Prints a table and writes bench/out/vk_scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import kr8s.asyncio  # noqa: E402
import machine  # noqa: E402  (bench/, next to this script)
from bench_vk_burst import Bench, metric_sum, rss_mb  # noqa: E402

from interlink_plugins.local.plugin import find_pod_processes  # noqa: E402
from interlink_vk.kube import Kube  # noqa: E402
from tests.helpers.k8s import ensure_k8s, kubectl  # noqa: E402
from tests.helpers.vk import approve_csr, start_vk_process  # noqa: E402
from tests.helpers.world import Service, start_api, start_plugin, stop  # noqa: E402

TOKEN = "bench-vk-scale-token"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Edge:
    """The local plugin and its API server, as :class:`bench_vk_burst.Bench` wants them."""

    url: str
    token: str
    state_dir: Path  # the plugin's pod directories are under state_dir / plugin / pods
    plugin: Service
    api: Service


def start_edge(root: Path, max_pods: int, max_running: int) -> Edge:
    plugin = start_plugin(
        root / "plugin",
        "local",
        {
            "max_pods": max_pods,
            "max_running": max_running,
            "pods_dir": str(root / "plugin" / "pods"),
        },
    )
    api = start_api(
        root / "api", {"plugin": {"url": plugin.url}, "auth": {"insecure_dev_token": TOKEN}}
    )
    return Edge(api.url, TOKEN, root, plugin, api)


class ScaleBench(Bench):
    """Pods without a service-account token: the token request and the CA ConfigMap read per
    pod are the create path's, not the status cycle's (bench_vk_burst measures them)."""

    def manifest(self, name: str) -> dict[str, Any]:
        pod = super().manifest(name)
        pod["spec"]["automountServiceAccountToken"] = False
        return pod


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def measure(b: ScaleBench, edge: Edge, cycles: int) -> dict[str, Any]:
    """Status traffic, cycle times, CPU per cycle and RSS over ``cycles`` full cycles."""
    assert b.vk is not None
    pids = {"vk": b.vk.pid, "api": edge.api.proc.pid, "plugin": edge.plugin.proc.pid}
    vk0, edge0 = await b.vk_metrics(), await b.edge_metrics()
    cpu0 = {n: cpu_seconds(p) for n, p in pids.items()}
    t0 = time.perf_counter()
    full0 = metric_sum(vk0, "interlink_vk_status_cycle_seconds_count", kind="full")
    while True:  # at least ``cycles`` full cycles, however long one takes
        await asyncio.sleep(b.interval)
        vk1 = await b.vk_metrics()
        if (
            metric_sum(vk1, "interlink_vk_status_cycle_seconds_count", kind="full")
            >= full0 + cycles
        ):
            break
    edge1 = await b.edge_metrics()
    cpu1 = {n: cpu_seconds(p) for n, p in pids.items()}
    window = time.perf_counter() - t0

    def delta(a: str, c: str, name: str, **labels: str) -> float:
        return metric_sum(c, name, **labels) - metric_sum(a, name, **labels)

    out: dict[str, Any] = {
        "tracked": {
            phase: metric_sum(vk1, "interlink_vk_pods", phase=phase)
            for phase in ("Pending", "Running")
        }
    }
    cycles_all = 0.0
    for kind in ("full", "pending"):
        n = delta(vk0, vk1, "interlink_vk_status_cycle_seconds_count", kind=kind)
        took = delta(vk0, vk1, "interlink_vk_status_cycle_seconds_sum", kind=kind)
        out[f"{kind}_cycles"] = n
        out[f"{kind}_cycle_seconds_mean"] = took / n if n else float("nan")
        cycles_all += n
    calls = delta(vk0, vk1, "interlink_vk_edge_calls_total", operation="status")
    at_edge = delta(edge0, edge1, "interlink_api_requests_total", route="/status")
    out["vk_status_calls_per_cycle"] = calls / cycles_all
    out["edge_status_requests_per_cycle"] = at_edge / cycles_all
    out["cpu_seconds_per_cycle"] = {n: (cpu1[n] - cpu0[n]) / cycles_all for n in pids}
    out["cpu_cores_busy"] = {n: (cpu1[n] - cpu0[n]) / window for n in pids}
    out["window_seconds"] = window
    out["rss_mb"] = {n: rss_mb(p)[0] for n, p in pids.items()}
    out["vk_peak_rss_mb"] = rss_mb(b.vk.pid)[1]
    return out


async def grow(b: ScaleBench, names: list[str], total: int, timeout: float) -> float:
    """Create these pods (16 POSTs at a time) and wait until the VK tracks ``total`` pods and
    the edge holds ``total`` pod directories; seconds it took."""
    assert b.kube is not None
    kube = b.kube
    sem = asyncio.Semaphore(16)

    async def one(name: str) -> None:
        async with sem:
            await kube.call("POST", "pods", namespace=b.ns, body=b.manifest(name))

    t0 = time.perf_counter()
    await asyncio.gather(*(one(n) for n in names))
    pods_dir = b.edge.state_dir / "plugin" / "pods"
    while time.perf_counter() - t0 < timeout:
        try:
            vk = await b.vk_metrics()
        except httpx.HTTPError as exc:  # a VK busy with thousands of pods answers late
            print(f"(VK metrics: {exc!r})", file=sys.stderr)
            continue
        tracked = sum(metric_sum(vk, "interlink_vk_pods", phase=p) for p in ("Pending", "Running"))
        if tracked == total and sum(1 for _ in pods_dir.iterdir()) == total:
            return time.perf_counter() - t0
        await asyncio.sleep(2)
    raise AssertionError(f"the VK does not track {total} pods after {timeout} s")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    k8s = ensure_k8s()
    root = Path(tempfile.mkdtemp(prefix="bench-vk-scale-"))
    top = max(args.scale)
    edge = start_edge(root, top, args.max_running)
    b = ScaleBench(k8s, edge, root, args.interval)  # type: ignore[arg-type]
    stop_csr = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    out: dict[str, Any] = {
        "max_running": args.max_running,
        "status_interval_seconds": args.interval,
        "scale": {},
    }
    # SIGTERM (a background run cannot get SIGINT) cleans up like a finished run
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        b.vk = start_vk_process(
            k8s,
            root,
            b.node,
            edge.url,
            TOKEN,
            status_interval_seconds=args.interval,
            internal_ip=b.ip,
            capacity={"pods": str(top)},
        )
        tasks.append(asyncio.create_task(approve_csr(k8s, b.node, stop_csr)))
        kubectl(k8s, "create", "namespace", b.ns)
        b.kube = Kube(await kr8s.asyncio.api(kubeconfig=str(k8s.kubeconfig)))
        for _ in range(200):  # node Ready and kubelet API serving
            try:
                if metric_sum(await b.vk_metrics(), "interlink_vk_node_ready") == 1:
                    break
            except OSError:
                pass
            except Exception:  # httpx errors while the kubelet API starts
                pass
            await asyncio.sleep(0.3)
        count = 0
        for target in args.scale:
            names = [f"p{i}" for i in range(count, target)]
            took = await grow(b, names, target, args.timeout)
            count = target
            print(f"{target} pods tracked after {took:.0f} s more", flush=True)
            await asyncio.sleep(args.interval)  # the creates' own traffic is over
            m = await measure(b, edge, args.cycles)
            m["created_and_tracked_after_seconds"] = took
            out["scale"][str(target)] = m
            print(json.dumps(m), flush=True)
        out["no_loss"] = b.check_no_loss()
        out["no_loss"]["queued_or_running"] = out["scale"][str(top)]["tracked"]
        if args.time_delete:
            seconds = await b.delete_all(args.timeout)
            out["delete_all_seconds"] = {"pods": count, "seconds": seconds}
        return out
    finally:
        stop_csr.set()
        for t in tasks:
            t.cancel()
        if b.vk is not None and b.vk.poll() is None:
            stop(b.vk)
        kubectl(k8s, "delete", "node", b.node)
        kubectl(k8s, "delete", "lease", b.node, "-n", "kube-node-lease")
        if b.kube is not None:  # no kubelet left to confirm them: gone at once, in one call
            with contextlib.suppress(Exception):
                options = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0}
                await b.kube.call("DELETE", "pods", namespace=b.ns, body=options)
        kubectl(k8s, "delete", "namespace", b.ns, "--wait=false")
        edge.api.stop()
        edge.plugin.stop()
        kill_runners(root / "plugin" / "pods")


def kill_runners(pods_dir: Path) -> None:
    """SIGKILL the pod runners (detached: they outlive the plugin) and their processes."""
    dirs = {str(d) for d in pods_dir.iterdir()} if pods_dir.exists() else set()
    for d in dirs:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(float((Path(d) / "runner.pid").read_text())), signal.SIGKILL)
    for pid in find_pod_processes(dirs):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def table(r: dict[str, Any]) -> str:
    lines = [
        "pods (running+queued) | status calls/cycle (VK, edge) | full cycle s | pending cycle s"
        " | CPU s per cycle (VK, API, plugin) | RSS MB (VK, API, plugin)"
    ]
    for n, s in r["scale"].items():
        t, cpu, rss = s["tracked"], s["cpu_seconds_per_cycle"], s["rss_mb"]
        lines.append(
            f"{n} ({t['Running']:.0f}+{t['Pending']:.0f}) | "
            f"{s['vk_status_calls_per_cycle']:.2f}, {s['edge_status_requests_per_cycle']:.2f} | "
            f"{s['full_cycle_seconds_mean']:.3f} ({s['full_cycles']:.0f}) | "
            f"{s['pending_cycle_seconds_mean']:.3f} ({s['pending_cycles']:.0f}) | "
            f"{cpu['vk']:.3f}, {cpu['api']:.3f}, {cpu['plugin']:.3f} | "
            f"{rss['vk']:.0f}, {rss['api']:.0f}, {rss['plugin']:.0f}"
        )
    lines.append(f"no loss: {r['no_loss']}")
    if "delete_all_seconds" in r:
        d = r["delete_all_seconds"]
        lines.append(f"delete all {d['pods']} pods: {d['seconds']:.1f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1000, 10000],
        help="pod counts, ascending (default 1000,10000)",
    )
    parser.add_argument("--max-running", type=int, default=250, help="the plugin's max_running")
    parser.add_argument("--interval", type=float, default=5.0, help="status_interval_seconds")
    parser.add_argument("--cycles", type=int, default=3, help="full cycles per measurement")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per stage")
    parser.add_argument("--time-delete", action="store_true", help="time deleting every pod")
    parser.add_argument("--out", default="vk_scale.json", help="file name under bench/out/")
    args = parser.parse_args()
    before = machine.start()
    result = asyncio.run(run(args))
    result["machine"] = machine.finish(before)
    top = result["scale"][str(max(args.scale))]
    # counts and sizes: the ratio is to the one call per cycle and to the RSS target
    result["ratios"] = {
        f"edge /status requests per cycle at {n} pods / 1": s["edge_status_requests_per_cycle"]
        for n, s in result["scale"].items()
    }
    result["ratios"][f"VK RSS at {max(args.scale)} pods / 300 MB"] = top["rss_mb"]["vk"] / 300
    print(table(result))
    machine.save(result, args.out)


if __name__ == "__main__":
    main()
