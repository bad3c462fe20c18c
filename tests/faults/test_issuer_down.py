"""The OIDC issuer down (killed with SIGKILL; tokens of one minute): while the VK's token is
still valid the API server keeps accepting it (its keys are cached) and pods run; once it has
expired callers get a 401 saying so and the virtual node reports the edge unreachable with the
reason; when the issuer is back (same keys and port) everything recovers without a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.faults import FaultWorld
from tests.helpers.issuer_process import start_issuer_process
from tests.helpers.k8s import K8sInfo
from tests.helpers.slurm import SlurmInfo
from tests.helpers.world import Issuer, stop, until

pytestmark = pytest.mark.integration

RECOVERY_SECONDS = 120
"""After the issuer is back, the node is Ready and new pods run within this bound
(docs/faults.md)."""


@pytest.fixture
async def issuer(tmp_path: Path) -> AsyncIterator[Issuer]:
    running = start_issuer_process(tmp_path / "issuer", token_minutes=1)
    try:
        yield running
    finally:
        stop(running.proc)


@pytest.fixture
async def world(
    k8s: K8sInfo, slurm: SlurmInfo, tmp_path: Path, issuer: Issuer
) -> AsyncIterator[FaultWorld]:
    secret = tmp_path / "client-secret"
    secret.write_text(issuer.info["clients"]["vk-cluster-a"])
    edge = {
        "oidc": {
            "issuer": issuer.url,
            "client_id": "vk-cluster-a",
            "client_secret_file": str(secret),
            "audience": issuer.audience,
            "ca_file": str(issuer.ca_file),
        }
    }
    w = FaultWorld(tmp_path, k8s, slurm.partition, auth={"oidc": issuer.oidc_config()}, edge=edge)
    await w.start()
    try:
        yield w
    finally:
        await asyncio.to_thread(w.stop)


def token_grants(issuer: Issuer) -> int:
    """How many tokens the issuer has handed out (its request log)."""
    log = Path(issuer.info["config_dir"]).parent / "issuer.log"
    return log.read_text(errors="replace").count("POST /token")


def connectivity(world: FaultWorld, status: str) -> dict[str, Any] | None:
    condition = world.node_condition("InterLinkConnectivity")
    return condition if condition.get("status") == status else None


def exit_code(p: dict[str, Any]) -> Any:
    return p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]


async def test_issuer_down_valid_tokens_work_expired_ones_get_401_and_all_recovers(
    world: FaultWorld, issuer: Issuer, tmp_path: Path
) -> None:
    token = issuer.client_token()  # the grant the VK uses too: tokens of one minute
    # the issuer goes down just after the VK renewed its token (at 4/5 of its lifetime)
    grants = token_grants(issuer)
    await until(lambda: token_grants(issuer) > grants, timeout=90, what="the VK renewing")
    stop(issuer.proc, 9)

    # its tokens still valid: the API server checks them with the keys it cached
    world.create(world.shell("while-valid", "exit 0"))
    done = await world.pod_when("while-valid", "Succeeded", timeout=45)
    assert exit_code(done) == 0
    assert connectivity(world, "True"), world.node_condition("InterLinkConnectivity")

    # expired: a caller gets a 401 that says so; the node reports the edge unreachable
    def status_answer() -> httpx.Response | None:
        resp = httpx.post(
            f"http://127.0.0.1:{world.api_port}/status",
            json=[],
            headers={"Authorization": f"Bearer {token}"},
        )
        return resp if resp.status_code != 200 else None

    refused = await until(
        lambda: asyncio.to_thread(status_answer), timeout=120, what="the token expired"
    )
    assert refused.status_code == 401
    assert refused.json() == {"error": "the token has expired: get a new one from the issuer"}
    down = await until(
        lambda: asyncio.to_thread(connectivity, world, "False"),
        timeout=120,
        what="the node reporting that the edge cannot be used",
    )
    assert down["reason"] == "EdgeUnreachable", down
    assert issuer.url in down["message"], down  # names the issuer it cannot reach
    world.create(world.shell("while-down", "exit 0"))

    # the issuer is back (same keys, port and certificate): no restart of anything else
    back = start_issuer_process(Path(issuer.info["config_dir"]).parent, again=True)
    issuer.proc = back.proc
    up = await until(
        lambda: asyncio.to_thread(connectivity, world, "True"),
        timeout=RECOVERY_SECONDS,
        what="the node saying the edge is reachable again",
    )
    assert up["reason"] == "EdgeReachable", up
    for name in ("while-down",):
        assert exit_code(await world.pod_when(name, "Succeeded", RECOVERY_SECONDS)) == 0
    world.create(world.shell("after", "exit 0"))
    assert exit_code(await world.pod_when("after", "Succeeded", RECOVERY_SECONDS)) == 0
    assert world.vk is not None and world.vk.poll() is None, "the VK restarted or died"
