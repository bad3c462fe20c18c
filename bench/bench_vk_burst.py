"""The virtual kubelet at scale on the test world's real control plane, with the local plugin
edge (API server + plugin) and ``interlink vk`` as a process of its own:

- status traffic: edge ``/status`` calls per slow status cycle with 10, 100 and 1,000 tracked
  (Running) pods, counted by the VK (its ``/metrics``) and by the API server (its ``/metrics``);
  must be 1;
- a burst of N pods (default 500) created as fast as the apiserver takes them: pod created (its
  POST answered) → pod Running (seen by a watch), p50/p95/max, and no pod lost (all Running, one
  job each, one job at the edge per pod);
- the VK's resident memory with 1,000 tracked pods (DESIGN: < 150 MB);
- deleting all pods: time until they are gone from Kubernetes and from the edge.

Pods reach the node through kube-scheduler (nodeSelector + toleration). The stages run in the
order 10 → 100 → burst (100 + N pods) → 1,000 (if 100 + N ≤ 1,000; the local plugin takes
1,000 pods at most).

    .venv/bin/python bench/bench_vk_burst.py [--burst 500] [--interval 5] [--cycles 3]
        [--scale 10,100,1000]

Prints a table and writes bench/out/vk_burst.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import kr8s.asyncio  # noqa: E402
import machine  # noqa: E402  (bench/, next to this script)
from percentiles import pct  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from interlink_core.embedded import EmbeddedEdge  # noqa: E402
from interlink_vk.config import JOB_ID_ANNOTATION, VKConfig  # noqa: E402
from interlink_vk.kube import Kube  # noqa: E402
from tests.helpers.k8s import K8sInfo, ensure_k8s, kubectl  # noqa: E402
from tests.helpers.vk import approve_csr, loopback_ip, start_vk_process  # noqa: E402
from tests.helpers.vk_world import node_pod  # noqa: E402
from tests.helpers.world import stop  # noqa: E402


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels``."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident and peak resident memory of a process, in MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


class Bench:
    """One VK process, its edge, and the pods of one namespace."""

    def __init__(self, k8s: K8sInfo, edge: EmbeddedEdge, root: Path, interval: float) -> None:
        self.k8s = k8s
        self.edge = edge
        self.root = root
        self.interval = interval
        self.node = f"bench-vk-{uuid.uuid4().hex[:6]}"
        self.ns = f"bench-{uuid.uuid4().hex[:6]}"
        self.ip = loopback_ip()
        self.created: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.vk: subprocess.Popen[bytes] | None = None
        self.kube: Kube | None = None
        self.posts_seconds = 0.0  # how long the last add() took to create its pods

    # -- processes ---------------------------------------------------------------------------
    def start_vk(self) -> None:
        self.vk = start_vk_process(
            self.k8s,
            self.root,
            self.node,
            self.edge.url,
            self.edge.token,
            status_interval_seconds=self.interval,
            internal_ip=self.ip,
        )

    async def vk_metrics(self) -> str:
        ctx = ssl.create_default_context(cafile=str(self.k8s.ca))
        headers = {"Authorization": f"Bearer {self.k8s.admin_token}"}
        async with httpx.AsyncClient(verify=ctx, timeout=10) as http:
            resp = await http.get(f"https://{self.ip}:10250/metrics", headers=headers)
            resp.raise_for_status()
            return resp.text

    async def edge_metrics(self) -> str:
        async with httpx.AsyncClient(timeout=10) as http:
            resp = await http.get(f"{self.edge.url}/metrics")
            resp.raise_for_status()
            return resp.text

    # -- pods --------------------------------------------------------------------------------
    def manifest(self, name: str) -> dict[str, Any]:
        return node_pod(self.node, self.ns, name, ["sleep", "3600"])

    async def watch(self) -> None:
        """Note when each pod is first seen Running."""
        assert self.kube is not None
        while True:
            try:
                async for _event, obj in self.kube.api.watch("pods", namespace=self.ns):
                    raw: dict[str, Any] = dict(obj.raw)
                    name = raw["metadata"]["name"]
                    if (raw.get("status") or {}).get("phase") == "Running":
                        self.running.setdefault(name, time.perf_counter())
            except Exception as exc:  # the watch times out now and then: resume
                print(f"(watch restarted: {exc!r})", file=sys.stderr)
                await asyncio.sleep(0.2)

    async def add(self, names: list[str], timeout: float) -> list[float]:
        """Create these pods (16 POSTs at a time); their created → Running seconds."""
        assert self.kube is not None
        kube = self.kube
        sem = asyncio.Semaphore(16)

        async def one(name: str) -> None:
            async with sem:
                await kube.call("POST", "pods", namespace=self.ns, body=self.manifest(name))
                self.created[name] = time.perf_counter()

        t0 = time.perf_counter()
        await asyncio.gather(*(one(n) for n in names))
        self.posts_seconds = time.perf_counter() - t0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(n in self.running for n in names):
            await asyncio.sleep(0.2)
        lost = [n for n in names if n not in self.running]
        if lost:
            raise AssertionError(f"{len(lost)} pods not Running after {timeout} s: {lost[:5]}")
        return [self.running[n] - self.created[n] for n in names]

    async def status_per_cycle(self, cycles: int) -> dict[str, float]:
        """Edge status calls per full status cycle, once no pod is pending."""
        for _ in range(100):  # quiet: nothing pending, so only the slow cycle asks
            vk = await self.vk_metrics()
            if metric_sum(vk, "interlink_vk_pods", phase="Pending") == 0:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(1)
        vk0, edge0 = await self.vk_metrics(), await self.edge_metrics()
        await asyncio.sleep(cycles * self.interval + 0.5)
        vk1, edge1 = await self.vk_metrics(), await self.edge_metrics()

        def delta(a: str, b: str, name: str, **labels: str) -> float:
            return metric_sum(b, name, **labels) - metric_sum(a, name, **labels)

        full = delta(vk0, vk1, "interlink_vk_status_cycle_seconds_count", kind="full")
        took = delta(vk0, vk1, "interlink_vk_status_cycle_seconds_sum", kind="full")
        calls = delta(vk0, vk1, "interlink_vk_edge_calls_total", operation="status")
        at_edge = delta(edge0, edge1, "interlink_api_requests_total", route="/status")
        return {
            "full_cycles": full,
            "vk_status_calls": calls,
            "edge_status_requests": at_edge,
            "calls_per_cycle": calls / full if full else float("nan"),
            "edge_requests_per_cycle": at_edge / full if full else float("nan"),
            "cycle_seconds_mean": took / full if full else float("nan"),
        }

    def check_no_loss(self) -> dict[str, int]:
        pods = json.loads(kubectl(self.k8s, "get", "pods", "-n", self.ns, "-o", "json").stdout)
        items = pods["items"]
        jobs = {p["metadata"]["annotations"].get(JOB_ID_ANNOTATION) for p in items}
        dirs = {d.name for d in (self.edge.state_dir / "plugin" / "pods").iterdir()}
        uids = {p["metadata"]["uid"] for p in items}
        return {
            "pods": len(items),
            "running": sum(p["status"].get("phase") == "Running" for p in items),
            "distinct_job_ids": len(jobs - {None}),
            "jobs_at_edge": len(dirs),
            "jobs_at_edge_without_pod": len(dirs - uids),
        }

    async def delete_all(self, timeout: float) -> float:
        t0 = time.perf_counter()
        kubectl(self.k8s, "delete", "pods", "--all", "-n", self.ns, "--wait=false", timeout=120)
        pods_dir = self.edge.state_dir / "plugin" / "pods"
        while time.perf_counter() - t0 < timeout:
            out = kubectl(self.k8s, "get", "pods", "-n", self.ns, "-o", "name")
            if not out.stdout.strip() and not any(pods_dir.iterdir()):
                return time.perf_counter() - t0
            await asyncio.sleep(0.5)
        raise AssertionError(f"pods still there {timeout} s after the deletion")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    k8s = ensure_k8s()
    root = Path(tempfile.mkdtemp(prefix="bench-vk-"))
    edge = EmbeddedEdge(state_dir=root / "edge").start()
    b = Bench(k8s, edge, root, args.interval)
    stop_csr = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    out: dict[str, Any] = {"burst": args.burst, "status_interval_seconds": args.interval}
    try:
        b.start_vk()
        tasks.append(asyncio.create_task(approve_csr(k8s, b.node, stop_csr)))
        kubectl(k8s, "create", "namespace", b.ns)
        api = await kr8s.asyncio.api(kubeconfig=str(k8s.kubeconfig))
        b.kube = Kube(api)
        tasks.append(asyncio.create_task(b.watch()))
        for _ in range(200):  # node Ready and kubelet API serving
            try:
                if metric_sum(await b.vk_metrics(), "interlink_vk_node_ready") == 1:
                    break
            except (httpx.HTTPError, OSError):
                pass
            await asyncio.sleep(0.3)
        else:
            raise AssertionError(f"the VK never became ready; see {root / 'vk.log'}")
        assert b.vk is not None
        scale: dict[str, Any] = {}
        count = 0

        async def grow(to: int, prefix: str, timeout: float) -> list[float]:
            nonlocal count
            names = [f"{prefix}-{i}" for i in range(to - count)]
            count = to
            return await b.add(names, timeout)

        small, medium, large = args.scale
        for target in (small, medium):
            await grow(target, f"s{target}", 120)
            scale[str(target)] = await b.status_per_cycle(args.cycles)
        t0, vk0 = time.perf_counter(), await b.vk_metrics()
        lat = await grow(count + args.burst, "burst", 600)
        wall, vk1 = time.perf_counter() - t0, await b.vk_metrics()
        creates = [
            metric_sum(m, f"interlink_vk_edge_call_seconds_{k}", operation="create")
            for m in (vk0, vk1)
            for k in ("count", "sum")
        ]
        out["burst_created_to_running_seconds"] = {
            "p50": statistics.median(lat),
            "p95": pct(lat, 0.95),
            "max": max(lat),
            "all_running_after": wall,
            "all_created_after": b.posts_seconds,
            "edge_create_mean_seconds": (creates[3] - creates[1]) / (creates[2] - creates[0]),
            "edge_create_concurrency": VKConfig.model_fields["create_concurrency"].default,
        }
        out["no_loss_after_burst"] = b.check_no_loss()
        if count <= large:
            await grow(large, f"s{large}", 600)
            scale[str(large)] = await b.status_per_cycle(args.cycles)
            rss, peak = rss_mb(b.vk.pid)
            out["vk_memory_mb"] = {"tracked_pods": large, "rss": rss, "peak_rss": peak}
        out["status_calls_by_tracked_pods"] = scale
        out["no_loss_final"] = b.check_no_loss()
        out["delete_all_seconds"] = {"pods": count, "seconds": await b.delete_all(600)}
        return out
    finally:
        stop_csr.set()
        for t in tasks:
            t.cancel()
        if b.vk is not None and b.vk.poll() is None:
            kubectl(k8s, "delete", "pods", "--all", "-n", b.ns, "--wait=false", timeout=120)
            await asyncio.sleep(3)
            stop(b.vk, signal.SIGTERM, timeout=20)
        edge.stop()
        kubectl(k8s, "delete", "namespace", b.ns, "--wait=false")
        kubectl(k8s, "delete", "node", b.node)
        kubectl(k8s, "delete", "lease", b.node, "-n", "kube-node-lease")


def table(r: dict[str, Any]) -> str:
    lines = ["tracked pods | VK status calls/cycle | edge /status/cycle | mean cycle s"]
    for n, s in r["status_calls_by_tracked_pods"].items():
        lines.append(
            f"{n:>12} | {s['calls_per_cycle']:>20.2f} | {s['edge_requests_per_cycle']:>18.2f} | "
            f"{s['cycle_seconds_mean']:.3f}"
        )
    lat = r["burst_created_to_running_seconds"]
    lines.append(
        f"burst of {r['burst']}: created→Running p50 {lat['p50']:.2f} s, p95 {lat['p95']:.2f} s, "
        f"max {lat['max']:.2f} s; all created after {lat['all_created_after']:.1f} s, "
        f"all Running after {lat['all_running_after']:.1f} s; edge create call mean "
        f"{lat['edge_create_mean_seconds']:.2f} s at concurrency {lat['edge_create_concurrency']}"
    )
    lines.append(f"no loss after burst: {r['no_loss_after_burst']}")
    if "vk_memory_mb" in r:
        m = r["vk_memory_mb"]
        lines.append(
            f"VK memory at {m['tracked_pods']} pods: RSS {m['rss']:.0f} MB "
            f"(peak {m['peak_rss']:.0f} MB)"
        )
    d = r["delete_all_seconds"]
    lines.append(f"delete all {d['pods']} pods: {d['seconds']:.1f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--interval", type=float, default=5.0, help="status_interval_seconds")
    parser.add_argument("--cycles", type=int, default=3, help="slow cycles per measurement")
    parser.add_argument(
        "--scale",
        type=lambda v: tuple(int(x) for x in v.split(",")),
        default=(10, 100, 1000),
        help="the three tracked-pod counts (default 10,100,1000)",
    )
    parser.add_argument("--out", default="vk_burst.json", help="file name under bench/out/")
    args = parser.parse_args()
    before = machine.start()
    result = asyncio.run(run(args))
    result["machine"] = machine.finish(before)
    # counts, not times: the ratio is to the one call per cycle the design promises
    result["ratios"] = {
        f"edge /status requests per slow cycle at {n} pods / 1": s["edge_requests_per_cycle"]
        for n, s in result["status_calls_by_tracked_pods"].items()
    }
    print(table(result))
    machine.save(result, args.out)


if __name__ == "__main__":
    main()
