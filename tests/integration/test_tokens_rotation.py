"""A token file replaced on disk is used on the next request (docs/api-server.md ``token_file``,
docs/vk.md ``edge.token_file``, docs/dask.md ``direct.token-file``): the client, the VK process
and a direct-mode Dask cluster, against an API server that checks tokens from the real issuer.

The API server takes tenants from nanoidp's ``client_id`` claim, so alice's and bob's tokens
(both granted through client ``vk-cluster-a``) are one tenant with two subjects: a rotation keeps
every pod reachable, and the plugin process sees who called in ``InterLink-Subject``."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import dask.config
import pytest
from distributed import Client

from interlink_core.client import InterLinkClient, RemoteError, Retry, token_file
from interlink_core.models import PodCreateRequests
from interlink_dask import InterLinkCluster
from interlink_vk.config import VK_TAINT_KEY
from tests.helpers.k8s import K8sInfo, kubectl
from tests.helpers.relay_plugin import requests_seen, start_relay_plugin
from tests.helpers.vk import approve_csr, loopback_ip, start_vk_process
from tests.helpers.world import Issuer, Service, start_api, stop, until

pytestmark = pytest.mark.integration
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]


@pytest.fixture(scope="module")
def relay(plugin: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A plugin process that records the headers it receives, in front of the local plugin."""
    svc = start_relay_plugin(tmp_path_factory.mktemp("relay"), plugin)
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def api(
    issuer: Issuer, relay: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    oidc = issuer.oidc_config(tenant_claim="client_id", leeway_seconds=0)
    svc = start_api(
        tmp_path_factory.mktemp("api"), {"plugin": {"url": relay.url}, "auth": {"oidc": oidc}}
    )
    yield svc
    svc.stop()


def rotate(path: Path, token: str) -> None:
    """Replace the token file atomically, as a token refresher (or a kubelet) does."""
    tmp = path.with_suffix(".new")
    tmp.write_text(token + "\n")
    tmp.replace(path)


def subjects(relay: Service, since: int, path: str) -> list[str]:
    """``InterLink-Subject`` of each ``path`` call the plugin received after ``since`` calls
    (pings carry no caller)."""
    seen = requests_seen(relay)[since:]
    return [r["InterLink-Subject"] for r in seen if r["path"] == path and "InterLink-Subject" in r]


def sleeper(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
        "spec": {"containers": [{"name": "main", "image": "none", "command": ["sleep", "60"]}]},
    }


async def test_client_token_file_is_read_for_every_request(
    api: Service, relay: Service, issuer: Issuer, tmp_path: Path
) -> None:
    path = tmp_path / "token"
    rotate(path, issuer.user_token("alice"))
    pod = sleeper("rotating-client")
    async with InterLinkClient(api.url, token=token_file(path), retry=Retry(attempts=1)) as client:
        start = len(requests_seen(relay))
        await client.create(PodCreateRequests.model_validate({"pod": pod}))
        rotate(path, issuer.user_token("bob"))
        await client.status([pod])
        assert subjects(relay, start, "/create") == ["alice"]
        assert subjects(relay, start, "/status") == ["bob"]
        rotate(path, issuer.mint(client_id="vk-cluster-a", exp=int(time.time()) - 60))
        with pytest.raises(RemoteError) as refused:
            await client.status([pod])
        assert refused.value.status_code == 401 and "expired" in refused.value.message
        rotate(path, issuer.user_token("alice"))
        await client.delete(pod)
        assert subjects(relay, start, "/delete") == ["alice"]


async def test_dask_direct_token_file_is_read_for_every_request(
    api: Service, relay: Service, issuer: Issuer, tmp_path: Path
) -> None:
    """``direct.token-file`` in dask config: the pod created after the rotation is bob's."""
    path = tmp_path / "token"
    rotate(path, issuer.user_token("alice"))
    config = {"interlink.direct.url": api.url, "interlink.direct.token-file": str(path)}
    start = len(requests_seen(relay))
    with dask.config.set(config):
        async with InterLinkCluster(
            asynchronous=True,
            mode="direct",
            worker_command=WORKER,
            memory="512MiB",
            state_dir=tmp_path / "dask",
            status_interval=0.3,
            death_timeout=20,
        ) as cluster:
            async with Client(cluster, asynchronous=True) as client:
                await cluster.scale(1)
                await client.wait_for_workers(1, timeout=90)
                rotate(path, issuer.user_token("bob"))
                await cluster.scale(2)
                await client.wait_for_workers(2, timeout=90)
                assert subjects(relay, start, "/create") == ["alice", "bob"]
                await until(lambda: subjects(relay, start, "/status")[-1:] == ["bob"])
    assert subjects(relay, start, "/delete") == ["bob", "bob"]


# --- the VK process -------------------------------------------------------------------------


def node_conditions(k8s: K8sInfo, node: str) -> dict[str, dict[str, Any]]:
    out = kubectl(k8s, "get", "node", node, "-o", "json")
    if out.returncode != 0:
        return {}
    conds = json.loads(out.stdout)["status"].get("conditions") or []
    return {c["type"]: c for c in conds}


def ready(k8s: K8sInfo, node: str) -> str:
    return str(node_conditions(k8s, node).get("Ready", {}).get("status", ""))


@pytest.fixture
async def vk_node(
    k8s: K8sInfo, api: Service, issuer: Issuer, tmp_path: Path
) -> AsyncIterator[tuple[str, str, Path]]:
    """``interlink vk`` with ``edge.token_file`` holding an expired token at first; yields the
    node, a namespace of its own and the token file."""
    node, ns = f"vk-rot-{uuid.uuid4().hex[:6]}", f"t-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "token"
    rotate(path, issuer.mint(client_id="vk-cluster-a", exp=int(time.time()) - 60))
    kubectl(k8s, "create", "namespace", ns)
    edge = {"url": api.url, "token_file": str(path)}
    vk = start_vk_process(
        k8s,
        tmp_path,
        node,
        api.url,
        "",
        edge=edge,
        internal_ip=loopback_ip(),
        ping_interval_seconds=1,
        status_interval_seconds=1,
    )
    done = asyncio.Event()
    approver = asyncio.create_task(approve_csr(k8s, node, done))
    try:
        yield node, ns, path
        assert vk.poll() is None, (tmp_path / "vk.log").read_text()
    finally:
        kubectl(k8s, "delete", "pods", "--all", "-n", ns, "--wait=false")
        await asyncio.sleep(2)  # let the VK delete remotely
        done.set()
        await approver
        stop(vk)
        kubectl(k8s, "delete", "namespace", ns, "--wait=false")
        kubectl(k8s, "delete", "node", node)
        kubectl(k8s, "delete", "lease", node, "-n", "kube-node-lease")


async def test_vk_token_file_is_read_for_every_request(
    k8s: K8sInfo, vk_node: tuple[str, str, Path], relay: Service, issuer: Issuer
) -> None:
    """The node is NotReady while the file holds an expired token, Ready once it holds a good
    one; a pod's calls after the next rotation carry the new subject."""
    node, ns, path = vk_node
    conds = await until(
        lambda: node_conditions(k8s, node).get("InterLinkConnectivity"), what="conditions"
    )
    await until(
        lambda: "expired" in node_conditions(k8s, node)["InterLinkConnectivity"]["message"],
        what="the edge's 401 on the node",
    )
    assert ready(k8s, node) == "False", conds
    rotate(path, issuer.user_token("alice"))
    await until(lambda: ready(k8s, node) == "True", what="Ready after the new token")
    start = len(requests_seen(relay))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "rotates", "namespace": ns},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [{"key": VK_TAINT_KEY, "operator": "Exists"}],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "none", "command": ["sleep", "60"]}],
        },
    }
    out = kubectl(k8s, "apply", "-f", "-", input=json.dumps(pod))
    assert out.returncode == 0, out.stderr
    await until(lambda: subjects(relay, start, "/create") == ["alice"], what="create as alice")
    rotate(path, issuer.user_token("bob"))
    await until(lambda: subjects(relay, start, "/status")[-1:] == ["bob"], what="status as bob")
    assert ready(k8s, node) == "True"
