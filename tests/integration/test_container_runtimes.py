"""Image semantics with a real container runtime: pods through the real control plane, a VK,
the API server and the SLURM plugin (real SLURM) or the local plugin, both with
``runtime: podman`` (tests/world/podman-up: Debian's podman + runc, a busybox image built
locally). Also the host runtime's default PATH on SLURM."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.k8s import K8sInfo
from tests.helpers.podman import PodmanInfo, ensure_podman, running_containers
from tests.helpers.slurm import SlurmInfo
from tests.helpers.vk import RunningVK, plugin_vk, slurm_vk
from tests.helpers.world import until

pytestmark = pytest.mark.integration

STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IMAGE_PATH = "/opt/tools/bin:" + STANDARD_PATH


@pytest.fixture(scope="session")
def podman() -> PodmanInfo:
    return ensure_podman()


@pytest.fixture(params=["slurm", "local"])
async def vk(
    request: pytest.FixtureRequest,
    k8s: K8sInfo,
    podman: PodmanInfo,
    tmp_path: Path,
) -> AsyncIterator[RunningVK]:
    """A virtual node whose plugin runs containers with podman."""
    if request.param == "slurm":
        slurm: SlurmInfo = request.getfixturevalue("slurm")
        async with slurm_vk(k8s, slurm, tmp_path, "vk-podman", {"runtime": "podman"}) as vk:
            yield vk
    else:
        async with plugin_vk(k8s, tmp_path, "vk-podman", "local", {"runtime": "podman"}) as vk:
            yield vk


def terminated(p: dict[str, Any], name: str) -> dict[str, Any]:
    for s in (p.get("status") or {}).get("containerStatuses") or []:
        if s["name"] == name:
            return dict((s.get("state") or {}).get("terminated") or {})
    return {}


def ended(p: dict[str, Any]) -> bool:
    return (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")


async def logs(vk: RunningVK, pod: str, container: str) -> list[str]:
    out = await vk.kubectl("logs", pod, "-c", container, "-n", vk.ns)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


async def test_image_entrypoint_cmd_path_env_user_and_working_dir(
    vk: RunningVK, podman: PodmanInfo
) -> None:
    image = podman.busybox
    manifest = vk.pod_manifest(
        "image",
        [
            # neither command nor args: the image's ENTRYPOINT with its CMD
            {"name": "plain", "image": image},
            # args only: the image's ENTRYPOINT with these args; the pod's env wins
            {
                "name": "args",
                "image": image,
                "args": ["from-args"],
                "env": [{"name": "IMAGE_GREETING", "value": "from-pod"}],
            },
            # command: replaces the ENTRYPOINT; the image's PATH finds its tool
            {
                "name": "tools",
                "image": image,
                "command": ["sh", "-c"],
                "args": ["echo $PATH; il-hello; id -u; pwd"],
                "workingDir": "/home/worker",
                "securityContext": {"runAsUser": 1000},
            },
        ],
    )
    out = await vk.kubectl("apply", "-f", "-", input=manifest)
    assert out.returncode == 0, out.stderr
    done = await vk.wait_pod("image", ended, timeout=120)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert await logs(vk, "image", "plain") == [
        "il-entry ran with: image-default-cmd",
        f"PATH={IMAGE_PATH}",
        "IMAGE_GREETING=hello-from-image",
    ]
    assert await logs(vk, "image", "args") == [
        "il-entry ran with: from-args",
        f"PATH={IMAGE_PATH}",
        "IMAGE_GREETING=from-pod",
    ]
    assert await logs(vk, "image", "tools") == [
        IMAGE_PATH,
        "il-hello from the image",
        "1000",
        "/home/worker",
    ]


async def test_read_only_mount_refuses_writes(vk: RunningVK, podman: PodmanInfo) -> None:
    # the shell's own complaints go nowhere: podman copies a container's stderr and stdout
    # separately, so in the one log they can cut into each other's lines under load
    script = (
        "echo data > /rw/file; cat /ro/file; "
        "if echo more 2>/dev/null > /ro/other; then echo WRITTEN; else echo REFUSED; fi; "
        "if rm /ro/file 2>/dev/null; then echo REMOVED; else echo KEPT; fi; pwd"
    )
    manifest = vk.pod_manifest(
        "readonly",
        [
            {
                "name": "main",
                "image": podman.busybox,
                "command": ["sh", "-c", script],
                "workingDir": "/rw",
                "volumeMounts": [
                    {"name": "shared", "mountPath": "/rw"},
                    {"name": "shared", "mountPath": "/ro", "readOnly": True},
                ],
            }
        ],
        volumes=[{"name": "shared", "emptyDir": {}}],
    )
    out = await vk.kubectl("apply", "-f", "-", input=manifest)
    assert out.returncode == 0, out.stderr
    done = await vk.wait_pod("readonly", ended, timeout=120)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert await logs(vk, "readonly", "main") == ["data", "REFUSED", "KEPT", "/rw"]


async def test_memory_limit_ends_in_oomkilled(vk: RunningVK, podman: PodmanInfo) -> None:
    manifest = vk.pod_manifest(
        "hungry",
        [
            {
                "name": "main",
                "image": podman.busybox,
                # dd allocates its 200 MB block and fills it
                "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"],
                "resources": {"limits": {"memory": "64Mi"}},
            }
        ],
    )
    out = await vk.kubectl("apply", "-f", "-", input=manifest)
    assert out.returncode == 0, out.stderr
    done = await vk.wait_pod("hungry", ended, timeout=120)
    assert done["status"]["phase"] == "Failed"
    term = terminated(done, "main")
    assert (term["reason"], term["exitCode"]) == ("OOMKilled", 137), term


async def test_deleted_pod_leaves_no_podman_container(vk: RunningVK, podman: PodmanInfo) -> None:
    manifest = vk.pod_manifest(
        "stubborn",
        [
            {
                "name": "main",
                "image": podman.busybox,
                # ignores SIGTERM: only a kill ends it
                "command": ["sh", "-c", "trap '' TERM; echo up; while :; do sleep 1; done"],
            }
        ],
    )
    out = await vk.kubectl("apply", "-f", "-", input=manifest)
    assert out.returncode == 0, out.stderr
    running = await vk.wait_pod(
        "stubborn", lambda p: (p.get("status") or {}).get("phase") == "Running", timeout=120
    )
    prefix = f"il-{running['metadata']['uid']}-"
    # the job marks the container started just before `podman run` creates it
    await until(lambda: running_containers(prefix) == [f"{prefix}main"], 30, "podman's container")
    out = await vk.kubectl("delete", "pod", "stubborn", "-n", vk.ns, "--timeout=90s")
    assert out.returncode == 0, out.stderr
    assert running_containers(prefix) == []


async def test_host_runtime_on_slurm_has_a_standard_path(
    k8s: K8sInfo, slurm: SlurmInfo, tmp_path: Path
) -> None:
    async with slurm_vk(k8s, slurm, tmp_path, "vk-path") as vk:
        manifest = vk.pod_manifest(
            "path",
            [
                {"name": "default", "image": "none", "command": ["printenv", "PATH"]},
                {
                    "name": "own",
                    "image": "none",
                    "command": ["printenv", "PATH"],
                    "env": [{"name": "PATH", "value": "/opt/site/bin:/bin"}],
                },
            ],
        )
        out = await vk.kubectl("apply", "-f", "-", input=manifest)
        assert out.returncode == 0, out.stderr
        done = await vk.wait_pod("path", ended, timeout=120)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        assert await logs(vk, "path", "default") == [STANDARD_PATH]
        assert await logs(vk, "path", "own") == ["/opt/site/bin:/bin"]


@pytest.mark.parametrize("backend", ["slurm", "local"])
async def test_host_runtime_tells_what_it_does_not_enforce_and_refuses_what_it_cannot_run(
    backend: str, k8s: K8sInfo, slurm: SlurmInfo, tmp_path: Path
) -> None:
    """The conformance table at submit (docs/pod-conformance.md): a pod setting fields the
    host runtime does not enforce runs, with one Warning Event per field; a pod asking for a
    Windows node ends ProviderFailed with the plugin's 400 naming spec.os.name."""
    config = {"runtime": "host"}
    if backend == "slurm":
        config["partition"] = slurm.partition
    async with plugin_vk(k8s, tmp_path, "vk-ro", backend, config) as vk:
        manifest = vk.pod_manifest(
            "ro",
            [
                {
                    "name": "main",
                    "image": "none",
                    "command": ["sleep", "1"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
                }
            ],
            volumes=[{"name": "data", "emptyDir": {}}],
            hostAliases=[{"ip": "10.1.2.3", "hostnames": ["db.example"]}],
        )
        out = await vk.kubectl("apply", "-f", "-", input=manifest)
        assert out.returncode == 0, out.stderr
        windows = vk.pod_manifest(
            "win",
            [{"name": "main", "image": "none", "command": ["true"]}],
            os={"name": "windows"},
        )
        out = await vk.kubectl("apply", "-f", "-", input=windows)
        assert out.returncode == 0, out.stderr

        async def warnings() -> dict[str, tuple[str, str]]:
            out = await vk.kubectl(
                "get",
                "events",
                "-n",
                vk.ns,
                "--field-selector",
                "involvedObject.name=ro,type=Warning",
                "-o",
                "json",
            )
            items = json.loads(out.stdout or '{"items": []}')["items"]
            found = {e["message"].split(":")[0]: (e["reason"], e["message"]) for e in items}
            wanted = {"spec.hostAliases", "spec.containers[0].volumeMounts"}
            return found if wanted <= set(found) else {}

        found = await until(warnings, timeout=90, what="the pod's FieldNotEnforced Events")
        assert found["spec.hostAliases"] == (
            "FieldNotEnforced",
            f"spec.hostAliases: not enforced on this node ({backend}, runtime host): "
            "containers see the node's /etc/hosts; use addresses or names the node resolves",
        )
        # the pod's own volume, and the service-account token Kubernetes mounts read-only
        reason, message = found["spec.containers[0].volumeMounts"]
        assert reason == "ReadOnlyNotEnforced"
        assert message.startswith(
            "spec.containers[0].volumeMounts: readOnly is not enforced by this node's runtime "
            "(host: the container runs as a process on the host and can write to data at "
            "/data, kube-api-access-"
        ), message
        assert message.endswith(
            " at /var/run/secrets/kubernetes.io/serviceaccount); ask for a node with a "
            "container runtime where it must hold"
        ), message

        failed = await vk.wait_pod("win", lambda p: p["status"].get("phase") == "Failed", 90)
        assert failed["status"]["reason"] == "ProviderFailed"
        assert (
            f"spec.os.name: not supported on this node ({backend}, runtime host): these "
            "nodes run Linux containers"
        ) in failed["status"]["message"]


async def test_local_runner_removes_its_containers_when_its_pod_directory_goes(
    k8s: K8sInfo, podman: PodmanInfo, tmp_path: Path
) -> None:
    """The plugin's state wiped while a pod runs: its runner stops the pod by itself, and no
    podman container is left behind (nobody could delete it any more)."""
    async with plugin_vk(k8s, tmp_path, "vk-orphan", "local", {"runtime": "podman"}) as vk:
        manifest = vk.pod_manifest(
            "orphan",
            [
                {
                    "name": "main",
                    "image": podman.busybox,
                    "command": ["sh", "-c", "trap '' TERM; echo up; while :; do sleep 1; done"],
                }
            ],
        )
        out = await vk.kubectl("apply", "-f", "-", input=manifest)
        assert out.returncode == 0, out.stderr
        running = await vk.wait_pod(
            "orphan", lambda p: (p.get("status") or {}).get("phase") == "Running", timeout=120
        )
        uid = running["metadata"]["uid"]
        prefix = f"il-{uid}-"
        assert running_containers(prefix) == [f"{prefix}main"]
        shutil.rmtree(tmp_path / "plugin" / "state" / "pods" / uid)
        await until(lambda: running_containers(prefix) == [], 60, "the container removed")
