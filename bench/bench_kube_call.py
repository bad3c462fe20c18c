"""CPU time of one Kubernetes call as the VK makes it (``KubeJSON.call``: aiohttp, credentials
from kr8s) against the same call through kr8s' own ``call_api`` (httpx), in the same run.

The VK makes about ten Kubernetes calls per pod (token, ConfigMap, job-id patch, status
patches, Events, delete), so this is paid per pod. This script measures the process's own CPU
seconds for ``--calls`` GETs of a ConfigMap against the test world's apiserver, ``--concurrency``
at a time (the VK's create concurrency), for each client in turn, ``--rounds`` times
(interleaved: the machine's noise falls on both):

    .venv/bin/python bench/bench_kube_call.py [--calls 2000] [--concurrency 16] [--rounds 3]

Prints a table and writes bench/out/kube_call.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import kr8s.asyncio  # noqa: E402
import machine  # noqa: E402  (bench/, next to this script)

from interlink_core.kube import KubeJSON  # noqa: E402
from tests.helpers.k8s import ensure_k8s  # noqa: E402

URL = "configmaps/kube-root-ca.crt"


async def cpu_ms_per_call(
    call: Callable[[], Awaitable[Any]], calls: int, concurrency: int
) -> tuple[float, float]:
    """CPU milliseconds per call and wall seconds, ``concurrency`` calls at a time."""
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            await call()

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    return 1000 * (time.process_time() - cpu0) / calls, time.perf_counter() - wall0


async def measure(calls: int, concurrency: int, rounds: int) -> dict[str, Any]:
    k8s = ensure_k8s()
    api = await kr8s.asyncio.api(kubeconfig=str(k8s.kubeconfig))

    async def through_kr8s() -> Any:
        async with api.call_api("GET", namespace="default", url=URL) as resp:
            return json.loads(resp.text)

    async with KubeJSON(api) as kube:

        async def through_kubejson() -> Any:
            return await kube.call("GET", URL, namespace="default")

        clients = {"KubeJSON (aiohttp)": through_kubejson, "kr8s call_api (httpx)": through_kr8s}
        for call in clients.values():  # connections made, modules loaded
            await cpu_ms_per_call(call, 50, concurrency)
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
        for _ in range(rounds):
            for name, call in clients.items():
                runs[name].append(await cpu_ms_per_call(call, calls, concurrency))
    return {
        "calls": calls,
        "concurrency": concurrency,
        "rounds": rounds,
        "clients": {
            name: {
                "cpu_ms_per_call": [r[0] for r in rs],
                "median_cpu_ms_per_call": statistics.median(r[0] for r in rs),
                "wall_seconds": [r[1] for r in rs],
            }
            for name, rs in runs.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    before = machine.start()
    result = asyncio.run(measure(args.calls, args.concurrency, args.rounds))
    result["machine"] = machine.finish(before)
    print(f"{'client':24s} {'CPU ms/call (median)':>21s} {'per round':>24s}")
    for name, r in result["clients"].items():
        rounds = " ".join(f"{x:.2f}" for x in r["cpu_ms_per_call"])
        print(f"{name:24s} {r['median_cpu_ms_per_call']:21.2f} {rounds:>24s}")
    ours, theirs = (c["median_cpu_ms_per_call"] for c in result["clients"].values())
    print(f"ratio kr8s/KubeJSON: {theirs / ours:.1f}")
    machine.save(result, "kube_call.json")


if __name__ == "__main__":
    main()
