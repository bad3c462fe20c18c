"""What readiness probes cost: 1,000 pods on the local plugin (an embedded edge: API server +
plugin as processes of their own), each with an ``exec`` readiness probe every 10 s, against the
same 1,000 pods without probes, in the same run, phases interleaved (plain, probed, plain,
probed, ...). Per status cycle, with all pods Running and Ready:

- the ``/status`` call for all pods (one call, as the VK makes it), wall time;
- the VK's CPU for the cycle: that call plus turning every answer into a ``pods/status`` with
  the VK's own :func:`kube_status` (what the VK does each cycle besides patching changes;
  nothing changes in steady state);
- the edge's CPU (API server + plugin processes) and the pod runners' CPU (probes included:
  the runners reap their probe processes, so those count as the runners' children), per second.

    .venv/bin/python bench/bench_probe_cost.py [--pods 1000] [--rounds 2] [--cycles 6]
        [--interval 10]

Prints a table and writes bench/out/probe_cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import machine  # noqa: E402  (bench/, next to this script)

from interlink_core.client import InterLinkClient, RemoteError, static_token  # noqa: E402
from interlink_core.embedded import EmbeddedEdge  # noqa: E402
from interlink_core.models import PodCreateRequests  # noqa: E402
from interlink_vk.podstatus import kube_status  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
PROBE = {"exec": {"command": ["true"]}, "periodSeconds": 10}


def pod(i: int, probed: bool) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "main", "image": "none", "command": ["sleep", "3600"]}
    if probed:
        c["readinessProbe"] = PROBE
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"p{i}", "namespace": "bench", "uid": str(uuid.uuid4())},
        "spec": {"containers": [c], "restartPolicy": "Never", "terminationGracePeriodSeconds": 1},
    }


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime + stime (and the reaped children's, if asked) of a process, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICKS


def runner_pids(pods_dir: Path) -> list[int]:
    out = []
    for d in pods_dir.iterdir():
        try:
            out.append(int((d / "runner.pid").read_text()))
        except (OSError, ValueError):
            pass
    return out


async def until_all(client: InterLinkClient, pods: list[dict[str, Any]], what: str) -> None:
    """Wait until every pod's container is running and ready."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        answers = await client.status(pods)
        ready = sum(1 for s in answers for c in s.containers if c.get("ready"))
        if ready == len(pods):
            return
        await asyncio.sleep(2)
    raise SystemExit(f"pods not all {what} after 600 s")


async def phase(
    client: InterLinkClient,
    edge: EmbeddedEdge,
    n: int,
    probed: bool,
    cycles: int,
    interval: float,
) -> dict[str, Any]:
    pods = [pod(i, probed) for i in range(n)]
    sem = asyncio.Semaphore(16)

    async def create(p: dict[str, Any]) -> None:
        async with sem:
            await client.create(PodCreateRequests(pod=p))

    await asyncio.gather(*(create(p) for p in pods))
    await until_all(client, pods, "ready")
    pods_dir = edge.state_dir / "plugin" / "pods"
    runners = runner_pids(pods_dir)
    edge_pids = [p.pid for p in edge.procs]
    edge_cpu0 = sum(cpu_seconds(p) for p in edge_pids)
    run_cpu0 = sum(cpu_seconds(p, children=True) for p in runners)
    t0 = time.monotonic()
    calls, vk_cpu = [], []
    for _ in range(cycles):
        start = time.monotonic()
        c0 = time.process_time()
        w0 = time.perf_counter()
        answers = await client.status(pods)
        calls.append(time.perf_counter() - w0)
        by_uid = {s.UID: s for s in answers}
        for p in pods:
            kube_status(p, by_uid[p["metadata"]["uid"]])
        vk_cpu.append(time.process_time() - c0)
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - start)))
    elapsed = time.monotonic() - t0
    edge_cpu = (sum(cpu_seconds(p) for p in edge_pids) - edge_cpu0) / elapsed
    run_cpu = (sum(cpu_seconds(p, children=True) for p in runners) - run_cpu0) / elapsed

    async def delete(p: dict[str, Any]) -> None:
        async with sem:
            try:
                await client.delete(p)
            except RemoteError as exc:  # a retried delete the first try completed
                if "not known" not in str(exc):
                    raise

    await asyncio.gather(*(delete(p) for p in pods))
    return {
        "probed": probed,
        "status_call_s": calls,
        "vk_cpu_s": vk_cpu,
        "edge_cpu_per_s": edge_cpu,
        "runners_cpu_per_s": run_cpu,
    }


def med(phases: list[dict[str, Any]], key: str) -> float:
    values = [v for p in phases for v in (p[key] if isinstance(p[key], list) else [p[key]])]
    return statistics.median(values)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cycles", type=int, default=6)
    ap.add_argument("--interval", type=float, default=10.0)
    args = ap.parse_args()
    before = machine.start()
    with tempfile.TemporaryDirectory(prefix="probe-cost-") as tmp:
        with EmbeddedEdge(state_dir=Path(tmp)) as edge:
            async with InterLinkClient(edge.url, token=static_token(edge.token)) as client:
                phases = []
                for r in range(args.rounds):
                    for probed in (False, True):
                        print(f"round {r + 1}: {'probed' if probed else 'plain'} ...", flush=True)
                        phases.append(
                            await phase(client, edge, args.pods, probed, args.cycles, args.interval)
                        )
    plain = [p for p in phases if not p["probed"]]
    probed = [p for p in phases if p["probed"]]
    rows = [
        ("status call (s, median)", "status_call_s"),
        ("VK CPU per cycle (s, median)", "vk_cpu_s"),
        ("edge CPU (cores)", "edge_cpu_per_s"),
        ("pod runners' CPU (cores)", "runners_cpu_per_s"),
    ]
    ratios = {}
    print(f"\n{args.pods} pods, readiness probe every 10 s vs none, {args.rounds} rounds")
    print(f"{'':32} {'no probes':>10} {'probes':>10} {'ratio':>7}")
    for label, key in rows:
        a, b = med(plain, key), med(probed, key)
        ratios[key] = b / a if a else float("nan")
        print(f"{label:32} {a:10.4f} {b:10.4f} {ratios[key]:7.2f}")
    out = REPO / "bench" / "out" / "probe_cost.json"
    out.parent.mkdir(exist_ok=True)
    result = {
        "pods": args.pods,
        "rounds": args.rounds,
        "cycles": args.cycles,
        "interval_s": args.interval,
        "phases": phases,
        "ratios": ratios,
        "machine": machine.finish(before),
    }
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    asyncio.run(main())
