"""CPU time of one Kubernetes call as the VK makes it (``Kube.call``: kr8s → httpx → httpcore),
with and without ``sniffio`` installed.

httpcore, under kr8s' httpx, runs ``import sniffio`` on every request; when sniffio is missing
the failed import searches every ``sys.path`` entry each time. The VK makes about ten
Kubernetes calls per pod (token, ConfigMap, job-id patch, status patches, Events, delete), so
this is paid per pod. This script measures the VK process's own CPU seconds for ``--calls`` GETs
of a ConfigMap against the test world's apiserver, ``--concurrency`` at a time (the VK's
create concurrency), and says whether sniffio was importable. Run it once with and once
without sniffio in the environment (``pip uninstall sniffio``), interleaved:

    .venv/bin/python bench/bench_kube_call.py [--calls 2000] [--concurrency 16]

Prints one line and writes bench/out/kube_call_<with|without>_sniffio.json.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import kr8s.asyncio  # noqa: E402
import machine  # noqa: E402  (bench/, next to this script)

from interlink_vk.kube import Kube  # noqa: E402
from tests.helpers.k8s import ensure_k8s  # noqa: E402


async def measure(calls: int, concurrency: int) -> dict[str, Any]:
    k8s = ensure_k8s()
    kube = Kube(await kr8s.asyncio.api(kubeconfig=str(k8s.kubeconfig)))
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            await kube.call("GET", "configmaps/kube-root-ca.crt", namespace="default")

    await asyncio.gather(*(one() for _ in range(50)))  # connections made, modules loaded
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "sniffio": importlib.util.find_spec("sniffio") is not None,
        "calls": calls,
        "concurrency": concurrency,
        "cpu_ms_per_call": 1000 * cpu / calls,
        "wall_seconds": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    before = machine.start()
    result = asyncio.run(measure(args.calls, args.concurrency))
    result["machine"] = machine.finish(before)
    which = "with" if result["sniffio"] else "without"
    print(
        f"sniffio {which:7s}: {result['cpu_ms_per_call']:.2f} ms CPU per call "
        f"({args.calls} calls, {args.concurrency} at a time, {result['wall_seconds']:.1f} s wall)"
    )
    machine.save(result, f"kube_call_{which}_sniffio.json")


if __name__ == "__main__":
    main()
