"""End to end: a pod on the virtual node goes through the real control plane, the VK, the API
server and the SLURM plugin into the real SLURM (host runtime), and back."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from interlink_vk.config import JOB_ID_ANNOTATION
from tests.helpers.k8s import K8sInfo
from tests.helpers.slurm import SlurmInfo
from tests.helpers.vk import RunningVK, slurm_vk, token_volume, token_watcher

pytestmark = pytest.mark.integration


@pytest.fixture
async def vk(k8s: K8sInfo, slurm: SlurmInfo, tmp_path: Path) -> AsyncIterator[RunningVK]:
    async with slurm_vk(k8s, slurm, tmp_path, "vk-slurm") as running:
        yield running


def state(p: dict[str, Any]) -> dict[str, Any]:
    statuses = (p.get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0].get("state") or {})


async def test_pod_queued_in_slurm_then_runs_and_shows_its_logs(vk: RunningVK) -> None:
    manifest = vk.pod_manifest(
        "analysis",
        [
            {
                "name": "main",
                "image": "none",
                "command": ["sh", "-c", "echo hello from $(hostname); echo result=42"],
            }
        ],
        annotations={"slurm-job.vk.io/flags": "--hold"},
    )
    out = await vk.kubectl("apply", "-f", "-", input=manifest)
    assert out.returncode == 0, out.stderr
    held = await vk.wait_pod(
        "analysis", lambda p: state(p).get("waiting", {}).get("reason", "").startswith("Queued")
    )
    assert held["status"]["phase"] == "Pending"
    assert state(held)["waiting"]["reason"] == "Queued: JobHeldUser"
    job = held["metadata"]["annotations"][JOB_ID_ANNOTATION]
    assert job.isdigit()
    subprocess.run(["scontrol", "release", job], check=True)
    done = await vk.wait_pod("analysis", lambda p: p["status"].get("phase") == "Succeeded")
    assert state(done)["terminated"]["exitCode"] == 0
    logs = await vk.kubectl("logs", "analysis", "-n", vk.ns)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.splitlines()[1] == "result=42"


async def test_kubectl_delete_cancels_the_running_job(vk: RunningVK) -> None:
    manifest = vk.pod_manifest(
        "long", [{"name": "main", "image": "none", "command": ["sleep", "300"]}]
    )
    await vk.kubectl("apply", "-f", "-", input=manifest)
    running = await vk.wait_pod("long", lambda p: p["status"].get("phase") == "Running")
    job = running["metadata"]["annotations"][JOB_ID_ANNOTATION]
    out = await vk.kubectl("delete", "pod", "long", "-n", vk.ns, "--timeout=60s")
    assert out.returncode == 0, out.stderr
    queue = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", job, "-o", "%T"], capture_output=True, text=True
    ).stdout.strip()
    assert queue in ("", "CANCELLED", "COMPLETING", "COMPLETED"), queue
    assert queue != "RUNNING"


async def test_service_account_token_is_refreshed_inside_the_running_job(
    k8s: K8sInfo, slurm: SlurmInfo, tmp_path: Path
) -> None:
    # a 600 s token (the least TokenRequest allows) renewed after 3 s instead of 480 s
    async with slurm_vk(k8s, slurm, tmp_path, "vk-rotate", token_refresh_fraction=0.005) as vk:
        out = await vk.kubectl("create", "serviceaccount", "analyst", "-n", vk.ns)
        assert out.returncode == 0, out.stderr
        manifest = vk.pod_manifest(
            "rotates",
            [token_watcher(image="none")],
            serviceAccountName="analyst",
            volumes=[token_volume(600)],
        )
        out = await vk.kubectl("apply", "-f", "-", input=manifest)
        assert out.returncode == 0, out.stderr
        done = await vk.wait_pod(
            "rotates", lambda p: p["status"].get("phase") in ("Succeeded", "Failed"), 90
        )
        logs = await vk.kubectl("logs", "rotates", "-n", vk.ns)
        assert done["status"]["phase"] == "Succeeded", logs.stdout
        changed, token = logs.stdout.splitlines()[:2]
        assert changed == "changed" and token.count(".") == 2  # a JWT
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        out = await vk.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review))
        assert out.returncode == 0, out.stderr
        status = json.loads(out.stdout)["status"]
        assert status["authenticated"] is True, status
        assert status["user"]["username"] == f"system:serviceaccount:{vk.ns}:analyst"


async def test_a_running_job_reports_its_compute_nodes_address_as_the_pod_ip(
    vk: RunningVK,
) -> None:
    """What a hub's proxy or a Dask scheduler dials to reach a server the job runs: the batch
    host's NodeAddr (127.0.0.1 in the test world's slurm.conf), taken while the job runs."""
    manifest = vk.pod_manifest(
        "server", [{"name": "main", "image": "none", "command": ["sleep", "60"]}]
    )
    out = await vk.kubectl("apply", "-f", "-", input=manifest)
    assert out.returncode == 0, out.stderr
    running = await vk.wait_pod("server", lambda p: p["status"].get("phase") == "Running")
    if not running["status"].get("podIP"):  # the address may come one cycle after Running
        running = await vk.wait_pod("server", lambda p: bool(p["status"].get("podIP")))
    assert running["status"]["podIP"] == "127.0.0.1"
    assert running["status"]["podIPs"] == [{"ip": "127.0.0.1"}]
    await vk.kubectl("delete", "pod", "server", "-n", vk.ns, "--wait=false")
