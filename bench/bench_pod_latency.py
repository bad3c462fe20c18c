"""Offload latency through the whole stack, on the same SLURM, interleaved: a pod created in
Kubernetes → the pod ``Running`` (seen by a watch on the pod), through kube-scheduler, the
virtual kubelet (its default settings, as its own process), the API server and the SLURM
plugin, against raw ``sbatch`` → the job ``RUNNING`` (seen by ``squeue`` every 20 ms). Both
sides start at a random phase of slurmctld's 1 s scheduling tick.

    .venv/bin/python bench/bench_pod_latency.py [--n 50]

Prints a table and writes bench/out/pod_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import kr8s.asyncio  # noqa: E402
import machine  # noqa: E402
from bench_slurm_latency import POLL, gone, write_table  # noqa: E402
from percentiles import summary_ms  # noqa: E402

from interlink_core.names import JOB_ID_ANNOTATION  # noqa: E402
from tests.helpers.k8s import ensure_k8s  # noqa: E402
from tests.helpers.slurm import ensure_slurm  # noqa: E402
from tests.helpers.vk_world import World  # noqa: E402


def squeue_state(job: str) -> str:
    return subprocess.run(
        ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True
    ).stdout.strip()


async def raw_once(tmp: Path, partition: str) -> float:
    t0 = time.perf_counter()
    job = subprocess.run(
        [
            "sbatch",
            "--parsable",
            f"--partition={partition}",
            f"--output={tmp}/raw-%j.out",
            "--wrap",
            "sleep 30",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    while squeue_state(job) not in ("RUNNING", "COMPLETING", "COMPLETED", ""):
        await asyncio.sleep(POLL)
    elapsed = time.perf_counter() - t0
    subprocess.run(["scancel", job], check=False)
    await gone(job)
    return elapsed


async def pod_once(api: Any, world: World) -> float:
    name = f"lat-{uuid.uuid4().hex[:8]}"
    pod = world.manifest(name, ["sleep", "30"], automountServiceAccountToken=False)
    running = asyncio.Event()
    job = ""

    async def watch() -> None:
        nonlocal job
        async for _event, obj in api.watch(
            "pods", namespace=world.ns, field_selector=f"metadata.name={name}"
        ):
            raw = obj.raw
            if (raw.get("status") or {}).get("phase") == "Running":
                job = (raw["metadata"].get("annotations") or {}).get(JOB_ID_ANNOTATION, "")
                running.set()
                return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.05)  # the watch is established before the clock starts
    t0 = time.perf_counter()
    async with api.call_api(
        "POST", version="v1", namespace=world.ns, url="pods", content=json.dumps(pod)
    ):
        pass
    await asyncio.wait_for(running.wait(), 120)
    elapsed = time.perf_counter() - t0
    watcher.cancel()
    async with api.call_api("DELETE", version="v1", namespace=world.ns, url=f"pods/{name}"):
        pass
    if job:
        await gone(job)
    return elapsed


async def bench(root: Path, n: int) -> dict[str, Any]:
    k8s = ensure_k8s()
    slurm = ensure_slurm()
    world = World(root, k8s, slurm.partition)
    await world.start()
    try:
        api = await kr8s.asyncio.api(kubeconfig=str(k8s.kubeconfig))
        raw: list[float] = []
        pods: list[float] = []
        rng = random.Random(7)
        await pod_once(api, world)  # warm-up: first pod of the node, first connections
        for i in range(n):
            await asyncio.sleep(rng.uniform(0, 1))
            raw.append(await raw_once(root, slurm.partition))
            await asyncio.sleep(rng.uniform(0, 1))
            pods.append(await pod_once(api, world))
            print(f"{i + 1}/{n}: sbatch {raw[-1]:.3f}s  pod {pods[-1]:.3f}s", file=sys.stderr)
    finally:
        world.stop()
    return {
        "n": n,
        "raw": summary_ms(raw),
        "pod": summary_ms(pods),
        "ratio_median": statistics.median(pods) / statistics.median(raw),
        "samples": {"raw": raw, "pod": pods},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50)
    args = parser.parse_args()
    before = machine.start()
    with tempfile.TemporaryDirectory(prefix="interlink-podlat-") as tmp:
        r = asyncio.run(bench(Path(tmp), args.n))
    r["machine"] = machine.finish(before)
    r["ratios"] = {"pod created → Running, median / sbatch → RUNNING": r["ratio_median"]}
    rows = (("raw", "sbatch → job RUNNING"), ("pod", "pod created → pod Running"))
    write_table(r, "pod_latency", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
