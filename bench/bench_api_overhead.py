"""API server overhead against calling the plugin directly, in the same run.

    .venv/bin/python bench/bench_api_overhead.py [--pods 1000] [--creates 100] [--repeat 30]

Starts the local plugin (unix socket) and an API server in front of it (development token), then:
- create: p50/p95 of one create, straight to the plugin vs through the API server (interleaved);
- status: p50/p95 of one /status call carrying 1, 100 and 1,000 pods, both ways (interleaved).
The timed creates run `true`; the tracked pods of the status calls run `sleep` (a VK's status
cycle carries non-terminal pods) and are deleted through the API server at the end. Prints a table
and writes bench/out/api_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

from interlink_core.apiserver import retrieved_pod_data  # noqa: E402
from interlink_core.client import InterLinkClient, PluginClient, static_token  # noqa: E402
from interlink_core.models import PodCreateRequests  # noqa: E402
from tests.helpers.world import start_api, start_plugin  # noqa: E402

TOKEN = "bench-dev-token-0123"


def pod(name: str, command: list[str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "bench", "uid": str(uuid.uuid4())},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "none", "command": command or ["true"]}],
            "terminationGracePeriodSeconds": 5,
        },
    }


async def timed(coro: Any) -> float:
    t0 = time.perf_counter()
    await coro
    return time.perf_counter() - t0


async def bench(root: Path, pods: int, creates: int, repeat: int, settle: float) -> dict[str, Any]:
    plugin = start_plugin(root / "plugin", config={"max_pods": 5000})
    api = start_api(
        root / "api", {"plugin": {"url": plugin.url}, "auth": {"insecure_dev_token": TOKEN}}
    )
    results: dict[str, Any] = {
        "pods": pods,
        "creates": creates,
        "repeat": repeat,
        "settle_seconds": settle,
    }
    try:
        async with (
            PluginClient(plugin.url) as direct,
            InterLinkClient(api.url, token=static_token(TOKEN)) as edge,
        ):
            # create, interleaved
            d_create: list[float] = []
            a_create: list[float] = []
            for i in range(creates):
                p_direct = pod(f"direct-{i}")
                p_api = pod(f"api-{i}")
                d_create.append(
                    await timed(direct.create(retrieved_pod_data(PodCreateRequests(pod=p_direct))))
                )
                await asyncio.sleep(settle)
                a_create.append(await timed(edge.create(PodCreateRequests(pod=p_api))))
                await asyncio.sleep(settle)
            results["create"] = {"direct": summary_ms(d_create), "api": summary_ms(a_create)}
            # fill up to `pods` tracked pods, created through the API server
            tracked = []
            sem = asyncio.Semaphore(16)

            async def make(i: int) -> dict[str, Any]:
                async with sem:
                    p = pod(f"fill-{i}", ["sleep", "900"])
                    await edge.create(PodCreateRequests(pod=p))
                    return p

            t0 = time.perf_counter()
            tracked = list(await asyncio.gather(*(make(i) for i in range(pods))))
            results["fill_seconds"] = time.perf_counter() - t0
            await asyncio.sleep(5)  # let the last runners start their containers
            running = sum(
                1
                for s in await edge.status(tracked)
                if "running" in (s.containers[0].get("state") or {})
            )
            results["running_pods"] = running
            results["status"] = {}
            for n in (1, 100, pods):
                batch = tracked[:n]
                d: list[float] = []
                a: list[float] = []
                for _ in range(repeat):
                    d.append(await timed(direct.status(batch)))
                    a.append(await timed(edge.status(batch)))
                answered = await edge.status(batch)
                assert len(answered) == n, f"API answered {len(answered)} statuses for {n} pods"
                results["status"][str(n)] = {"direct": summary_ms(d), "api": summary_ms(a)}
            t0 = time.perf_counter()

            async def drop(p: dict[str, Any]) -> None:
                async with sem:
                    await edge.delete(p)

            await asyncio.gather(*(drop(p) for p in tracked))
            results["delete_all_seconds"] = time.perf_counter() - t0
    finally:
        api.stop()
        plugin.stop()
    return results


def table(r: dict[str, Any]) -> str:
    rows = [("create", r["create"])] + [(f"status x{n}", v) for n, v in r["status"].items()]
    out = [
        "| call | direct p50 | direct p95 | via API p50 | via API p95 | added p50 | ratio p50 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v in rows:
        d, a = v["direct"], v["api"]
        out.append(
            f"| {name} | {d['p50_ms']:.2f} ms | {d['p95_ms']:.2f} ms | {a['p50_ms']:.2f} ms | "
            f"{a['p95_ms']:.2f} ms | {a['p50_ms'] - d['p50_ms']:+.2f} ms | "
            f"{a['p50_ms'] / d['p50_ms']:.2f} |"
        )
    return "\n".join(out)


def ratios(r: dict[str, Any]) -> dict[str, float]:
    """Through the API server / straight to the plugin, p50, per call."""
    rows = [("create", r["create"])] + [(f"status x{n}", v) for n, v in r["status"].items()]
    return {
        f"{name} p50 via API / direct": v["api"]["p50_ms"] / v["direct"]["p50_ms"]
        for name, v in rows
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--creates", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument(
        "--settle",
        type=float,
        default=0.15,
        help="pause after each create so the new pod's processes do not compete with the next "
        "timed call for the 2 cores (set 0 to measure under that load)",
    )
    args = parser.parse_args()
    before = machine.start()
    with tempfile.TemporaryDirectory(prefix="interlink-bench-") as tmp:
        results = asyncio.run(bench(Path(tmp), args.pods, args.creates, args.repeat, args.settle))
    results["machine"] = machine.finish(before)
    results["ratios"] = ratios(results)
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "api_overhead.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    print(
        f"({results['running_pods']} of {args.pods} tracked pods running; created in "
        f"{results['fill_seconds']:.1f} s, deleted in {results['delete_all_seconds']:.1f} s; "
        f"JSON in {out / 'api_overhead.json'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
