"""A soak of the whole stack with the local plugin edge: pods come and go at a steady rate for
a long time (default 30 minutes) through Kubernetes → ``interlink vk`` → API server → local
plugin, and the resident memory (RSS) and open file descriptors of every component (VK, API
server, plugin) are read at the start, every ``--sample`` seconds and at the end.

Every ``1 / --rate`` seconds one pod is created (restartPolicy Never), so about ``rate * life``
pods run at any time, and they go both ways a pod goes: even-numbered pods run ``sleep --life``
and end by themselves (the bench deletes them once Succeeded); odd-numbered ones run
``sleep 3600`` and the bench deletes them while Running, ``--life`` seconds after creating them.
At the end: every pod created was deleted after it Succeeded (even) or while Running (odd),
none was lost or failed, and the plugin holds no pod directory.

"Flat": each component's RSS at the end within ``--tolerance`` (default 10 %) or 10 MB,
whichever is larger, of its RSS after ``--warmup`` seconds (the Python allocator and the
caches fill during the first minutes), and open file descriptors at most 10 above it (fewer is
not a leak: the VK's connection pool to the apiserver closes idle connections once no pod is
left).

    .venv/bin/python bench/bench_soak.py [--minutes 30] [--rate 0.5] [--life 60] [--sample 120]

Prints a table and writes bench/out/soak.json (rewritten after every sample).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import kr8s.asyncio  # noqa: E402
import machine  # noqa: E402  (bench/, next to this script)

from interlink_core.kube import status_code  # noqa: E402
from interlink_vk.config import VK_TAINT_KEY  # noqa: E402
from interlink_vk.kube import Kube  # noqa: E402
from tests.helpers.k8s import ensure_k8s  # noqa: E402
from tests.helpers.vk_world import World  # noqa: E402

FD_TOLERANCE = 10
RSS_FLOOR_MB = 10.0


def usage(pid: int) -> dict[str, float]:
    """RSS (MB) and open file descriptors of one process."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {
        "rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def flat(base: dict[str, float], end: dict[str, float], tolerance: float) -> dict[str, Any]:
    """The verdict for one component: end against the post-warm-up baseline."""
    rss_limit = max(base["rss_mb"] * tolerance, RSS_FLOOR_MB)
    rss_delta = end["rss_mb"] - base["rss_mb"]
    fd_delta = end["fds"] - base["fds"]
    return {
        "rss_delta_mb": round(rss_delta, 1),
        "rss_allowed_mb": round(rss_limit, 1),
        "fd_delta": fd_delta,
        "flat": rss_delta <= rss_limit and fd_delta <= FD_TOLERANCE,
    }


class Soak:
    """The pods of one soak and the counts of what happened to them."""

    def __init__(self, world: World, kube: Kube, life: float) -> None:
        self.world = world
        self.kube = kube
        self.life = life
        self.created = 0
        self.deleted = 0
        self.failed: list[str] = []
        self.live: dict[str, float] = {}  # name → when it was created
        self.deleted_running = 0

    def manifest(self, name: str, seconds: int) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": self.world.ns},
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": self.world.node},
                "tolerations": [{"key": VK_TAINT_KEY, "operator": "Exists"}],
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "w", "image": "x", "command": ["sleep", str(seconds)]}],
            },
        }

    async def create(self) -> None:
        name = f"soak-{self.created}"
        seconds = 3600 if self.created % 2 else int(self.life)
        body = self.manifest(name, seconds)
        await self.kube.call("POST", "pods", namespace=self.world.ns, body=body)
        self.created += 1
        self.live[name] = time.monotonic()

    async def reap(self) -> None:
        """Delete the pods that ended (note any that failed) and the long ones whose time
        is up."""
        answer = await self.kube.call("GET", "pods", namespace=self.world.ns)
        now = time.monotonic()
        for pod in answer.get("items") or []:
            name = pod["metadata"]["name"]
            phase = (pod.get("status") or {}).get("phase")
            if name not in self.live or pod["metadata"].get("deletionTimestamp"):
                continue
            due = int(name.rsplit("-", 1)[1]) % 2 and now - self.live[name] >= self.life
            if phase == "Failed":
                self.failed.append(name)
            elif phase == "Running" and due:
                self.deleted_running += 1
            elif phase != "Succeeded":
                continue
            try:
                await self.kube.call("DELETE", f"pods/{name}", namespace=self.world.ns)
            except Exception as exc:
                if status_code(exc) != 404:
                    raise
            self.deleted += 1
            del self.live[name]

    async def pods_left(self) -> int:
        answer = await self.kube.call("GET", "pods", namespace=self.world.ns)
        return len(answer.get("items") or [])


async def run(args: argparse.Namespace, dest: Path, before: dict[str, Any]) -> dict[str, Any]:
    k8s = ensure_k8s()
    root = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    world = World(root, k8s, None)
    out: dict[str, Any] = {
        "minutes": args.minutes,
        "rate_per_second": args.rate,
        "life_seconds": args.life,
        "tolerance": args.tolerance,
        "samples": [],
    }
    try:
        await world.start()
        pids = world.pids()
        kube = Kube(await kr8s.asyncio.api(kubeconfig=str(k8s.kubeconfig)))
        soak = Soak(world, kube, args.life)
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        next_create = next_sample = t0
        next_reap = t0 + 5
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_sample:
                sample = {n: usage(p) for n, p in pids.items()}
                out["samples"].append(
                    {
                        "seconds": round(now - t0),
                        "load": os.getloadavg()[0],
                        "pods_created": soak.created,
                        "pods_deleted": soak.deleted,
                        "pods_live": len(soak.live),
                        **sample,
                    }
                )
                print(json.dumps(out["samples"][-1]), flush=True)
                dest.write_text(json.dumps(out, indent=2) + "\n")
                next_sample += args.sample
            if now >= next_create:
                await soak.create()
                next_create += 1 / args.rate
            if now >= next_reap:
                await soak.reap()
                next_reap += 5
            await asyncio.sleep(max(0.05, min(next_create, next_sample, next_reap) - now))
        # drain: the last pods end, are deleted, and the edge forgets them
        deadline = time.monotonic() + args.life + 300
        while soak.live and time.monotonic() < deadline:
            await soak.reap()
            await asyncio.sleep(2)
        while await soak.pods_left() and time.monotonic() < deadline:
            await asyncio.sleep(2)
        await asyncio.sleep(15)  # a few status cycles with nothing left
        final = {n: usage(p) for n, p in pids.items()}
        out["samples"].append(
            {
                "seconds": round(time.monotonic() - t0),
                "load": os.getloadavg()[0],
                "pods_created": soak.created,
                "pods_deleted": soak.deleted,
                "pods_live": len(soak.live),
                **final,
            }
        )
        pods_dir = world.root / "plugin" / "state" / "pods"
        out["no_loss"] = {
            "created": soak.created,
            "deleted_after_succeeded": soak.deleted - len(soak.failed) - soak.deleted_running,
            "deleted_while_running": soak.deleted_running,
            "failed": soak.failed,
            "not_ended": sorted(soak.live),
            "pod_dirs_left_at_edge": len(list(pods_dir.iterdir())) if pods_dir.exists() else 0,
        }
        base = next(s for s in out["samples"] if s["seconds"] >= args.warmup)
        out["baseline_seconds"] = base["seconds"]
        out["verdict"] = {n: flat(base[n], final[n], args.tolerance) for n in pids}
        return out
    finally:
        out["machine"] = machine.finish(before)
        dest.write_text(json.dumps(out, indent=2) + "\n")
        world.stop()


def table(r: dict[str, Any]) -> str:
    names = list(r["verdict"])
    head = "   s | load | created | live | " + " | ".join(f"{n} RSS MB, fds" for n in names)
    lines = [head]
    for s in r["samples"]:
        cells = " | ".join(f"{s[n]['rss_mb']:>7.1f}, {s[n]['fds']:>3}" for n in names)
        lines.append(
            f"{s['seconds']:>4} | {s['load']:>4.1f} | {s['pods_created']:>7} | "
            f"{s['pods_live']:>4} | {cells}"
        )
    for n, v in r["verdict"].items():
        lines.append(
            f"{n}: RSS {v['rss_delta_mb']:+.1f} MB (allowed {v['rss_allowed_mb']:.1f}), "
            f"fds {v['fd_delta']:+d} after {r['baseline_seconds']} s: "
            + ("flat" if v["flat"] else "NOT flat")
        )
    lines.append(f"no loss: {r['no_loss']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=0.5, help="pods created per second")
    parser.add_argument("--life", type=float, default=60, help="seconds each pod runs")
    parser.add_argument("--sample", type=float, default=120, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=300, help="baseline sample after")
    parser.add_argument("--tolerance", type=float, default=0.10, help="RSS growth allowed")
    parser.add_argument("--out", default="soak.json", help="file name under bench/out/")
    args = parser.parse_args()
    dest = REPO / "bench" / "out" / args.out
    dest.parent.mkdir(exist_ok=True)
    before = machine.start()
    result = asyncio.run(run(args, dest, before))
    # no peer to compare with: each component's RSS at the end / after the warm-up
    base = next(s for s in result["samples"] if s["seconds"] >= args.warmup)
    last = result["samples"][-1]
    result["ratios"] = {
        f"{n} RSS at the end / after warm-up": last[n]["rss_mb"] / base[n]["rss_mb"]
        for n in result["verdict"]
    }
    print(table(result))
    dest.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
