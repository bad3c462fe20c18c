"""What a kubelet promises about a pod, kept inside the job: probes, lifecycle hooks and
restartPolicy, through the real control plane, VK, API server and plugin (local, and SLURM
with the host runtime on the test world's real SLURM)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.k8s import K8sInfo
from tests.helpers.podman import BUSYBOX_IMAGE, ensure_podman
from tests.helpers.vk import RunningVK, local_vk, plugin_vk, slurm_vk
from tests.helpers.world import until

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "slurm"])
async def vk(
    request: pytest.FixtureRequest, k8s: K8sInfo, tmp_path: Path
) -> AsyncIterator[RunningVK]:
    if request.param == "local":
        async with local_vk(k8s, tmp_path, "vk-kl-local") as (running, _):
            yield running
    else:
        slurm = request.getfixturevalue("slurm")
        async with slurm_vk(k8s, slurm, tmp_path, "vk-kl-slurm") as running:
            yield running


def container(p: dict[str, Any] | None) -> dict[str, Any]:
    statuses = ((p or {}).get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


def condition(p: dict[str, Any], kind: str) -> str:
    for c in p["status"].get("conditions") or []:
        if c["type"] == kind:
            return str(c["status"])
    return ""


def exec_probe(command: str, **fields: Any) -> dict[str, Any]:
    return {"exec": {"command": ["sh", "-c", command]}, "periodSeconds": 1, **fields}


async def events(vk: RunningVK, pod: str) -> list[tuple[str, str]]:
    out = await vk.kubectl(
        "get", "events", "-n", vk.ns, "--field-selector", f"involvedObject.name={pod}", "-o", "json"
    )
    assert out.returncode == 0, out.stderr
    return [(e["reason"], e["message"]) for e in json.loads(out.stdout)["items"]]


async def apply(vk: RunningVK, name: str, c: dict[str, Any], **spec: Any) -> None:
    manifest = vk.pod_manifest(name, [{"name": "main", "image": "none", **c}], **spec)
    out = await vk.kubectl("apply", "-f", "-", input=manifest)
    assert out.returncode == 0, out.stderr


async def test_readiness_probe_keeps_the_pod_not_ready_until_it_passes(
    vk: RunningVK, tmp_path: Path
) -> None:
    flag = tmp_path / "ready-flag"
    probe = exec_probe(f"test -f {flag}", failureThreshold=1)
    await apply(vk, "web", {"command": ["sleep", "300"], "readinessProbe": probe})
    running = await vk.wait_pod("web", lambda p: "running" in container(p).get("state", {}))
    assert running["status"]["phase"] == "Running"
    assert (container(running)["ready"], container(running)["started"]) == (False, True)
    assert (condition(running, "Ready"), condition(running, "ContainersReady")) == ("False",) * 2
    seen = await until(
        lambda: _matching(events(vk, "web"), "Unhealthy", "Readiness probe failed"),
        what="Readiness probe failed event",
    )
    assert seen
    flag.touch()
    ready = await vk.wait_pod("web", lambda p: container(p).get("ready") is True)
    assert (condition(ready, "Ready"), condition(ready, "ContainersReady")) == ("True",) * 2
    assert container(ready)["restartCount"] == 0


async def _matching(got: Any, reason: str, text: str) -> list[tuple[str, str]]:
    return [(r, m) for r, m in await got if r == reason and text in m]


async def test_failing_liveness_restarts_the_container_with_back_off(vk: RunningVK) -> None:
    probe = exec_probe("exit 1", failureThreshold=1)
    await apply(
        vk, "hung", {"command": ["sleep", "300"], "livenessProbe": probe}, restartPolicy="Always"
    )
    backoff = await vk.wait_pod(
        "hung",
        lambda p: (
            container(p).get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
        ),
        90,
    )
    c = container(backoff)
    assert backoff["status"]["phase"] == "Running"
    assert c["restartCount"] == 1 and c["ready"] is False
    assert c["lastState"]["terminated"]["exitCode"] == 143  # SIGTERM from the kill
    again = await vk.wait_pod("hung", lambda p: container(p).get("restartCount", 0) >= 2, 60)
    assert again["status"]["phase"] == "Running"
    got = await events(vk, "hung")
    assert ("Killing", "Container main failed liveness probe, will be restarted") in got
    assert any(r == "Unhealthy" and m.startswith("Liveness probe failed") for r, m in got)
    assert any(r == "BackOff" and "restarting failed container main" in m for r, m in got)


async def test_failing_liveness_with_restart_policy_never_fails_the_pod(vk: RunningVK) -> None:
    probe = exec_probe("exit 1", failureThreshold=2)
    await apply(vk, "dies", {"command": ["sleep", "300"], "livenessProbe": probe})
    failed = await vk.wait_pod("dies", lambda p: p["status"].get("phase") == "Failed", 60)
    c = container(failed)
    assert c["state"]["terminated"]["exitCode"] == 143
    assert c["restartCount"] == 0
    assert ("Killing", "Container main failed liveness probe") in await events(vk, "dies")


async def test_startup_probe_holds_back_liveness_until_it_succeeds(
    vk: RunningVK, tmp_path: Path
) -> None:
    flag = tmp_path / "started-flag"
    spec = {
        "command": ["sleep", "300"],
        "startupProbe": exec_probe(f"test -f {flag}", failureThreshold=1000),
        "livenessProbe": exec_probe("exit 1", failureThreshold=1),
    }
    await apply(vk, "slow", spec)
    await until(
        lambda: _at_least(events(vk, "slow"), "Startup probe failed", 3),
        what="three failed startup probes",
    )
    waiting = await vk.pod("slow")
    assert "running" in container(waiting)["state"]
    assert (container(waiting)["started"], container(waiting)["ready"]) == (False, False)
    assert not [m for _, m in await events(vk, "slow") if m.startswith("Liveness")]
    flag.touch()
    failed = await vk.wait_pod("slow", lambda p: p["status"].get("phase") == "Failed", 60)
    assert container(failed)["state"]["terminated"]["exitCode"] == 143
    assert [m for _, m in await events(vk, "slow") if m.startswith("Liveness probe failed")]


async def _at_least(got: Any, text: str, n: int) -> bool:
    return len([m for _, m in await got if m.startswith(text)]) >= n


async def test_post_start_hook_finishes_before_the_container_is_running(
    vk: RunningVK, tmp_path: Path
) -> None:
    marker = tmp_path / "post-start"
    hook = {"exec": {"command": ["sh", "-c", f"sleep 2; touch {marker}"]}}
    await apply(vk, "hooked", {"command": ["sleep", "300"], "lifecycle": {"postStart": hook}})
    # the hook takes 2 s: a container reported Running at its start would be seen first
    running = await vk.wait_pod("hooked", lambda p: "running" in container(p).get("state", {}))
    assert marker.exists(), "Running was reported before the postStart hook ended"
    assert running["status"]["phase"] == "Running"


async def test_failed_post_start_hook_kills_the_container(vk: RunningVK) -> None:
    hook = {"exec": {"command": ["sh", "-c", "echo no database; exit 1"]}}
    await apply(vk, "nohook", {"command": ["sleep", "300"], "lifecycle": {"postStart": hook}})
    failed = await vk.wait_pod("nohook", lambda p: p["status"].get("phase") == "Failed", 60)
    assert container(failed)["state"]["terminated"]["exitCode"] == 143
    got = await events(vk, "nohook")
    assert ("FailedPostStartHook", "PostStart hook failed: no database") in got


async def test_pre_stop_hook_runs_before_sigterm_on_delete(vk: RunningVK, tmp_path: Path) -> None:
    hooked, termed = tmp_path / "pre-stop", tmp_path / "term-after-pre-stop"
    main = f'trap "test -f {hooked} && touch {termed}; exit 0" TERM; echo up; sleep 300 & wait'
    spec = {
        "command": ["sh", "-c", main],
        "lifecycle": {"preStop": {"exec": {"command": ["touch", str(hooked)]}}},
    }
    await apply(vk, "stops", spec, terminationGracePeriodSeconds=10)
    await vk.wait_pod("stops", lambda p: "running" in container(p).get("state", {}))
    out = await vk.kubectl("delete", "pod", "stops", "-n", vk.ns, "--timeout=60s")
    assert out.returncode == 0, out.stderr
    assert hooked.exists(), "the preStop hook did not run"
    assert termed.exists(), "the container did not get SIGTERM after the preStop hook"


async def test_probe_the_backend_cannot_run_is_refused_naming_the_field(vk: RunningVK) -> None:
    probe = {"grpc": {"port": 9000}}
    await apply(vk, "grpc", {"command": ["sleep", "30"], "readinessProbe": probe})
    failed = await vk.wait_pod("grpc", lambda p: p["status"].get("phase") == "Failed")
    assert failed["status"]["reason"] == "ProviderFailed"
    assert "spec.containers[0].readinessProbe.grpc: not supported" in failed["status"]["message"]


@pytest.fixture(params=["local", "slurm"])
async def podman_vk(
    request: pytest.FixtureRequest, k8s: K8sInfo, tmp_path: Path
) -> AsyncIterator[RunningVK]:
    ensure_podman()
    config = {"runtime": "podman"}
    if request.param == "local":
        async with plugin_vk(k8s, tmp_path, "vk-kl-podman", "local", config) as running:
            yield running
    else:
        slurm = request.getfixturevalue("slurm")
        async with slurm_vk(k8s, slurm, tmp_path, "vk-kl-podman", config) as running:
            yield running


async def test_exec_probe_runs_inside_the_podman_container(podman_vk: RunningVK) -> None:
    # the file exists only in the container's own file system: a probe run on the host
    # would never see it
    main = "sleep 2; touch /tmp/ready-inside; sleep 300"
    spec = {
        "image": BUSYBOX_IMAGE,
        "command": ["sh", "-c", main],
        "readinessProbe": exec_probe("test -f /tmp/ready-inside", failureThreshold=1),
    }
    await apply(podman_vk, "boxed", spec)
    ready = await podman_vk.wait_pod("boxed", lambda p: container(p).get("ready") is True, 120)
    assert condition(ready, "Ready") == "True"
