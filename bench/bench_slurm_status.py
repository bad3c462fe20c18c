"""Status cost with many tracked SLURM jobs: our cycle (one `squeue` + at most one `sacct`)
against one `squeue -j <id>` per job (upstream's approach), in the same run on the same SLURM.

    .venv/bin/python bench/bench_slurm_status.py [--jobs 200] [--repeat 10]

Jobs are submitted held (`--hold`) through the plugin so they stay queued while we measure;
they are cancelled at the end. Prints a table and writes bench/out/slurm_status.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

from interlink_core.config import build_config  # noqa: E402
from interlink_core.models import RetrievedPodData  # noqa: E402
from interlink_core.store import JobRecord  # noqa: E402
from interlink_plugins.slurm.plugin import SlurmPlugin, SlurmPluginConfig  # noqa: E402


async def bench(root: Path, jobs: int, repeat: int) -> dict[str, Any]:
    config = build_config(SlurmPluginConfig, {"state_dir": str(root), "runtime": "host"})
    plugin = SlurmPlugin(config)
    await plugin.start()
    records = []
    t0 = time.perf_counter()
    for i in range(jobs):
        pod = {
            "metadata": {
                "name": f"b{i}",
                "namespace": "bench",
                "uid": str(uuid.uuid4()),
                "annotations": {"slurm-job.vk.io/flags": "--hold"},
            },
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "x", "command": ["true"]}],
            },
        }
        done = await plugin.submit(RetrievedPodData(pod=pod))
        records.append(
            JobRecord(
                uid=pod["metadata"]["uid"],
                namespace="bench",
                name=f"b{i}",
                job_id=done.job_id,
                data=done.data,
            )
        )
    submit_s = time.perf_counter() - t0
    ours: list[float] = []
    theirs: list[float] = []
    calls_before = (plugin.calls.squeue, plugin.calls.sacct)
    try:
        for _ in range(repeat):
            t = time.perf_counter()
            statuses = await plugin.poll(records)
            ours.append(time.perf_counter() - t)
            assert len(statuses) == jobs
            assert all(
                "Queued: JobHeldUser" in s.containers[0]["state"]["waiting"]["reason"]
                for s in statuses
            )
            t = time.perf_counter()
            for r in records:
                subprocess.run(
                    ["squeue", "-h", "-j", r.job_id, "-o", "%i|%T|%r"],
                    capture_output=True,
                    check=True,
                )
            theirs.append(time.perf_counter() - t)
    finally:
        ids = [r.job_id for r in records]
        subprocess.run(["scancel", *ids], check=False)
    calls = (plugin.calls.squeue - calls_before[0], plugin.calls.sacct - calls_before[1])
    return {
        "jobs": jobs,
        "repeat": repeat,
        "submit_seconds": submit_s,
        "ours": {
            "calls_per_cycle": (calls[0] + calls[1]) / repeat,
            "squeue_per_cycle": calls[0] / repeat,
            "sacct_per_cycle": calls[1] / repeat,
            "p50_ms": statistics.median(ours) * 1000,
            "max_ms": max(ours) * 1000,
        },
        "per_job_squeue": {
            "calls_per_cycle": jobs,
            "p50_ms": statistics.median(theirs) * 1000,
            "max_ms": max(theirs) * 1000,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    before = machine.start()
    with tempfile.TemporaryDirectory(prefix="interlink-slurm-bench-") as tmp:
        r = asyncio.run(bench(Path(tmp), args.jobs, args.repeat))
    r["machine"] = machine.finish(before)
    r["ratios"] = {
        "status cycle p50, ours / one squeue per job": r["ours"]["p50_ms"]
        / r["per_job_squeue"]["p50_ms"]
    }
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "slurm_status.json").write_text(json.dumps(r, indent=2))
    o, t = r["ours"], r["per_job_squeue"]
    print(f"| status cycle, {r['jobs']} jobs | SLURM calls | wall p50 | wall max |")
    print("|---|---|---|---|")
    print(
        f"| ours (squeue + sacct) | {o['calls_per_cycle']:.0f} | {o['p50_ms']:.1f} ms | "
        f"{o['max_ms']:.1f} ms |"
    )
    print(
        f"| one squeue -j per job | {t['calls_per_cycle']} | {t['p50_ms']:.1f} ms | "
        f"{t['max_ms']:.1f} ms |"
    )
    print(
        f"ratio (per-job / ours) p50: {t['p50_ms'] / o['p50_ms']:.1f}x; "
        f"{r['jobs']} jobs submitted in {r['submit_seconds']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
