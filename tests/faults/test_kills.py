"""A burst of 200 pods through VK → API server → SLURM plugin → SLURM while, each at a random
moment (seeded; the seed is printed), the VK, the API server and the plugin are killed with
SIGKILL and started again as a supervisor would, and slurmctld is restarted. Afterwards every
pod ended as its job did, none was lost, none was submitted twice, no job is without its pod."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from interlink_vk.config import JOB_ID_ANNOTATION
from tests.helpers.faults import FaultWorld, accounted_jobs, restart_slurmctld
from tests.helpers.k8s import K8sInfo
from tests.helpers.slurm import SlurmInfo
from tests.helpers.world import until

pytestmark = pytest.mark.integration

PODS = 200
FAULTS = ("vk", "api", "plugin", "slurmctld")
RECOVERY_SECONDS = 300
"""All 200 pods end (Succeeded or Failed, as their jobs did) within this many seconds of the
last fault: the bound docs/faults.md states."""


def seed() -> int:
    """The burst's random seed: INTERLINK_FAULT_SEED, or a fresh one (printed to rerun)."""
    value = int(os.environ.get("INTERLINK_FAULT_SEED") or random.randrange(1 << 30))
    print(f"fault suite seed: INTERLINK_FAULT_SEED={value}")
    return value


def exit_code(i: int) -> int:
    """Pod i's known outcome: every fifth pod exits 3, the others 0."""
    return 3 if i % 5 == 0 else 0


def pod(world: FaultWorld, i: int, rng: random.Random) -> dict[str, Any]:
    """Pod i: a job of 1-6 s that ends with its known exit code."""
    return world.shell(f"p{i:03d}", f"sleep {rng.uniform(1, 6):.1f}; exit {exit_code(i)}")


@pytest.fixture
async def world(k8s: K8sInfo, slurm: SlurmInfo, tmp_path: Path) -> AsyncIterator[FaultWorld]:
    w = FaultWorld(tmp_path, k8s, slurm.partition)
    await w.start()
    try:
        yield w
    finally:
        await asyncio.to_thread(w.stop)


def terminated(p: dict[str, Any]) -> dict[str, Any]:
    statuses = (p.get("status") or {}).get("containerStatuses") or [{}]
    return dict((statuses[0].get("state") or {}).get("terminated") or {})


async def inject(world: FaultWorld, fault: str, at: int) -> None:
    """Once ``at`` pods have reached the plugin (their directories exist), break ``fault``."""
    await until(
        lambda: sum(1 for _ in world.jobs_dir.iterdir()) >= at if world.jobs_dir.exists() else 0,
        timeout=RECOVERY_SECONDS,
        what=f"{at} pods at the plugin before the {fault} fault",
    )
    print(f"{time.strftime('%H:%M:%S')} fault: {fault} at {at} pods submitted")
    if fault == "slurmctld":
        await asyncio.to_thread(restart_slurmctld)
        return
    world.kill(fault)
    await asyncio.to_thread(world.restart, fault)


async def test_burst_of_200_pods_survives_kills_and_a_slurmctld_restart(
    world: FaultWorld,
) -> None:
    rng = random.Random(seed())
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 2))
    manifests = [pod(world, i, rng) for i in range(PODS)]
    order = list(FAULTS)
    rng.shuffle(order)
    moments = sorted(rng.sample(range(5, PODS), len(order)))
    plan = list(zip(order, moments, strict=True))
    print("faults planned:", plan)

    await asyncio.to_thread(world.create, *manifests)
    for fault, at in plan:
        await inject(world, fault, at)

    def all_ended() -> list[dict[str, Any]] | None:
        pods = world.pods()
        phases = [p["status"].get("phase") for p in pods]
        done = len(pods) == PODS and all(ph in ("Succeeded", "Failed") for ph in phases)
        return pods if done else None

    pods = await until(
        lambda: asyncio.to_thread(all_ended),
        timeout=RECOVERY_SECONDS,
        what=f"all {PODS} pods Succeeded or Failed after the faults",
    )
    by_uid = {p["metadata"]["uid"]: p for p in pods}
    assert len(by_uid) == PODS, "a pod was lost"

    def accounted() -> Any:
        jobs = accounted_jobs(world.jobs_dir, since)
        ended = all(j.state not in ("PENDING", "RUNNING", "COMPLETING") for j in jobs)
        return jobs if ended and {j.uid for j in jobs} >= set(by_uid) else None

    jobs = await until(
        lambda: asyncio.to_thread(accounted), timeout=120, what="every pod's job in sacct"
    )
    per_uid = Counter(j.uid for j in jobs)
    twice = {uid: n for uid, n in per_uid.items() if n > 1}
    assert not twice, f"pods submitted more than once (pod UID: jobs): {twice}"
    orphans = sorted(j.job_id for j in jobs if j.uid not in by_uid)
    assert not orphans, f"jobs without a pod: {orphans}"

    mismatched = []
    for job in jobs:
        p = by_uid[job.uid]
        i = int(p["metadata"]["name"][1:])
        want_phase, want_state = (
            ("Succeeded", "COMPLETED") if exit_code(i) == 0 else ("Failed", "FAILED")
        )
        seen = (
            p["metadata"]["annotations"].get(JOB_ID_ANNOTATION),
            p["status"]["phase"],
            terminated(p).get("exitCode"),
            job.state,
            job.exit_code,
        )
        if seen != (job.job_id, want_phase, exit_code(i), want_state, exit_code(i)):
            mismatched.append((p["metadata"]["name"], job.job_id, seen))
    assert not mismatched, f"pods that did not end as their job (name, job, seen): {mismatched}"
