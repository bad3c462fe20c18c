"""The test world's real Kubernetes control plane (tests/world/k8s-up): the pinned release
answers, RBAC is enforced, and the controller-manager and scheduler act on a Deployment."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers.k8s import K8sInfo, kubectl
from tests.helpers.world import tls

pytestmark = pytest.mark.integration

K8S_VERSION = "v1.33.13"


def ok(info: K8sInfo, *args: str) -> str:
    """``kubectl <args>`` that must succeed; its stdout."""
    out = kubectl(info, *args)
    assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
    return out.stdout


def get_json(info: K8sInfo, *args: str) -> Any:
    return json.loads(ok(info, "get", *args, "-o", "json"))


@pytest.fixture
def namespace(k8s: K8sInfo) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (with everything in it)."""
    name = f"ilk-world-{uuid.uuid4().hex[:8]}"
    ok(k8s, "create", "namespace", name)
    yield name
    kubectl(k8s, "delete", "namespace", name, "--wait=false")


def test_server_reports_pinned_release(k8s: K8sInfo) -> None:
    version = json.loads(ok(k8s, "version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"] == K8S_VERSION
    assert version["clientVersion"]["gitVersion"] == K8S_VERSION
    assert (version["serverVersion"]["major"], version["serverVersion"]["minor"]) == ("1", "33")


def test_rbac_denies_a_service_account_without_rights(k8s: K8sInfo, namespace: str) -> None:
    ok(k8s, "-n", namespace, "create", "serviceaccount", "nobody")
    token = ok(k8s, "-n", namespace, "create", "token", "nobody", "--duration=10m").strip()
    url = f"{k8s.server}/api/v1/namespaces/{namespace}/pods"
    with httpx.Client(verify=tls(k8s.ca), timeout=10) as http:
        denied = http.get(url, headers={"Authorization": f"Bearer {token}"})
        admin = http.get(url, headers={"Authorization": f"Bearer {k8s.admin_token}"})
        anonymous = http.get(url)
    assert denied.status_code == 403, denied.text
    body = denied.json()
    assert body["reason"] == "Forbidden"
    assert f"system:serviceaccount:{namespace}:nobody" in body["message"]
    assert admin.status_code == 200, admin.text
    assert anonymous.status_code in (401, 403)


def test_deployment_pods_stay_pending_without_nodes(k8s: K8sInfo, namespace: str) -> None:
    """The controller-manager turns the Deployment into 2 Pods; the scheduler finds no node
    they can use."""
    ok(
        k8s,
        "-n",
        namespace,
        "create",
        "deployment",
        "web",
        "--image=registry.invalid/pause:1",
        "--replicas=2",
    )
    deadline = time.monotonic() + 60
    while True:
        pods = get_json(k8s, "-n", namespace, "pods", "-l", "app=web")["items"]
        unschedulable = [
            p
            for p in pods
            if any(
                c["type"] == "PodScheduled"
                and c["status"] == "False"
                and c.get("reason") == "Unschedulable"
                for c in p["status"].get("conditions", [])
            )
        ]
        if len(unschedulable) == 2:
            break
        assert time.monotonic() < deadline, f"pods not reported unschedulable in 60 s: {pods}"
        time.sleep(0.5)
    assert len(pods) == 2
    assert all(p["status"]["phase"] == "Pending" for p in pods)
    assert all(not p["spec"].get("nodeName") for p in pods)
    events = get_json(
        k8s, "-n", namespace, "events", "--field-selector", "reason=FailedScheduling"
    )["items"]
    assert {e["involvedObject"]["name"] for e in events} == {p["metadata"]["name"] for p in pods}
    messages = [e["message"] for e in events]
    # no node at all, or only nodes this pod cannot use (virtual nodes of other tests in the
    # shared world are tainted): either way the scheduler says none of them is available
    assert all(re.search(r"no nodes available|^0/\d+ nodes are available", m) for m in messages), (
        messages
    )
    deployment = get_json(k8s, "-n", namespace, "deployment", "web")
    assert deployment["status"].get("replicas") == 2
    assert deployment["status"].get("readyReplicas", 0) == 0
