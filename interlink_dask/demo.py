"""The Dask demo of ``interlink demo``: an edge on this machine (local plugin, direct mode),
an InterLinkCluster scaled to 4 workers, a real computation, the worker state table, and a
clean teardown. Needs nothing but ``pip install 'interlink[edge,dask]'``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from distributed import Client, get_worker

from interlink_core.embedded import EmbeddedEdge

from .cluster import InterLinkCluster

WORKERS = 4
CHUNKS = 16
LIMIT = 400_000


def count_primes(lo: int, hi: int) -> tuple[str, int]:
    """Primes in ``[lo, hi)`` and the worker that counted them."""
    n = 0
    for k in range(max(lo, 2), hi):
        if all(k % d for d in range(2, int(k**0.5) + 1)):
            n += 1
    return str(get_worker().name), n


def run(state_dir: Path, out: Any = sys.stdout) -> int:
    """The whole demo; returns the exit status."""
    t0 = time.monotonic()

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - t0:5.1f}s] {msg}", file=out, flush=True)

    say("starting an edge on this machine: local plugin + API server (development token)")
    with EmbeddedEdge(state_dir=state_dir / "edge") as edge:
        say(f"edge ready at {edge.url}")
        with InterLinkCluster(
            name="interlink-demo",
            mode="direct",
            direct={"url": edge.url, "token": edge.token},
            worker_command=[sys.executable, "-m", "distributed.cli.dask_worker"],
            memory="1GiB",
            status_interval=0.2,
            state_dir=state_dir / "dask",
        ) as cluster:
            say(f"scheduler at {cluster.scheduler_address}, dashboard {cluster.dashboard_link}")
            cluster.scale(WORKERS)
            say(f"asked for {WORKERS} workers: each is a pod sent to the edge")
            seen: dict[str, int] = {}
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                now = {k: v for k, v in cluster.worker_state_counts().items() if v}
                if now != seen:
                    say("workers: " + ", ".join(f"{v} {k}" for k, v in now.items()))
                    seen = now
                if now.get("connected") == WORKERS:
                    break
                time.sleep(0.1)
            else:
                say("the workers did not connect in time:\n" + cluster.state_table())
                return 1
            with Client(cluster) as client:
                step = LIMIT // CHUNKS
                futures = [
                    client.submit(count_primes, i * step, (i + 1) * step) for i in range(CHUNKS)
                ]
                results = client.gather(futures)
            per_worker: dict[str, int] = {}
            for worker, _ in results:
                per_worker[worker] = per_worker.get(worker, 0) + 1
            total = sum(n for _, n in results)
            say(f"result: {total} primes below {LIMIT:,} ({CHUNKS} tasks)")
            for worker, n in sorted(per_worker.items()):
                say(f"  {worker} ran {n} tasks")
            say("worker state table:")
            for line in cluster.state_table().splitlines():
                print(f"         | {line}", file=out)
        say("cluster closed: worker pods deleted")
    say("edge stopped; demo done")
    return 0
