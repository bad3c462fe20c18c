"""Mixing with upstream interLink: our API server and VK against a plugin that behaves on the
wire as upstream's SLURM plugin does (tests/helpers/upstream_standin.py: statuses from a cache
that leaves new pods out, ``null`` for none, string quantities in the ping, POST /delete), on
the real control plane."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from interlink_vk.config import VK_TAINT_KEY
from tests.helpers.k8s import K8sInfo, kubectl, wait_until
from tests.helpers.slurm import SlurmInfo
from tests.helpers.upstream_standin import deletes_of, start_standin
from tests.helpers.vk import RunningVK, loopback_ip, running_vk, start_vk_process
from tests.helpers.world import Service, free_port, start_api, start_plugin, stop

pytestmark = pytest.mark.integration
TOKEN = "upstream-compat-dev-token"
OWED = "interlink.eu/owed-deletes"


def api_for(root: Path, plugin: Service, port: int | None = None) -> Service:
    """Our API server in front of ``plugin``, with a development token."""
    config = {"plugin": {"url": plugin.url}, "auth": {"insecure_dev_token": TOKEN}}
    return start_api(root, config, port=port)


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[tuple[Service, Service, Path]]:
    """Stand-in plugin (cache refreshed every 3 s, jobs of 1 s) and our API server."""
    plugin, record = start_standin(tmp_path / "standin", cache_seconds=3, run_seconds=1)
    api = api_for(tmp_path / "api", plugin)
    yield plugin, api, record
    api.stop()
    plugin.stop()


def events(vk: RunningVK, name: str) -> list[str]:
    out = kubectl(
        vk.k8s, "get", "events", "-n", vk.ns,
        "--field-selector", f"involvedObject.name={name}", "-o", "json",
    )  # fmt: skip
    return [e["reason"] for e in json.loads(out.stdout)["items"]]


def pod(vk: RunningVK, name: str, **annotations: str) -> str:
    container = {"name": "main", "image": "busybox", "command": ["true"]}
    return vk.pod_manifest(name, [container], annotations=annotations)


def phase(p: dict[str, Any]) -> str:
    return str((p.get("status") or {}).get("phase"))


# --- a pod left out of a status answer is not a lost pod -----------------------------------


async def test_pods_an_upstream_plugin_has_not_cached_yet_are_not_lost(
    k8s: K8sInfo, edge: tuple[Service, Service, Path], tmp_path: Path
) -> None:
    _, api, _ = edge
    async with running_vk(
        k8s, api.url, TOKEN, tmp_path / "vk", "vk-up", lost_after_seconds=10
    ) as vk:
        for i in range(3):  # a few seconds apart, as in the report
            await vk.kubectl("apply", "-f", "-", input=pod(vk, f"job-{i}"))
            await asyncio.sleep(1)
        for i in range(3):
            done = await vk.wait_pod(f"job-{i}", lambda p: phase(p) in ("Succeeded", "Failed"))
            assert phase(done) == "Succeeded", done["status"]
            assert "ProviderLost" not in events(vk, f"job-{i}")


async def test_a_pod_the_edge_forgot_is_lost_only_after_the_grace(
    k8s: K8sInfo, tmp_path: Path
) -> None:
    plugin, _ = start_standin(tmp_path / "standin", cache_seconds=0.5, run_seconds=600)
    api = api_for(tmp_path / "api", plugin)
    try:
        async with running_vk(
            k8s, api.url, TOKEN, tmp_path / "vk", "vk-up", lost_after_seconds=8
        ) as vk:
            await vk.kubectl("apply", "-f", "-", input=pod(vk, "long"))
            await vk.wait_pod("long", lambda p: phase(p) == "Running")
            # the plugin restarts without its state: it no longer knows the job
            plugin.stop(signal.SIGKILL)
            plugin, _ = start_standin(tmp_path / "standin", cache_seconds=0.5, run_seconds=600)
            forgotten = time.monotonic()
            await asyncio.sleep(3)  # well inside the grace: the pod keeps its last state
            assert phase(await vk.pod("long") or {}) == "Running"
            lost = await vk.wait_pod("long", lambda p: phase(p) == "Failed", timeout=60)
            assert time.monotonic() - forgotten >= 8
            assert lost["status"]["reason"] == "ProviderLost"
            assert "not even when asked for it alone" in lost["status"]["message"]
            assert "ProviderLost" in events(vk, "long")
    finally:
        api.stop()
        plugin.stop()


async def test_a_job_the_slurm_plugin_forgot_is_lost_after_the_grace_end_to_end(
    k8s: K8sInfo, slurm: SlurmInfo, tmp_path: Path
) -> None:
    """On the real SLURM: the plugin is restarted without its state (its disk was lost), so
    it no longer knows the running job; the pod keeps Running through the grace, then is
    Failed with ProviderLost."""
    settings = {"runtime": "host", "partition": slurm.partition}
    plugin = start_plugin(tmp_path / "plugin", "slurm", settings)
    api = api_for(tmp_path / "api", plugin)
    job = ""
    try:
        async with running_vk(
            k8s, api.url, TOKEN, tmp_path / "vk", "vk-up", lost_after_seconds=8
        ) as vk:
            manifest = vk.pod_manifest(
                "slurm-long", [{"name": "main", "image": "none", "command": ["sleep", "300"]}]
            )
            await vk.kubectl("apply", "-f", "-", input=manifest)
            running = await vk.wait_pod("slurm-long", lambda p: phase(p) == "Running", 120)
            job = running["metadata"]["annotations"]["interlink.eu/job-id"]
            plugin.stop()
            shutil.rmtree(tmp_path / "plugin" / "state")
            plugin = start_plugin(tmp_path / "plugin", "slurm", settings)
            forgotten = time.monotonic()
            await asyncio.sleep(3)
            assert phase(await vk.pod("slurm-long") or {}) == "Running"
            lost = await vk.wait_pod("slurm-long", lambda p: phase(p) == "Failed", timeout=60)
            assert time.monotonic() - forgotten >= 8
            assert lost["status"]["reason"] == "ProviderLost"
            assert f"job {job}" in lost["status"]["message"]
    finally:
        if job:
            subprocess.run(["scancel", job], check=False)
        api.stop()
        plugin.stop()


# --- every pod that leaves Kubernetes is deleted at the edge once ---------------------------


async def test_every_pod_removed_gets_one_delete_at_the_edge_whatever_its_phase(
    k8s: K8sInfo, edge: tuple[Service, Service, Path], tmp_path: Path
) -> None:
    _, api, record = edge
    async with running_vk(k8s, api.url, TOKEN, tmp_path / "vk", "vk-up") as vk:
        manifests = {
            "ok": pod(vk, "ok"),
            "bad": pod(vk, "bad", **{"standin/exit-code": "3"}),
            "runs": pod(vk, "runs", **{"standin/run-seconds": "600"}),
        }
        for text in manifests.values():
            await vk.kubectl("apply", "-f", "-", input=text)
        wanted = {"ok": "Succeeded", "bad": "Failed", "runs": "Running"}
        uids = {}
        for name, want in wanted.items():
            got = await vk.wait_pod(name, lambda p, want=want: phase(p) == want)
            uids[name] = got["metadata"]["uid"]
        await vk.kubectl("delete", "pod", "ok", "bad", "runs", "-n", vk.ns, "--wait=false")
        for name, uid in uids.items():
            for _ in range(100):
                if deletes_of(record, uid):
                    break
                await asyncio.sleep(0.3)
            assert deletes_of(record, uid) == 1, name
        await asyncio.sleep(3)  # six status cycles: no second delete for any of them
        assert [deletes_of(record, u) for u in uids.values()] == [1, 1, 1]
        # nothing is owed any more: the node's list is gone
        for _ in range(50):
            if OWED not in node_annotations(vk.k8s, vk.node):
                break
            await asyncio.sleep(0.3)
        assert OWED not in node_annotations(vk.k8s, vk.node)


def node_annotations(k8s: K8sInfo, node: str) -> dict[str, str]:
    out = kubectl(k8s, "get", "node", node, "-o", "json")
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout)["metadata"].get("annotations") or {})


def get_pod(k8s: K8sInfo, ns: str, name: str) -> dict[str, Any] | None:
    out = kubectl(k8s, "get", "pod", name, "-n", ns, "-o", "json")
    return json.loads(out.stdout) if out.returncode == 0 else None


def test_a_delete_owed_while_the_edge_is_down_survives_a_vk_restart(
    k8s: K8sInfo, tmp_path: Path
) -> None:
    plugin, record = start_standin(tmp_path / "standin", cache_seconds=0.5, run_seconds=1)
    port = free_port()
    api = api_for(tmp_path / "api", plugin, port=port)
    node, ns = f"vk-owed-{uuid.uuid4().hex[:6]}", f"t-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "vk.log"
    settings = {
        "status_interval_seconds": 0.5,
        "ping_interval_seconds": 1,
        "internal_ip": loopback_ip(),
    }
    vk = start_vk_process(k8s, tmp_path, node, api.url, TOKEN, **settings)
    try:
        kubectl(k8s, "create", "namespace", ns)
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "done", "namespace": ns},
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": node},
                "tolerations": [{"key": VK_TAINT_KEY, "operator": "Exists"}],
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
            },
        }
        assert kubectl(k8s, "apply", "-f", "-", input=json.dumps(manifest)).returncode == 0
        done = wait_until(
            lambda: (p := get_pod(k8s, ns, "done")) and phase(p) == "Succeeded" and p,
            90, "the pod to succeed", log,
        )  # fmt: skip
        uid = done["metadata"]["uid"]

        api.stop()  # the edge goes down; the pod is deleted meanwhile
        assert kubectl(k8s, "delete", "pod", "done", "-n", ns).returncode == 0
        wait_until(lambda: uid in node_annotations(k8s, node).get(OWED, ""), 30, "owed", log)

        stop(vk, signal.SIGKILL)  # the VK restarts while the edge is still down
        vk = start_vk_process(k8s, tmp_path, node, api.url, TOKEN, **settings)
        time.sleep(3)
        assert deletes_of(record, uid) == 0
        api = api_for(tmp_path / "api", plugin, port=port)  # the edge is back
        # retried with a growing backoff (1, 2, 4 ... s): the next try may be half a minute away
        wait_until(lambda: deletes_of(record, uid) == 1, 150, "the owed delete", log)
        wait_until(lambda: OWED not in node_annotations(k8s, node), 30, "annotation gone", log)
        time.sleep(2)
        assert deletes_of(record, uid) == 1
    finally:
        stop(vk)
        api.stop()
        plugin.stop()
        kubectl(k8s, "delete", "namespace", ns, "--wait=false")
        kubectl(k8s, "delete", "node", node)
        kubectl(k8s, "delete", "lease", node, "-n", "kube-node-lease")


# --- the API server's side of the wire -----------------------------------------------------


def call(api: Service, method: str, path: str, body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return httpx.request(method, api.url + path, json=body, headers=headers, timeout=30)


def wire_pod(name: str) -> dict[str, Any]:
    uid = str(uuid.uuid4())
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "compat", "uid": uid},
        "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["true"]}]},
    }


def test_ping_is_passed_on_in_upstream_types(edge: tuple[Service, Service, Path]) -> None:
    _, api, _ = edge
    answer = call(api, "POST", "/pinglink", None)
    assert answer.status_code == 200, answer.text
    # what the plugin said, as it said it: string quantities, and no taints key (absent
    # taints mean "leave the node's taints"; an empty list would replace them)
    assert answer.json() == {
        "status": "ok",
        "resources": {
            "cpu": "8",
            "memory": "16Gi",
            "pods": "100",
            "accelerators": [{"resourceType": "nvidia.com/gpu", "available": "2"}],
        },
    }


def test_null_statuses_and_update_cache(edge: tuple[Service, Service, Path]) -> None:
    _, api, record = edge
    p = wire_pod("cached")
    created = call(api, "POST", "/create", {"pod": p, "configmaps": None, "secrets": None})
    assert created.status_code == 200, created.text
    # the plugin's cache does not know the new pod yet and answers null: we answer a list
    first = call(api, "GET", "/status", [p])
    assert first.status_code == 200 and first.json() == [], first.text

    def metric(state: str) -> float:
        text = httpx.get(api.url + "/metrics", timeout=10).text
        line = next(
            x for x in text.splitlines() if x.startswith(f'interlink_api_pods{{state="{state}"}}')
        )
        return float(line.split()[-1])

    for _ in range(50):  # after the plugin's next cache refresh the pod is reported
        answer = call(api, "GET", "/status", [p]).json()
        if answer:
            break
        time.sleep(0.3)
    assert [s["UID"] for s in answer] == [p["metadata"]["uid"]]
    assert metric("running") + metric("succeeded") == 1
    # upstream's VK sends the pod when a status no longer matches its cluster's pod
    updated = call(api, "POST", "/updateCache", p)
    assert (updated.status_code, updated.text) == (200, "Updated cache")
    assert metric("running") + metric("succeeded") == 0
    # the pod is still the caller's: it can be deleted, and the plugin is told
    assert call(api, "POST", "/delete", p).status_code == 200
    assert deletes_of(record, p["metadata"]["uid"]) == 1
