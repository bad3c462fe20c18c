"""The edge unreachable for 60 s: the API server's port blackholed for real (iptables drops
every packet to it, so calls hang as to a host that went away). The virtual node says the edge
is unreachable, no pod is lost or marked Failed, and once the edge is back statuses flow again
and new pods run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.faults import FaultWorld, blackholed, iptables_works
from tests.helpers.k8s import K8sInfo
from tests.helpers.slurm import SlurmInfo
from tests.helpers.world import need, until

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 60
RECOVERY_SECONDS = 180
"""After the edge is back, pods show their jobs' states within this bound (docs/faults.md):
calls that hung in the outage time out (edge.timeout_seconds, 60 s) before the next ones go."""


@pytest.fixture
async def world(k8s: K8sInfo, slurm: SlurmInfo, tmp_path: Path) -> AsyncIterator[FaultWorld]:
    need(iptables_works(), "iptables (as root) is needed to blackhole the edge's port")
    w = FaultWorld(tmp_path, k8s, slurm.partition)
    await w.start()
    try:
        yield w
    finally:
        await asyncio.to_thread(w.stop)


def connectivity(world: FaultWorld, status: str) -> dict[str, Any] | None:
    """The node's InterLinkConnectivity condition if its status is ``status``."""
    condition = world.node_condition("InterLinkConnectivity")
    return condition if condition.get("status") == status else None


def exit_code(p: dict[str, Any]) -> Any:
    return p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]


async def test_edge_unreachable_for_60_s_loses_nothing_and_recovers(
    world: FaultWorld, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    world.create(world.shell("running", f"while [ ! -e {go} ]; do sleep 0.2; done; exit 3"))
    await world.pod_when("running", "Running")
    condition = world.node_condition("InterLinkConnectivity")
    assert condition["status"] == "True", condition

    with blackholed(world.api_port):
        cut = time.monotonic()
        down = await until(
            lambda: asyncio.to_thread(connectivity, world, "False"),
            timeout=OUTAGE_SECONDS,
            what="the node saying the edge is unreachable",
        )
        assert down["reason"] == "EdgeUnreachable", down
        ready = world.node_condition("Ready")
        assert ready["status"] == "False", ready
        assert "unreachable" in ready["message"], ready
        go.touch()  # the running pod's job ends while nobody can see it
        world.create(world.shell("queued", "exit 0"))  # a pod created during the outage
        # the outage lasts its full 60 s (this is the fault, not a wait for a condition)
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - cut)))
        during = {p["metadata"]["name"]: p["status"].get("phase") for p in world.pods()}
        assert during == {"running": "Running", "queued": "Pending"}, during

    back = await until(
        lambda: asyncio.to_thread(connectivity, world, "True"),
        timeout=RECOVERY_SECONDS,
        what="the node saying the edge is reachable again",
    )
    assert back["reason"] == "EdgeReachable", back
    ended = await world.pod_when("running", "Failed", timeout=RECOVERY_SECONDS)
    assert exit_code(ended) == 3  # its job's own exit code, not a lost pod
    assert ended["status"].get("reason") != "ProviderLost", ended["status"]
    queued = await world.pod_when("queued", "Succeeded", timeout=RECOVERY_SECONDS)
    assert exit_code(queued) == 0
    world.create(world.shell("after", "exit 0"))
    after = await world.pod_when("after", "Succeeded", timeout=RECOVERY_SECONDS)
    assert exit_code(after) == 0
