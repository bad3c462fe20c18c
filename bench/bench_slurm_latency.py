"""Offload latency on the same SLURM, interleaved: raw `sbatch` → job RUNNING (seen by
`squeue`) against plugin create → container running (seen by the plugin's status, i.e. the job
started and its script launched the container). Both sides poll every 20 ms and submit at a
random phase of the scheduler's tick.

    .venv/bin/python bench/bench_slurm_latency.py [--n 50]

This is the plugin-level half of the issue's figure; pod created → pod Running through the
virtual kubelet is measured once the VK exists. Writes bench/out/slurm_latency.json.
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

import machine  # noqa: E402  (bench/, next to this script)
from percentiles import summary_ms  # noqa: E402

from interlink_core.config import build_config  # noqa: E402
from interlink_core.models import RetrievedPodData  # noqa: E402
from interlink_core.store import JobRecord  # noqa: E402
from interlink_plugins.slurm.plugin import SlurmPlugin, SlurmPluginConfig  # noqa: E402

POLL = 0.02


async def raw_once(tmp: Path) -> float:
    t0 = time.perf_counter()
    job = subprocess.run(
        ["sbatch", "--parsable", f"--output={tmp}/raw-%j.out", "--wrap", "sleep 2"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    while True:
        state = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True
        ).stdout.strip()
        if state in ("RUNNING", "COMPLETING", "COMPLETED", ""):
            break
        await asyncio.sleep(POLL)
    elapsed = time.perf_counter() - t0
    subprocess.run(["scancel", job], check=False)
    await gone(job)
    return elapsed


async def gone(job: str) -> None:
    """Wait until SLURM has let a cancelled job go, so the next measurement starts clean."""
    for _ in range(500):
        state = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True
        ).stdout.strip()
        if state in ("", "CANCELLED", "COMPLETED"):
            break
        await asyncio.sleep(POLL)
    await asyncio.sleep(0.3)


async def ours_once(plugin: SlurmPlugin) -> float:
    uid = str(uuid.uuid4())
    pod = {
        "metadata": {"name": "lat", "namespace": "bench", "uid": uid},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "x", "command": ["sleep", "2"]}],
        },
    }
    t0 = time.perf_counter()
    done = await plugin.submit(RetrievedPodData(pod=pod))
    rec = JobRecord(uid=uid, namespace="bench", name="lat", job_id=done.job_id, data=done.data)
    while True:
        [status] = await plugin.poll([rec])
        if (
            "running" in status.containers[0]["state"]
            or "terminated" in status.containers[0]["state"]
        ):
            break
        await asyncio.sleep(POLL)
    elapsed = time.perf_counter() - t0
    await plugin.cancel(rec, pod)
    await gone(rec.job_id)
    return elapsed


def write_table(r: dict[str, Any], name: str, rows: tuple[tuple[str, str], ...]) -> None:
    """Write ``r`` to bench/out/<name>.json and print its table (``rows``: key, label)."""
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(r, indent=2))
    print(f"| N={r['n']} | median | p95 | min | max |")
    print("|---|---|---|---|---|")
    for key, label in rows:
        v = r[key]
        print(
            f"| {label} | {v['p50_ms']:.0f} ms | {v['p95_ms']:.0f} ms | "
            f"{v['min_ms']:.0f} ms | {v['max_ms']:.0f} ms |"
        )
    print(f"ratio of medians: {r['ratio_median']:.2f}")


async def bench(root: Path, n: int) -> dict[str, Any]:
    plugin = SlurmPlugin(
        build_config(SlurmPluginConfig, {"state_dir": str(root / "st"), "runtime": "host"})
    )
    await plugin.start()
    raw: list[float] = []
    ours: list[float] = []
    rng = random.Random(42)
    for _ in range(n):
        # submit at a random phase of slurmctld's scheduling tick (sched_interval), or the
        # loop's own period locks each side onto a different phase
        await asyncio.sleep(rng.uniform(0, 1))
        raw.append(await raw_once(root))
        await asyncio.sleep(rng.uniform(0, 1))
        ours.append(await ours_once(plugin))

    return {
        "n": n,
        "raw": summary_ms(raw),
        "ours": summary_ms(ours),
        "ratio_median": statistics.median(ours) / statistics.median(raw),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50)
    args = parser.parse_args()
    before = machine.start()
    with tempfile.TemporaryDirectory(prefix="interlink-lat-") as tmp:
        r = asyncio.run(bench(Path(tmp), args.n))
    r["machine"] = machine.finish(before)
    r["ratios"] = {"create → running, median / sbatch → RUNNING": r["ratio_median"]}
    rows = (("raw", "sbatch → RUNNING"), ("ours", "plugin create → running"))
    write_table(r, "slurm_latency", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
