"""The VK's pod sync on the real control plane, with a real edge (API server + local plugin):
pods bound to the virtual node run remotely and their state comes back into pods/status."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest

from interlink_core.client import InterLinkClient, Retry, static_token
from interlink_core.embedded import EmbeddedEdge
from interlink_core.models import LogStruct
from interlink_vk.config import JOB_ID_ANNOTATION, VKConfig
from interlink_vk.kube import Kube
from interlink_vk.metrics import VKMetrics
from interlink_vk.pods import PodController
from tests.helpers.k8s import K8sInfo, kubectl
from tests.helpers.vk import token_volume, token_watcher

pytestmark = pytest.mark.integration


@dataclass
class World:
    k8s: K8sInfo
    node: str
    ns: str
    edge: InterLinkClient

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        out = subprocess.run(
            [str(self.k8s.kubectl), "--kubeconfig", str(self.k8s.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-n", self.ns, "-f", "-", stdin=json.dumps(obj))

    def pod(self, name: str) -> dict[str, Any] | None:
        out = subprocess.run(
            [
                str(self.k8s.kubectl),
                "--kubeconfig",
                str(self.k8s.kubeconfig),
                "get",
                "pod",
                name,
                "-n",
                self.ns,
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return json.loads(out.stdout) if out.returncode == 0 else None

    async def wait_pod(self, name: str, cond: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        last = None
        while asyncio.get_running_loop().time() < deadline:
            last = self.pod(name)
            if last is not None and cond(last):
                return last
            await asyncio.sleep(0.3)
        raise AssertionError(f"pod {name} never met the condition: {json.dumps(last)[:3000]}")

    def events(self, name: str) -> list[str]:
        out = json.loads(
            self.kubectl(
                "get",
                "events",
                "-n",
                self.ns,
                "-o",
                "json",
                "--field-selector",
                f"involvedObject.name={name}",
            )
        )
        return [e["reason"] for e in out["items"]]

    async def wait_events(self, name: str, *reasons: str, timeout: float = 10) -> None:
        """Wait for these Events (the VK records one just after the status patch it is about)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not set(reasons) <= set(seen := self.events(name)):
            assert asyncio.get_running_loop().time() < deadline, f"events of {name}: {seen}"
            await asyncio.sleep(0.2)


@contextmanager
def bare_node(k8s: K8sInfo, prefix: str) -> Iterator[tuple[str, str]]:
    """A Node object (no kubelet behind it) and a namespace, removed afterwards: the pod
    controller alone is under test, pods are bound to the node directly."""
    node = f"{prefix}-{uuid.uuid4().hex[:6]}"
    ns = f"t-{uuid.uuid4().hex[:6]}"
    kubectl(k8s, "create", "namespace", ns)
    manifest = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}
    kubectl(k8s, "create", "-f", "-", input=json.dumps(manifest))
    try:
        yield node, ns
    finally:
        kubectl(k8s, "delete", "namespace", ns, "--wait=false")
        kubectl(k8s, "delete", "node", node)


@pytest.fixture
async def world(k8s: K8sInfo, tmp_path: Path) -> AsyncIterator[World]:
    with bare_node(k8s, "vk-pods") as (node, ns), EmbeddedEdge(state_dir=tmp_path / "edge") as edge:
        config = VKConfig(
            node_name=node,
            edge={"url": edge.url, "token": edge.token},
            status_interval_seconds=0.5,
            token_refresh_fraction=0.005,  # a 600 s token (the least allowed) is renewed after 3 s
        )
        api = await kr8s.asyncio.api(kubeconfig=str(k8s.kubeconfig))
        async with InterLinkClient(edge.url, token=static_token(edge.token)) as client:
            controller = PodController(Kube(api), config, client, VKMetrics())
            stop = asyncio.Event()
            task = asyncio.create_task(controller.run(stop))
            try:
                yield World(k8s, node, ns, client)
            finally:
                kubectl(k8s, "delete", "pods", "--all", "-n", ns, "--wait=false")
                await asyncio.sleep(1.5)  # let the VK delete remotely before the edge stops
                stop.set()
                await asyncio.wait_for(task, 10)


def phase(p: dict[str, Any]) -> str:
    return str((p.get("status") or {}).get("phase", ""))


def bound_pod(w: World, name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": w.ns},
        "spec": {
            "nodeName": w.node,
            "containers": containers,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 2,
            **spec,
        },
    }


async def logs(w: World, pod: dict[str, Any], container: str) -> str:
    m = pod["metadata"]
    req = LogStruct(
        Namespace=m["namespace"], PodUID=m["uid"], PodName=m["name"], ContainerName=container
    )
    return (await w.edge.logs(req)).decode()


async def test_pod_runs_remotely_with_config_secret_and_token(world: World) -> None:
    w = world
    w.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings"},
            "data": {"mode": "fast"},
        }
    )
    w.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "stringData": {"password": "s3cr3t"},
        }
    )
    w.kubectl("create", "serviceaccount", "worker", "-n", w.ns)
    w.apply(
        bound_pod(
            w,
            "job",
            [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": [
                        "sh",
                        "-c",
                        "echo mode=$MODE; cat /etc/creds/password; echo; "
                        "wc -c < /var/run/secrets/tokens/token",
                    ],
                    "env": [
                        {
                            "name": "MODE",
                            "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}},
                        }
                    ],
                    "volumeMounts": [
                        {"name": "creds", "mountPath": "/etc/creds"},
                        {"name": "tok", "mountPath": "/var/run/secrets/tokens"},
                    ],
                }
            ],
            initContainers=[{"name": "setup", "image": "busybox", "command": ["echo", "init"]}],
            serviceAccountName="worker",
            volumes=[
                {"name": "creds", "secret": {"secretName": "creds"}},
                {
                    "name": "tok",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}
                        ]
                    },
                },
            ],
        )
    )
    done = await w.wait_pod("job", lambda p: phase(p) == "Succeeded")
    assert done["metadata"]["annotations"][JOB_ID_ANNOTATION].startswith("local-")
    statuses = done["status"]["containerStatuses"]
    assert statuses[0]["state"]["terminated"]["exitCode"] == 0
    assert done["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    conds = {c["type"]: c["status"] for c in done["status"]["conditions"]}
    assert conds["Initialized"] == "True" and conds["Ready"] == "False"
    out = (await logs(w, done, "main")).splitlines()
    assert out[:2] == ["mode=fast", "s3cr3t"]
    assert int(out[2]) > 100  # a real JWT from the TokenRequest API
    await w.wait_events("job", "Submitted", "Completed")


async def test_failed_container_fails_the_pod_with_its_exit_code(world: World) -> None:
    w = world
    w.apply(
        bound_pod(w, "bad", [{"name": "main", "image": "x", "command": ["sh", "-c", "exit 4"]}])
    )
    failed = await w.wait_pod("bad", lambda p: phase(p) == "Failed")
    assert failed["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 4
    assert "exited with code 4" in failed["status"]["message"]
    await w.wait_events("bad", "Failed")


async def test_pod_the_edge_refuses_is_failed_not_stuck(world: World) -> None:
    w = world
    w.apply(bound_pod(w, "refused", [{"name": "main", "image": "x"}]))  # no command: 400
    failed = await w.wait_pod("refused", lambda p: phase(p) == "Failed")
    assert failed["status"]["reason"] == "ProviderFailed"
    assert "command" in failed["status"]["message"]


async def test_missing_configmap_waits_then_runs(world: World) -> None:
    w = world
    w.apply(
        bound_pod(
            w,
            "waits",
            [
                {
                    "name": "main",
                    "image": "x",
                    "command": ["echo", "$(V)"],
                    "env": [
                        {
                            "name": "V",
                            "valueFrom": {"configMapKeyRef": {"name": "later", "key": "v"}},
                        }
                    ],
                }
            ],
        )
    )
    await asyncio.sleep(2)
    assert phase(w.pod("waits") or {}) == "Pending"
    await w.wait_events("waits", "FailedMount")
    w.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "later"},
            "data": {"v": "now"},
        }
    )
    done = await w.wait_pod("waits", lambda p: phase(p) == "Succeeded")
    assert (await logs(w, done, "main")) == "now\n"


async def test_kubectl_delete_stops_the_remote_job(world: World) -> None:
    w = world
    w.apply(bound_pod(w, "sleeper", [{"name": "main", "image": "x", "command": ["sleep", "600"]}]))
    running = await w.wait_pod("sleeper", lambda p: phase(p) == "Running")
    assert running["status"]["podIP"].startswith("127.")
    t0 = asyncio.get_running_loop().time()
    # kubectl waits until the pod is gone: off the event loop the VK runs in
    await asyncio.to_thread(w.kubectl, "delete", "pod", "sleeper", "-n", w.ns, "--timeout=30s")
    assert asyncio.get_running_loop().time() - t0 < 20
    assert w.pod("sleeper") is None
    assert await w.edge.status([running]) == []  # gone at the edge too


async def test_edge_outage_keeps_last_state_and_work_resumes(k8s: K8sInfo, tmp_path: Path) -> None:
    with bare_node(k8s, "vk-out") as (node, ns):
        await _outage(k8s, tmp_path, node, ns)


async def _outage(k8s: K8sInfo, tmp_path: Path, node: str, ns: str) -> None:
    edge = EmbeddedEdge(state_dir=tmp_path / "edge").start()
    config = VKConfig(
        node_name=node, edge={"url": edge.url, "token": edge.token}, status_interval_seconds=0.5
    )
    api = await kr8s.asyncio.api(kubeconfig=str(k8s.kubeconfig))
    stop = asyncio.Event()
    try:
        async with InterLinkClient(
            edge.url, token=static_token(edge.token), retry=Retry(attempts=1)
        ) as client:
            task = asyncio.create_task(
                PodController(Kube(api), config, client, VKMetrics()).run(stop)
            )
            w = World(k8s, node, ns, client)
            w.apply(
                bound_pod(
                    w,
                    "long",
                    [{"name": "main", "image": "x", "command": ["sh", "-c", "sleep 4; echo done"]}],
                )
            )
            await w.wait_pod("long", lambda p: phase(p) == "Running")
            edge.stop()  # the edge goes away while the pod runs
            await asyncio.sleep(2)
            assert phase(w.pod("long") or {}) == "Running"  # last known state kept
            # the edge comes back on the same address with its state: the job went on meanwhile
            edge = EmbeddedEdge(
                state_dir=tmp_path / "edge", port=edge.port, token=edge.token
            ).start()
            done = await w.wait_pod("long", lambda p: phase(p) == "Succeeded", timeout=30)
            assert (await logs(w, done, "main")) == "done\n"
            stop.set()
            await asyncio.wait_for(task, 10)
    finally:
        stop.set()
        edge.stop()


async def test_service_account_token_is_refreshed_in_the_running_pod(world: World) -> None:
    w = world
    w.kubectl("create", "serviceaccount", "rotator", "-n", w.ns)
    w.apply(
        bound_pod(
            w,
            "rotates",
            [token_watcher()],
            serviceAccountName="rotator",
            volumes=[token_volume(600)],
        )
    )
    done = await w.wait_pod("rotates", lambda p: phase(p) in ("Succeeded", "Failed"), 60)
    out = (await logs(w, done, "main")).splitlines()
    assert phase(done) == "Succeeded", out
    assert out[0] == "changed"
    # the new token is a valid one, bound to this very pod
    review = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": out[1]},
    }
    answer = json.loads(w.kubectl("create", "-o", "json", "-f", "-", stdin=json.dumps(review)))
    status = answer["status"]
    assert status["authenticated"] is True, status
    assert status["user"]["username"] == f"system:serviceaccount:{w.ns}:rotator"
    assert status["user"]["extra"]["authentication.kubernetes.io/pod-uid"] == [
        done["metadata"]["uid"]
    ]
    assert "TokenRefreshUnsupported" not in w.events("rotates")
