"""`interlink vk` as a real process on the real control plane with a real edge: a Deployment of
20 replicas is scheduled onto the virtual node by kube-scheduler; the VK is killed with -9 in
the middle of the burst and started again; no pod is lost and none is submitted twice."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from interlink_core.embedded import EmbeddedEdge
from interlink_vk.config import JOB_ID_ANNOTATION, VK_TAINT_KEY
from tests.helpers.k8s import K8sInfo, kubectl, wait_until
from tests.helpers.vk import loopback_ip, start_vk_process
from tests.helpers.world import stop

pytestmark = pytest.mark.integration


def get_json(k8s: K8sInfo, *args: str) -> Any:
    out = kubectl(k8s, "get", *args, "-o", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def node_ready(k8s: K8sInfo, node: str) -> bool:
    out = kubectl(k8s, "get", "node", node, "-o", "json")
    if out.returncode != 0:
        return False
    conds = {c["type"]: c["status"] for c in json.loads(out.stdout)["status"].get("conditions", [])}
    return conds.get("Ready") == "True"


def test_deployment_of_20_survives_vk_kill_9(k8s: K8sInfo, tmp_path: Path) -> None:
    node = f"vk-proc-{uuid.uuid4().hex[:6]}"
    ns = f"t-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "vk.log"
    with EmbeddedEdge(state_dir=tmp_path / "edge") as edge:
        settings = {
            "status_interval_seconds": 0.5,
            "ping_interval_seconds": 1,
            "create_concurrency": 4,
            "internal_ip": loopback_ip(),
        }

        def start_vk() -> subprocess.Popen[bytes]:
            return start_vk_process(k8s, tmp_path, node, edge.url, edge.token, **settings)

        vk = start_vk()
        try:
            wait_until(lambda: node_ready(k8s, node), 30, "the virtual node to be Ready", log)
            kubectl(k8s, "create", "namespace", ns)
            deployment = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "workers", "namespace": ns},
                "spec": {
                    "replicas": 20,
                    "selector": {"matchLabels": {"app": "workers"}},
                    "template": {
                        "metadata": {"labels": {"app": "workers"}},
                        "spec": {
                            "nodeSelector": {"kubernetes.io/hostname": node},
                            "tolerations": [{"key": VK_TAINT_KEY, "operator": "Exists"}],
                            "terminationGracePeriodSeconds": 1,
                            "containers": [
                                {"name": "w", "image": "busybox", "command": ["sleep", "600"]}
                            ],
                        },
                    },
                },
            }
            out = kubectl(k8s, "apply", "-f", "-", input=json.dumps(deployment))
            assert out.returncode == 0, out.stderr

            def submitted() -> list[dict[str, Any]]:
                return [
                    p
                    for p in get_json(k8s, "pods", "-n", ns)["items"]
                    if JOB_ID_ANNOTATION in (p["metadata"].get("annotations") or {})
                ]

            wait_until(lambda: len(submitted()) >= 3, 60, "the burst to start", log)
            stop(vk, signal.SIGKILL)  # mid-burst
            vk = start_vk()

            def all_running() -> list[dict[str, Any]] | None:
                pods = get_json(k8s, "pods", "-n", ns)["items"]
                running = [p for p in pods if p["status"].get("phase") == "Running"]
                return pods if len(pods) == 20 and len(running) == 20 else None

            pods = wait_until(all_running, 120, "20 Running pods", log)
            assert all(p["spec"]["nodeName"] == node for p in pods)
            jobs = {p["metadata"]["annotations"][JOB_ID_ANNOTATION] for p in pods}
            assert len(jobs) == 20
            # exactly one job per pod at the edge: nothing lost, nothing submitted twice
            pod_dirs = list((tmp_path / "edge" / "plugin" / "pods").iterdir())
            assert len(pod_dirs) == 20
            assert {d.name for d in pod_dirs} == {p["metadata"]["uid"] for p in pods}

            # scaling down deletes through the VK, remotely first
            kubectl(k8s, "scale", "deployment", "workers", "-n", ns, "--replicas=0")
            wait_until(
                lambda: not get_json(k8s, "pods", "-n", ns)["items"],
                60,
                "the pods to be deleted",
                log,
            )
            wait_until(
                lambda: not list((tmp_path / "edge" / "plugin" / "pods").iterdir()),
                30,
                "the remote jobs to be gone",
                log,
            )
            vk.send_signal(signal.SIGTERM)
            assert vk.wait(20) == 0
        finally:
            stop(vk)
            kubectl(k8s, "delete", "namespace", ns, "--wait=false")
            kubectl(k8s, "delete", "node", node)
            kubectl(k8s, "delete", "lease", node, "-n", "kube-node-lease")
