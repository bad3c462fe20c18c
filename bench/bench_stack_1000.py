"""1,000 pods at once through the whole stack to SLURM (Kubernetes → ``interlink vk`` → API
server → SLURM plugin, ``runtime: host``) against 1,000 raw ``sbatch`` of the same jobs, on the
same SLURM in the same run.

Each job asks for exactly what the plugin asks for a pod requesting ``cpu: 1, memory: 16Mi``:
``--cpus-per-task=1 --mem=16M`` on the world's partition, running ``sleep --life``. The world's
node has 64 CPUs with ``OverSubscribe=FORCE:4``: at most 256 such jobs run at once, so the
1,000 go through in waves, and the figure is the time from the first submission until every
job has started (seen ``RUNNING`` by ``squeue``, polled every 0.5 s, for raw ``sbatch``; the pod
seen ``Running`` by a watch, for the stack). Both sides submit 16 at a time (the VK's default
create concurrency). The order is raw, stack, raw (``--rounds`` raw/stack pairs and a closing
raw side): the stack's figure is compared with the mean of the raw sides around it.

The SLURM plugin announces ``--announce-cpu`` CPUs (default: one per pod), so that Kubernetes
binds every pod at once and the jobs wait in SLURM's queue, as the raw jobs do. With the
plugin's default (``--announce-cpu 0``: what SLURM runs at once, 256 here), Kubernetes binds a
pod only when one before it ends, and the figure measures that wave-by-wave admission instead.

Nothing lost: every pod got one job id, ``sacct`` holds exactly one job per pod (by job name,
``<namespace>-<pod>``) and it is the one on the pod.

    .venv/bin/python bench/bench_stack_1000.py [--n 1000] [--life 20] [--rounds 1]

Prints a table and writes bench/out/stack_1000.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
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
import machine  # noqa: E402  (bench/, next to this script)

from interlink_core.names import JOB_ID_ANNOTATION  # noqa: E402
from interlink_vk.kube import Kube  # noqa: E402
from tests.helpers.k8s import ensure_k8s  # noqa: E402
from tests.helpers.slurm import ensure_slurm  # noqa: E402
from tests.helpers.vk_world import World  # noqa: E402

CONCURRENCY = 16
POLL = 0.5
RESOURCES = {"cpu": "1", "memory": "16Mi"}
SBATCH_RESOURCES = ["--cpus-per-task=1", "--mem=16M"]  # what the plugin makes of RESOURCES


def squeue_states(name: str) -> dict[str, str]:
    """State of each job named ``name`` still in the queue."""
    out = subprocess.run(
        ["squeue", "-h", "-n", name, "-o", "%i %T"], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


async def raw_side(n: int, life: int, partition: str, tmp: Path) -> dict[str, Any]:
    """``n`` raw ``sbatch`` (16 at a time): seconds until all submitted and all started."""
    name = f"raw1000-{uuid.uuid4().hex[:6]}"
    sem = asyncio.Semaphore(CONCURRENCY)
    jobs: list[str] = []
    argv = [
        "sbatch",
        "--parsable",
        f"--job-name={name}",
        f"--partition={partition}",
        f"--output={tmp}/raw-%j.out",
        *SBATCH_RESOURCES,
        "--wrap",
        f"sleep {life}",
    ]

    async def one() -> None:
        async with sem:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, err = await proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"sbatch failed: {err.decode().strip()}")
            jobs.append(out.decode().strip().split(";")[0])

    started: set[str] = set()

    async def watch() -> None:
        while True:
            states = await asyncio.to_thread(squeue_states, name)
            for job in jobs:  # left the queue: it ran (a job of ``life`` s cannot be missed)
                if states.get(job, "RUNNING") not in ("PENDING", "CONFIGURING"):
                    started.add(job)
            await asyncio.sleep(POLL)

    t0 = time.perf_counter()
    watcher = asyncio.create_task(watch())
    try:
        await asyncio.gather(*(one() for _ in range(n)))
        submitted = time.perf_counter() - t0
        while len(started) < n:
            await asyncio.sleep(0.1)
        all_started = time.perf_counter() - t0
    finally:
        watcher.cancel()
        subprocess.run(["scancel", *jobs], check=False)  # only the jobs this side submitted
    while squeue_states(name):
        await asyncio.sleep(1)
    return {"all_submitted": submitted, "all_started": all_started, "jobs": len(set(jobs))}


async def stack_side(world: World, kube: Kube, n: int, life: int) -> dict[str, Any]:
    """``n`` pods (16 POSTs at a time): seconds until all created and all seen Running."""
    prefix = f"s{uuid.uuid4().hex[:5]}"
    names = [f"{prefix}-{i}" for i in range(n)]
    started: dict[str, float] = {}
    jobs: dict[str, str] = {}
    sem = asyncio.Semaphore(CONCURRENCY)

    def manifest(name: str) -> dict[str, Any]:
        pod = world.manifest(name, ["sleep", str(life)], automountServiceAccountToken=False)
        pod["spec"]["containers"][0]["resources"] = {"requests": RESOURCES}
        return pod

    async def watch() -> None:
        while True:
            try:
                params = {"watch": "true"}
                async with kube.api.call_api(
                    "GET", url="pods", namespace=world.ns, params=params, stream=True, timeout=None
                ) as resp:
                    async for line in resp.aiter_lines():
                        if not line.strip():
                            continue
                        pod = json.loads(line).get("object") or {}
                        name = pod["metadata"]["name"]
                        job = (pod["metadata"].get("annotations") or {}).get(JOB_ID_ANNOTATION)
                        if job:
                            jobs[name] = job
                        phase = (pod.get("status") or {}).get("phase")
                        if phase in ("Running", "Succeeded", "Failed"):
                            started.setdefault(name, time.perf_counter())
            except Exception as exc:  # the watch ends now and then: resume
                print(f"(watch restarted: {exc!r})", file=sys.stderr)
                await asyncio.sleep(0.2)

    async def one(name: str) -> None:
        async with sem:
            await kube.call("POST", "pods", namespace=world.ns, body=manifest(name))

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(1)  # the watch is established before the clock starts
    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(one(name) for name in names))
        submitted = time.perf_counter() - t0
        deadline = time.monotonic() + 1800
        while len(started) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        all_started = max(started.values()) - t0 if len(started) == n else float("nan")
        await asyncio.sleep(2)  # the last annotations arrive on the watch
    finally:
        watcher.cancel()
    answer = await kube.call("GET", "pods", namespace=world.ns)
    for pod in answer.get("items") or []:
        job = (pod["metadata"].get("annotations") or {}).get(JOB_ID_ANNOTATION)
        if job:
            jobs[pod["metadata"]["name"]] = job
    return {
        "all_submitted": submitted,
        "all_started": all_started,
        "pods_started": len(started),
        "names": names,
        "jobs": {n: jobs.get(n) for n in names},
    }


def sacct_jobs(since: str, prefix: str) -> dict[str, list[str]]:
    """Job ids by job name, for the jobs submitted since ``since`` whose name starts so."""
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-S", since, "-o", "JobID,JobName%200"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        job, _, name = line.partition("|")
        if name.startswith(prefix):
            found.setdefault(name, []).append(job)
    return found


async def no_loss(world: World, side: dict[str, Any], since: str) -> dict[str, Any]:
    """One job per pod, in Kubernetes and in ``sacct``, and they agree."""
    pod_jobs: dict[str, str | None] = side.pop("jobs")
    names: list[str] = side.pop("names")
    prefix = f"{world.ns}-"
    for _ in range(60):  # slurmdbd records a job a moment after it starts
        acct = sacct_jobs(since, prefix)
        if len(acct) >= len(names):
            break
        await asyncio.sleep(2)
    per_pod = [acct.get(f"{world.ns}-{n}", []) for n in names]
    return {
        "pods": len(names),
        "pods_with_a_job_id": sum(1 for j in pod_jobs.values() if j),
        "distinct_job_ids": len({j for j in pod_jobs.values() if j}),
        "pods_with_exactly_one_sacct_job": sum(1 for jobs in per_pod if len(jobs) == 1),
        "pods_with_more_than_one_sacct_job": sum(1 for jobs in per_pod if len(jobs) > 1),
        "sacct_job_is_the_pods": sum(
            1 for n, jobs in zip(names, per_pod, strict=True) if jobs == [pod_jobs[n]]
        ),
    }


async def clear_pods(world: World, kube: Kube) -> float:
    """Delete the namespace's pods; seconds until none is left (the VK scancels the jobs)."""
    t0 = time.perf_counter()
    answer = await kube.call("GET", "pods", namespace=world.ns)
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(name: str) -> None:
        async with sem:
            await kube.delete("pods", world.ns, name)

    await asyncio.gather(*(one(p["metadata"]["name"]) for p in answer.get("items") or []))
    while (await kube.call("GET", "pods", namespace=world.ns)).get("items"):
        await asyncio.sleep(2)
    return time.perf_counter() - t0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    k8s = ensure_k8s()
    slurm = ensure_slurm()
    root = Path(tempfile.mkdtemp(prefix="bench-stack-"))
    announce = args.announce_cpu if args.announce_cpu is not None else args.n
    plugin_settings = {"announce_cpu": announce} if announce else {}
    vk_settings = {"create_concurrency": args.create_concurrency} if args.create_concurrency else {}
    world = World(root, k8s, slurm.partition, plugin_settings, vk_settings)
    out: dict[str, Any] = {
        "n": args.n,
        "life_seconds": args.life,
        "announce_cpu": announce or "SLURM's (what it runs at once)",
        "vk_create_concurrency": args.create_concurrency or "the VK's default",
        "raw": [],
        "stack": [],
    }
    # SIGTERM (a background run cannot get SIGINT) cleans up like a finished run
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await world.start()
        kube = Kube(await kr8s.asyncio.api(kubeconfig=str(k8s.kubeconfig)))
        for _ in range(args.rounds):
            out["raw"].append(await raw_side(args.n, args.life, slurm.partition, root))
            print("raw:", json.dumps(out["raw"][-1]), flush=True)
            since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
            side = await stack_side(world, kube, args.n, args.life)
            side["no_loss"] = await no_loss(world, side, since)
            side["delete_all_seconds"] = await clear_pods(world, kube)
            out["stack"].append(side)
            print("stack:", json.dumps(side), flush=True)
        out["raw"].append(await raw_side(args.n, args.life, slurm.partition, root))
        print("raw:", json.dumps(out["raw"][-1]), flush=True)
        return out
    finally:
        world.stop()


def table(r: dict[str, Any]) -> str:
    lines = ["side  | all submitted s | all started s"]
    sides = [("raw", x) for x in r["raw"]]
    for i, s in enumerate(r["stack"]):
        sides.insert(2 * i + 1, ("stack", s))
    for name, s in sides:
        lines.append(f"{name:<5} | {s['all_submitted']:>15.1f} | {s['all_started']:>13.1f}")
    for i, s in enumerate(r["stack"]):
        lines.append(f"no loss (stack {i + 1}): {s['no_loss']}")
    lines.append(f"all started, stack / raw: {r['ratio_all_started']:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="pods (and raw jobs) per side")
    parser.add_argument("--life", type=int, default=20, help="seconds each job sleeps")
    parser.add_argument("--rounds", type=int, default=1, help="raw/stack pairs before a last raw")
    parser.add_argument(
        "--create-concurrency",
        type=int,
        default=0,
        help="the VK's create_concurrency (default: the VK's default)",
    )
    parser.add_argument(
        "--announce-cpu",
        type=int,
        default=None,
        help="the SLURM plugin's announce_cpu (default: --n, so every pod is bound at once and "
        "waits in SLURM's queue, as the raw jobs do; 0: the plugin's default, what SLURM runs at "
        "once, so the rest wait unscheduled in Kubernetes)",
    )
    parser.add_argument("--out", default="stack_1000.json", help="file name under bench/out/")
    args = parser.parse_args()
    before = machine.start()
    result = asyncio.run(run(args))
    result["machine"] = machine.finish(before)
    ratios = [
        s["all_started"]
        / statistics.mean([result["raw"][i]["all_started"], result["raw"][i + 1]["all_started"]])
        for i, s in enumerate(result["stack"])
    ]
    result["ratio_all_started"] = statistics.median(ratios)
    result["ratios"] = {
        "1,000 at once, all started: stack / raw sbatch (mean of the raw sides around it)": (
            result["ratio_all_started"]
        )
    }
    print(table(result))
    machine.save(result, args.out)


if __name__ == "__main__":
    main()
