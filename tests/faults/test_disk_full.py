"""The SLURM plugin's disk full (a 2 MB tmpfs over its jobs directory, filled up): a create
fails with a clear error and leaves nothing half-written, the pod ends Failed with that
message, a pod that was already running keeps being tracked (it ends as its job does), and
once space is freed new pods run again."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.faults import FaultWorld, fill, small_tmpfs
from tests.helpers.k8s import K8sInfo
from tests.helpers.slurm import SlurmInfo

pytestmark = pytest.mark.integration


@pytest.fixture
async def world(k8s: K8sInfo, slurm: SlurmInfo, tmp_path: Path) -> AsyncIterator[FaultWorld]:
    w = FaultWorld(tmp_path, k8s, slurm.partition)
    with small_tmpfs(w.jobs_dir, "2m"):
        await w.start()
        try:
            yield w
        finally:
            await asyncio.to_thread(w.stop)


def exit_code(p: dict[str, Any]) -> Any:
    return p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]


async def test_a_full_disk_fails_new_pods_clearly_and_keeps_tracking_the_others(
    world: FaultWorld, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    world.create(world.shell("before", f"while [ ! -e {go} ]; do sleep 0.2; done; echo done"))
    await world.pod_when("before", "Running")

    filler = fill(world.jobs_dir)
    world.create(world.shell("full", "echo never"))
    failed = await world.pod_when("full", "Failed")
    assert failed["status"]["reason"] == "ProviderFailed"
    message = failed["status"]["message"]
    assert "No space left on device" in message, message
    assert str(world.jobs_dir) in message, message  # says where space is missing
    assert "Traceback" not in message and "internal error" not in message, message
    uid = failed["metadata"]["uid"]
    assert not (world.jobs_dir / uid).exists(), "a half-written pod directory was left"
    db = sqlite3.connect(world.root / "plugin" / "state" / "jobs.sqlite")
    try:
        rows = db.execute("SELECT uid FROM jobs").fetchall()
    finally:
        db.close()
    assert uid not in {r[0] for r in rows}, "a record of the refused pod was kept"

    # the pod that ran before is still tracked while the disk is full: it ends as its job
    # does (the job cannot write its exit file there; SLURM's end state stands in)
    go.touch()
    done = await world.pod_when("before", "Succeeded")
    assert exit_code(done) == 0

    filler.unlink()
    world.create(world.shell("after", "exit 0"))
    after = await world.pod_when("after", "Succeeded")
    assert exit_code(after) == 0
