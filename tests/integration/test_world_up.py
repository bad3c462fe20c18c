"""``tests/world/up``: the whole test world in one command (SLURM, control plane, a virtual
node on the local plugin and one on SLURM), checked with ``kubectl`` and ``interlink doctor``."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers.k8s import K8sInfo, kubectl
from tests.helpers.slurm import SlurmInfo
from tests.helpers.world import INTERLINK, REPO

pytestmark = pytest.mark.integration
NODES = Path("~/.local/state/interlink-world/nodes").expanduser()
NODES_UP = ("world-local", "world-slurm")


def world(action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "tests/world" / action)], capture_output=True, text=True, timeout=600
    )


K8S_STATE = Path("~/.local/state/interlink-world/k8s").expanduser()
DAEMONS = {  # pid file -> what runs
    **{NODES / n / f"{d}.pid": f"{d} of {n}" for n in NODES_UP for d in ("plugin", "api", "vk")},
    **{
        K8S_STATE / f"{d}.pid": d
        for d in ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager")
    },
    Path("/run/munge/munged.pid"): "munged",
    Path("/run/slurmctld.pid"): "slurmctld",
    Path("/run/slurmd.pid"): "slurmd",
}


def world_processes() -> dict[str, tuple[int, str]]:
    """Each daemon of the world: its pid and its start time (so a pid reused by a new
    process differs too); every one must be running."""
    found = {}
    for pidfile, what in DAEMONS.items():
        pid = int(pidfile.read_text().strip())
        stat = Path(f"/proc/{pid}/stat").read_text()  # FileNotFoundError: not running
        fields = stat.rsplit(")", 1)[1].split()
        assert fields[0] != "Z", f"{what} (pid {pid}) has ended"
        found[what] = (pid, fields[19])  # field 22 of stat: start time
    return found


def run_pod(k8s: K8sInfo, node: str, ns: str) -> dict[str, object]:
    name = f"hello-{node}"
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [{"key": "virtual-node.interlink/no-schedule", "operator": "Exists"}],
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "none", "command": ["echo", f"hi {node}"]}],
        },
    }
    out = kubectl(k8s, "apply", "-f", "-", input=json.dumps(manifest))
    assert out.returncode == 0, out.stderr
    deadline = time.monotonic() + 90
    pod: dict[str, object] = {}
    while time.monotonic() < deadline:
        pod = json.loads(kubectl(k8s, "get", "pod", name, "-n", ns, "-o", "json").stdout)
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):  # type: ignore[union-attr]
            break
        time.sleep(0.5)
    return pod


def test_world_up_gives_two_ready_virtual_nodes_that_run_pods(
    k8s: K8sInfo, slurm: SlurmInfo
) -> None:
    was_up = (NODES / "world-local" / "vk.pid").exists()
    out = world("up")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "NODES=world-local,world-slurm" in out.stdout
    ns = f"t-{uuid.uuid4().hex[:6]}"
    kubectl(k8s, "create", "namespace", ns)
    try:
        for node in ("world-local", "world-slurm"):
            pod = run_pod(k8s, node, ns)
            assert pod["status"]["phase"] == "Succeeded", pod  # type: ignore[index]
            logs = kubectl(k8s, "logs", f"hello-{node}", "-n", ns)
            assert logs.stdout.strip() == f"hi {node}", logs.stderr
        doctor = subprocess.run(
            [*INTERLINK, "doctor", "--kubeconfig", str(k8s.kubeconfig)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        for node in ("world-local", "world-slurm"):
            assert f"ok    virtual node {node} is Ready" in doctor.stdout, doctor.stdout
        before = world_processes()
        again = world("up")  # idempotent: nothing restarted
        assert again.returncode == 0, again.stderr
        assert world_processes() == before
    finally:
        kubectl(k8s, "delete", "namespace", ns, "--wait=false")
        if not was_up:
            down = world("down")
            assert down.returncode == 0, down.stderr
    if not was_up:
        nodes = kubectl(k8s, "get", "nodes", "-o", "name").stdout
        assert "world-local" not in nodes and "world-slurm" not in nodes


def test_doctor_says_when_the_cluster_cannot_be_reached(tmp_path: Path) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "
        "'https://127.0.0.1:9'}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
        "current-context: c\nusers: [{name: u, user: {token: x}}]\n"
    )
    out = subprocess.run(
        [*INTERLINK, "doctor", "--kubeconfig", str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 1
    assert "FAIL  cannot list nodes with" in out.stdout
    assert "fix: check the kubeconfig's server and credentials" in out.stdout
