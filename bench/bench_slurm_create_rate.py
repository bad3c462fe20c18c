"""Creates per second through the SLURM plugin against raw ``sbatch``, 16 at a time, same run.

The VK sends a burst of pods to the edge 16 at a time (its ``create_concurrency``); each create
is the plugin writing the pod's files and script, then ``sbatch``. This bench submits ``--n``
one-CPU jobs (``sleep 1``) each way, 16 at a time, in the order raw, plugin, raw, plugin
(``--rounds`` pairs), and reports the rate and the latency of one submission (p50, p95). The
plugin runs in this process (``SlurmPlugin.submit``, ``runtime: host``), so the figure is the
plugin's own cost, without the API server or HTTP.

    .venv/bin/python bench/bench_slurm_create_rate.py [--n 300] [--rounds 2]

Prints a table and writes bench/out/slurm_create_rate.json. Every job it submitted is cancelled
at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins"), str(REPO / "vk")]

import machine  # noqa: E402  (bench/, next to this script)
from percentiles import summary_ms  # noqa: E402

from interlink_core.config import build_config  # noqa: E402
from interlink_core.models import RetrievedPodData  # noqa: E402
from interlink_plugins.slurm.plugin import SlurmPlugin, SlurmPluginConfig  # noqa: E402
from tests.helpers.slurm import ensure_slurm  # noqa: E402

CONCURRENCY = 16


async def timed_burst(n: int, one: Callable[[int], Awaitable[None]]) -> dict[str, Any]:
    """``n`` submissions, ``CONCURRENCY`` at a time: the rate and each one's latency."""
    sem = asyncio.Semaphore(CONCURRENCY)

    async def timed(i: int) -> float:
        async with sem:
            t0 = time.perf_counter()
            await one(i)
            return time.perf_counter() - t0

    t0 = time.perf_counter()
    latencies = await asyncio.gather(*(timed(i) for i in range(n)))
    wall = time.perf_counter() - t0
    return {"per_second": n / wall, "wall_seconds": wall, "latency": summary_ms(latencies)}


async def measure(n: int, rounds: int, root: Path) -> dict[str, Any]:
    ensure_slurm()
    config = {"state_dir": str(root / "state"), "runtime": "host"}
    plugin = SlurmPlugin(build_config(SlurmPluginConfig, config))
    await plugin.start()
    tag = f"rate{uuid.uuid4().hex[:5]}"

    async def raw(i: int) -> None:
        argv = ["sbatch", "--parsable", f"--job-name={tag}-raw", "--cpus-per-task=1"]
        argv += ["--mem=16M", f"--output={root}/raw-%j.out", "--wrap", "sleep 1"]
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
        await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"sbatch failed: {proc.returncode}")

    async def ours(i: int) -> None:
        container = {"name": "main", "image": "none", "command": ["sleep", "1"]}
        container["resources"] = {"requests": {"cpu": "1", "memory": "16Mi"}}
        pod = {
            "metadata": {"name": f"{tag}-{i}", "namespace": "bench", "uid": str(uuid.uuid4())},
            "spec": {"restartPolicy": "Never", "containers": [container]},
        }
        await plugin.submit(RetrievedPodData(pod=pod))

    runs: dict[str, list[dict[str, Any]]] = {"raw sbatch": [], "SLURM plugin": []}
    try:
        for _ in range(rounds):
            for name, one in (("raw sbatch", raw), ("SLURM plugin", ours)):
                runs[name].append(await timed_burst(n, one))
                await asyncio.sleep(5)  # the jobs of this side start before the next side
    finally:
        subprocess.run(["scancel", f"--name={tag}-raw"], check=False)
        ids = subprocess.run(
            ["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True, check=False
        ).stdout.split("\n")
        mine = [line.split()[0] for line in ids if f" bench-{tag}-" in line]
        if mine:
            subprocess.run(["scancel", *mine], check=False)
    rates = {name: [r["per_second"] for r in rs] for name, rs in runs.items()}
    return {
        "n": n,
        "rounds": rounds,
        "concurrency": CONCURRENCY,
        "runs": runs,
        "ratio_of_median_rates": statistics.median(rates["SLURM plugin"])
        / statistics.median(rates["raw sbatch"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="submissions per side and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    before = machine.start()
    with tempfile.TemporaryDirectory(prefix="bench-create-rate-") as tmp:
        result = asyncio.run(measure(args.n, args.rounds, Path(tmp)))
    result["machine"] = machine.finish(before)
    print(f"| side (N={args.n}, {CONCURRENCY} at a time) | creates/s | p50 | p95 |")
    print("|---|---|---|---|")
    for i in range(args.rounds):
        for name, rs in result["runs"].items():
            r = rs[i]
            lat = r["latency"]
            print(
                f"| {name} | {r['per_second']:.1f} | {lat['p50_ms']:.0f} ms | "
                f"{lat['p95_ms']:.0f} ms |"
            )
    print(f"plugin / raw, median rates: {result['ratio_of_median_rates']:.2f}")
    machine.save(result, "slurm_create_rate.json")


if __name__ == "__main__":
    main()
