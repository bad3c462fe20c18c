"""Dask scale-up on the same SLURM, interleaved: ``cluster.scale(N)`` → N workers connected
(``client.wait_for_workers(N)``) for

- ``jobqueue``: dask-jobqueue's ``SLURMCluster`` (the peer: one ``sbatch`` per worker);
- ``k8s``: ``InterLinkCluster`` in Kubernetes mode: worker pods through the test world's real
  control plane (kube-scheduler binds them to the virtual node), ``interlink vk`` as a process
  of its own with its default status settings, ``interlink api`` and ``interlink plugin slurm``
  (``runtime: host``);
- ``direct``: ``InterLinkCluster`` in direct mode against the same API server and plugin.

Every worker is ``python -m distributed.cli.dask_worker`` (nanny + worker, 1 thread, 256 MiB,
``--death-timeout 60``) started by a SLURM job with 1 CPU and 256 MiB. Each run uses a fresh
cluster object, started (with its Client) before the timer; the runs go jobqueue, k8s, direct,
jobqueue, ... so machine noise hits all three alike; each starts at a random phase of
slurmctld's 1 s scheduling tick, after the previous run's jobs have left ``squeue``.

Besides the timed figure, every run records when each stage was reached by the last of its N
workers (seconds after ``scale``): ``created`` (pod POST answered / direct create answered),
``bound`` (pod has a node; k8s), ``at_plugin`` (the plugin wrote the job script, right
before its sbatch; k8s and direct), ``submitted`` (sbatch returned: jobqueue's own call; k8s: the
VK wrote the job-id annotation; direct: same as created), ``started`` (the job script launched
the worker: EPOCHREALTIME written by the job), ``connected`` (the scheduler added the worker).

    .venv/bin/python bench/bench_dask_scale.py [--workers 16] [--runs 3] [--out PATH]

Prints a table and writes bench/out/dask_scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
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
sys.path.insert(0, str(REPO))

import kr8s.asyncio  # noqa: E402
import machine  # noqa: E402  (bench/, next to this script)
from dask_jobqueue.slurm import SLURMCluster, SLURMJob  # noqa: E402
from distributed import Client, Scheduler  # noqa: E402
from distributed.diagnostics.plugin import SchedulerPlugin  # noqa: E402

from interlink_core.names import JOB_ID_ANNOTATION  # noqa: E402
from interlink_dask import InterLinkCluster  # noqa: E402
from tests.helpers.k8s import ensure_k8s  # noqa: E402
from tests.helpers.slurm import ensure_slurm, scancel  # noqa: E402
from tests.helpers.vk_world import TOKEN, World  # noqa: E402

WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]
MEMORY = "256MiB"
DEATH_TIMEOUT = 60
VARIANTS = ("jobqueue", "k8s", "direct")
STAGES = ("created", "bound", "at_plugin", "submitted", "started", "connected")
WAIT_TIMEOUT = 300


# --- instrumentation --------------------------------------------------------------------------


class Stamps:
    """Wall-clock times (``time.time()``) of each worker's stages in one run."""

    def __init__(self, cpu: CPU) -> None:
        self.t0 = 0.0
        self.t1 = 0.0  # end of the timed part
        self.refreshes = 0
        self.cpu = cpu
        self.at: dict[str, dict[str, float]] = {s: {} for s in STAGES}

    def mark(self, stage: str, key: str, when: float | None = None) -> None:
        self.at[stage].setdefault(key, time.time() if when is None else when)

    def summary(self, n: int) -> dict[str, dict[str, float] | None]:
        """Per stage: seconds after scale() for the first, median and last worker (None when
        the stage does not apply or was not seen for all N)."""
        out: dict[str, dict[str, float] | None] = {}
        for stage, by_key in self.at.items():
            xs = sorted(v - self.t0 for v in by_key.values())
            out[stage] = (
                {"first": xs[0], "median": statistics.median(xs), "last": xs[-1]}
                if len(xs) >= n
                else None
            )
        return out


class Connected(SchedulerPlugin):
    """When the scheduler added each worker (the scheduler runs in this process)."""

    def __init__(self, stamps: Stamps) -> None:
        self.stamps = stamps

    def add_worker(self, scheduler: Scheduler, worker: str) -> None:
        self.stamps.mark("connected", worker)


CLK_TCK = os.sysconf("SC_CLK_TCK")
# the control plane and SLURM daemons, found by their exact process name
DAEMONS = ("kube-apiserver", "etcd", "kube-scheduler", "kube-controller-manager", "slurmctld")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def daemon_pids() -> dict[str, int]:
    out = {}
    for name in DAEMONS:
        found = subprocess.run(["pgrep", "-x", name[:15]], capture_output=True, text=True)
        if found.stdout.split():
            out[name] = int(found.stdout.split()[0])
    return out


class CPU:
    """CPU seconds each part of the world used while a run was timed (on 2 shared cores,
    every CPU second of the submission path is taken from the starting workers)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def begin(self) -> None:
        self.start = {k: cpu_seconds(p) for k, p in self.pids.items()}

    def end(self) -> None:
        self.used = {k: cpu_seconds(p) - self.start[k] for k, p in self.pids.items()}


STAMPS = Stamps(CPU({}))


class TimedSLURMJob(SLURMJob):
    """dask-jobqueue's job, noting when its ``sbatch`` returned."""

    async def _submit_job(self, script_filename: str) -> Any:
        out = await super()._submit_job(script_filename)  # type: ignore[no-untyped-call]
        STAMPS.mark("submitted", str(self.name))
        return out


class TimedSLURMCluster(SLURMCluster):  # type: ignore[misc]
    job_cls = TimedSLURMJob


def instrument(cluster: InterLinkCluster, stamps: Stamps, also: tuple[str, ...] = ()) -> None:
    """Note when each worker pod's create call returned, and count the cluster's refreshes
    of its worker states (in Kubernetes mode each is a LIST of the cluster's pods)."""
    backend = cluster.backend
    create, refresh = backend.create, backend.refresh

    async def timed_create(pod_name: str, scheduler: str) -> None:
        await create(pod_name, scheduler)
        for stage in ("created", *also):
            stamps.mark(stage, pod_name)

    async def counted_refresh() -> None:
        if stamps.t0 and not stamps.t1:
            stamps.refreshes += 1
        await refresh()

    backend.create = timed_create  # type: ignore[method-assign]
    backend.refresh = counted_refresh  # type: ignore[method-assign]


def started_times(jobs_dir: Path, uids: dict[str, str], stamps: Stamps) -> None:
    """When the plugin wrote each pod's job script, just before its ``sbatch`` (the script's
    mtime), and when the job launched the worker (the job's ``started`` file)."""
    for name, uid in uids.items():
        with contextlib.suppress(OSError):
            stamps.mark("at_plugin", name, (jobs_dir / uid / "job.sh").stat().st_mtime)
        path = jobs_dir / uid / "containers" / "worker" / "started"
        with contextlib.suppress(OSError, ValueError):
            stamps.mark("started", name, float(path.read_text().split()[0]))


def jobqueue_started(log_dir: Path, tag: str, stamps: Stamps) -> None:
    """When each jobqueue job script began (its prologue echoes EPOCHREALTIME)."""
    for path in log_dir.glob(f"{tag}-*.out"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in path.read_text().splitlines():
                if line.startswith("BENCH_STARTED "):
                    stamps.mark("started", path.stem, float(line.split()[1]))


# --- SLURM ------------------------------------------------------------------------------------


def our_jobs(tag: str) -> list[str]:
    """Ids of this run's jobs still in squeue (pending, running, completing, ...)."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i|%j"], capture_output=True, text=True, check=False
    ).stdout
    return [i for i, _, name in (ln.partition("|") for ln in out.splitlines()) if tag in name]


async def until_gone(tag: str, timeout: float = 180) -> float:
    """Wait until no job of ``tag`` is left in squeue (scancel them after ``timeout``)."""
    t0 = time.monotonic()
    while our_jobs(tag):
        if time.monotonic() - t0 > timeout:
            print(f"(jobs of {tag} still queued after {timeout:.0f} s: scancel)", file=sys.stderr)
            scancel(*our_jobs(tag))
            t0 = time.monotonic()
        await asyncio.sleep(0.5)
    return time.monotonic() - t0


# --- one run of each variant ------------------------------------------------------------------


async def timed_scale(client: Client, n: int, stamps: Stamps, scale: Callable[[int], Any]) -> float:
    """The measured part: scale(n) → n workers connected."""
    await asyncio.sleep(random.uniform(0, 1))  # a random phase of slurmctld's 1 s tick
    stamps.cpu.begin()
    stamps.t0 = time.time()
    t0 = time.perf_counter()
    out = scale(n)
    if isinstance(out, Awaitable):
        await out
    await client.wait_for_workers(n, timeout=WAIT_TIMEOUT)  # type: ignore[func-returns-value,misc]
    seconds = time.perf_counter() - t0
    stamps.t1 = time.time()
    stamps.cpu.end()
    return seconds


async def run_jobqueue(world: World, n: int, tag: str, stamps: Stamps) -> float:
    log_dir = world.root / "jobqueue" / tag
    log_dir.mkdir(parents=True)
    async with TimedSLURMCluster(
        asynchronous=True,
        cores=1,
        processes=1,
        memory=MEMORY,
        python=sys.executable,
        queue=world.partition,
        walltime="00:30:00",
        job_name=tag,
        log_directory=str(log_dir),
        death_timeout=DEATH_TIMEOUT,
        job_script_prologue=['echo "BENCH_STARTED $EPOCHREALTIME"'],
        scheduler_options={"host": "127.0.0.1", "dashboard_address": ":0"},
    ) as cluster:
        cluster.scheduler.add_plugin(Connected(stamps))
        async with Client(cluster, asynchronous=True) as client:  # type: ignore[no-untyped-call]
            seconds = await timed_scale(client, n, stamps, cluster.scale)
        jobqueue_started(log_dir, tag, stamps)
    return seconds


async def run_interlink(world: World, n: int, tag: str, stamps: Stamps, mode: str) -> float:
    common: dict[str, Any] = {
        "name": tag,
        "worker_command": WORKER,
        "cpu": 1,
        "memory": MEMORY,
        "processes": 1,
        "death_timeout": DEATH_TIMEOUT,
    }
    watcher: asyncio.Task[None] | None = None
    uids: dict[str, str] = {}
    if mode == "k8s":
        assert world.api is not None
        opts = {
            **common,
            "kubeconfig": world.k8s.kubeconfig,
            "namespace": world.ns,
            "node": world.node,
            "image": "none",  # SLURM runs the worker on the host (runtime: host)
        }
        watcher = asyncio.create_task(watch_pods(world, tag, stamps, uids))
    else:
        assert world.api is not None
        opts = {
            **common,
            "mode": "direct",
            "direct": {"url": world.api.url, "token": TOKEN},
            "state_dir": world.root / "direct-state",
        }
    try:
        async with InterLinkCluster(asynchronous=True, **opts) as cluster:
            assert isinstance(cluster.scheduler, Scheduler)
            cluster.scheduler.add_plugin(Connected(stamps))
            instrument(cluster, stamps, also=("submitted",) if mode == "direct" else ())
            async with Client(cluster, asynchronous=True) as client:  # type: ignore[no-untyped-call]
                seconds = await timed_scale(client, n, stamps, cluster.scale)
                if mode == "direct":
                    backend: Any = cluster.backend
                    uids = {k: v["metadata"]["uid"] for k, v in backend.pods.items()}
                started_times(world.jobs_dir, uids, stamps)
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    return seconds


async def watch_pods(world: World, tag: str, stamps: Stamps, uids: dict[str, str]) -> None:
    """Pod seen, bound to the node, job id written by the VK (a watch: no polling)."""
    api = await kr8s.asyncio.api(kubeconfig=str(world.k8s.kubeconfig))
    while True:
        try:
            async for _event, obj in api.watch(
                "pods", namespace=world.ns, label_selector=f"interlink.eu/dask-cluster={tag}"
            ):
                pod: dict[str, Any] = dict(obj.raw)
                name = pod["metadata"]["name"]
                uids[name] = pod["metadata"]["uid"]
                if (pod.get("spec") or {}).get("nodeName"):
                    stamps.mark("bound", name)
                if JOB_ID_ANNOTATION in (pod["metadata"].get("annotations") or {}):
                    stamps.mark("submitted", name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            print(f"(pod watch restarted: {exc!r})", file=sys.stderr)
            await asyncio.sleep(0.2)


# --- the benchmark ----------------------------------------------------------------------------


async def bench(root: Path, n: int, runs: int, variants: list[str]) -> dict[str, Any]:
    global STAMPS
    k8s = ensure_k8s()
    slurm = ensure_slurm()
    world = World(root, k8s, slurm.partition)
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    stages: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    refreshes: dict[str, list[int]] = {v: [] for v in variants if v != "jobqueue"}
    cpu: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    try:
        await world.start()
        pids = {**world.pids(), **daemon_pids(), "this process": os.getpid()}
        for r in range(runs):
            for variant in variants:
                tag = f"bsc-{variant[:3]}-{uuid.uuid4().hex[:5]}"
                STAMPS = stamps = Stamps(CPU(pids))
                try:
                    if variant == "jobqueue":
                        s = await run_jobqueue(world, n, tag, stamps)
                    else:
                        s = await run_interlink(world, n, tag, stamps, variant)
                        refreshes[variant].append(stamps.refreshes)
                finally:
                    await until_gone(tag)
                seconds[variant].append(s)
                stages[variant].append(stamps.summary(n))
                cpu[variant].append({k: round(v, 2) for k, v in stamps.cpu.used.items()})
                print(f"run {r + 1}/{runs} {variant:>8}: {s:6.2f} s", flush=True)
    finally:
        world.stop()
    medians = {v: statistics.median(xs) for v, xs in seconds.items()}
    out: dict[str, Any] = {
        "workers": n,
        "runs": runs,
        "slurm_partition": slurm.partition,
        "worker": {"cpu": 1, "memory": MEMORY, "processes": 1, "command": WORKER[1:]},
        "seconds": seconds,
        "median_seconds": medians,
    }
    for v in ("k8s", "direct"):
        if v in medians and "jobqueue" in medians:
            out[f"ratio_{v}_to_jobqueue"] = medians[v] / medians["jobqueue"]
    out["stages_seconds_after_scale"] = stages
    out["cluster_refreshes_while_timed"] = refreshes
    out["cpu_seconds_while_timed"] = cpu
    return out


def print_table(r: dict[str, Any]) -> None:
    n = r["workers"]
    runs = r["runs"]
    variants = list(r["seconds"])
    head = " | ".join(f"run {i + 1}" for i in range(runs))
    print(f"\n| scale({n}) → {n} connected | {head} | median | ratio to jobqueue |")
    print("|---" * (runs + 3) + "|")
    base = r["median_seconds"].get("jobqueue")
    for v in variants:
        cells = " | ".join(f"{x:.2f} s" for x in r["seconds"][v])
        med = r["median_seconds"][v]
        ratio = f"{med / base:.2f}" if base else "—"
        print(f"| {v} | {cells} | {med:.2f} s | {ratio} |")
    if "ratio_k8s_to_jobqueue" in r:
        print(f"\nratio k8s/jobqueue: {r['ratio_k8s_to_jobqueue']:.2f} (target ≤ 1.2)")
    if "ratio_direct_to_jobqueue" in r:
        print(f"ratio direct/jobqueue: {r['ratio_direct_to_jobqueue']:.2f}")
    print("\nlast worker reaching each stage, s after scale() (median over runs):")
    print("| variant | " + " | ".join(STAGES) + " |")
    print("|---" * (len(STAGES) + 1) + "|")
    for v in variants:
        row: list[str] = []
        for stage in STAGES:
            xs = [s[stage]["last"] for s in r["stages_seconds_after_scale"][v] if s[stage]]
            row.append(f"{statistics.median(xs):.2f}" if xs else "—")
        print(f"| {v} | " + " | ".join(row) + " |")
    for v, counts in r["cluster_refreshes_while_timed"].items():
        print(f"{v}: worker-state refreshes by the cluster while timed: {counts}")
    cpu = r["cpu_seconds_while_timed"]
    parts = list(next(iter(cpu.values()))[0]) if cpu and next(iter(cpu.values())) else []
    print("\nCPU seconds used while timed (median over runs):")
    print("| variant | " + " | ".join(parts) + " |")
    print("|---" * (len(parts) + 1) + "|")
    for v, runs_ in cpu.items():
        used = [f"{statistics.median(x[p] for x in runs_):.2f}" for p in parts]
        print(f"| {v} | " + " | ".join(used) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "dask_scale.json")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated subset of jobqueue,k8s,direct (for diagnosis; default: all)",
    )
    args = parser.parse_args()
    variants = [v for v in VARIANTS if v in args.variants.split(",")]
    root = Path(tempfile.mkdtemp(prefix="bench-dask-scale-"))
    before = machine.start()
    r = asyncio.run(bench(root, args.workers, args.runs, variants))
    r["machine"] = machine.finish(before)
    r["ratios"] = {
        f"scale({args.workers}) median, {v} / dask-jobqueue": r[f"ratio_{v}_to_jobqueue"]
        for v in ("k8s", "direct")
        if f"ratio_{v}_to_jobqueue" in r
    }
    r["command"] = " ".join(sys.argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(r, indent=2))
    print_table(r)
    print(f"\nwritten: {args.out} (logs: {root})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
