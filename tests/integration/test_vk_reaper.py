"""The VK's heartbeat reaper on the real control plane with a real edge (API server + local
plugin): pods annotated with ``interlink.eu/heartbeat-lease`` live while their Lease is renewed
and are deleted (remote job included) once it expires or vanishes; other pods are untouched.

The test pods carry no ownerReference to their Lease: the reaper alone must remove them (the
world's garbage collector would otherwise do part of the work)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest

from interlink_core.client import InterLinkClient, static_token
from interlink_core.embedded import EmbeddedEdge
from interlink_core.kube import LEASES_API as LEASES
from interlink_vk.config import HEARTBEAT_ANNOTATION, HEARTBEAT_LABEL
from interlink_vk.kube import MERGE_PATCH, Kube
from tests.helpers.k8s import K8sInfo
from tests.helpers.vk import RunningVK, helm_role_kubeconfig, local_vk

pytestmark = pytest.mark.integration

DURATION = 6
CHECK = 1.0
SLACK = 5.0  # a LIST, the remote delete and the final removal, on 2 busy cores


def sample(vk: RunningVK, name: str) -> float | None:
    return vk.metrics.registry.get_sample_value(name)


def micro(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Env:
    """A running VK with its edge, and the test's Kubernetes client."""

    def __init__(self, vk: RunningVK, edge: EmbeddedEdge, kube: Kube) -> None:
        self.vk = vk
        self.edge = edge
        self.kube = kube

    async def lease(
        self, name: str, renew: datetime | None, labelled: bool = True
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {"holderIdentity": "kernel-1", "leaseDurationSeconds": DURATION}
        if renew is not None:
            spec["renewTime"] = micro(renew)
        labels = {HEARTBEAT_LABEL: "true"} if labelled else {}
        body = {
            "apiVersion": LEASES,
            "kind": "Lease",
            "metadata": {"name": name, "labels": labels},
            "spec": spec,
        }
        return await self.kube.call(
            "POST", "leases", namespace=self.vk.ns, version=LEASES, body=body
        )

    async def get_lease(self, name: str) -> dict[str, Any] | None:
        return await self.kube.get("leases", self.vk.ns, name, version=LEASES)

    async def renew(self, name: str) -> None:
        await self.kube.call(
            "PATCH",
            f"leases/{name}",
            namespace=self.vk.ns,
            version=LEASES,
            body={"spec": {"renewTime": micro(datetime.now(UTC))}},
            headers=MERGE_PATCH,
        )

    async def pod(self, name: str, lease: str | None) -> None:
        ann = {HEARTBEAT_ANNOTATION: lease} if lease else {}
        spec = self.vk.pod_manifest(
            name, [{"name": "w", "image": "x", "command": ["sleep", "600"]}], ann
        )
        out = await self.vk.kubectl("apply", "-f", "-", input=spec)
        assert out.returncode == 0, out.stderr

    async def running(self, *names: str) -> list[dict[str, Any]]:
        return [
            await self.vk.wait_pod(n, lambda p: p["status"].get("phase") == "Running")
            for n in names
        ]

    def remote_dirs(self) -> set[str]:
        pods = self.edge.state_dir / "plugin" / "pods"
        return {d.name for d in pods.iterdir()} if pods.exists() else set()

    async def gone(self, pods: list[dict[str, Any]], timeout: float) -> float:
        """Seconds until these pods are gone from Kubernetes and from the edge."""
        t0 = time.monotonic()
        uids = {p["metadata"]["uid"] for p in pods}
        while time.monotonic() - t0 < timeout:
            present = [await self.vk.pod(p["metadata"]["name"]) for p in pods]
            if not any(present) and not uids & self.remote_dirs():
                return time.monotonic() - t0
            await asyncio.sleep(0.2)
        raise AssertionError(f"pods {sorted(uids)} still there after {timeout} s")

    async def reasons(self, pod: str) -> list[str]:
        out = await self.vk.kubectl(
            "get",
            "events",
            "-n",
            self.vk.ns,
            "-o",
            "json",
            "--field-selector",
            f"involvedObject.name={pod}",
        )
        return [f"{e['reason']}: {e['message']}" for e in json.loads(out.stdout)["items"]]


@pytest.fixture
async def env(k8s: K8sInfo, tmp_path: Path) -> AsyncIterator[Env]:
    async with local_vk(k8s, tmp_path, "vk-reap", heartbeat_check_seconds=CHECK) as (vk, edge):
        api = await kr8s.asyncio.api(kubeconfig=str(k8s.kubeconfig))
        yield Env(vk, edge, Kube(api))


async def test_pods_live_while_renewed_and_go_with_their_remote_jobs(env: Env) -> None:
    await env.lease("kernel", datetime.now(UTC))
    await env.pod("w1", "kernel")
    await env.pod("w2", "kernel")
    await env.pod("plain", None)
    workers = await env.running("w1", "w2")
    await env.running("plain")
    assert {p["metadata"]["uid"] for p in workers} <= env.remote_dirs()

    # renewed every second for longer than the lease lasts: nothing happens
    until = time.monotonic() + 2 * DURATION
    while time.monotonic() < until:
        await env.renew("kernel")
        await asyncio.sleep(1)
    await env.running("w1", "w2", "plain")
    assert not [r for r in await env.reasons("w1") if r.startswith("HeartbeatExpired")]

    # the kernel dies: the lease is no longer renewed
    await env.renew("kernel")
    last = time.monotonic()
    await env.gone(workers, timeout=DURATION + CHECK + SLACK + 10)
    took = time.monotonic() - last
    assert took <= DURATION + CHECK + SLACK, took
    # the remote jobs are gone at the edge too
    async with InterLinkClient(env.edge.url, token=static_token(env.edge.token)) as edge:
        assert await edge.status(workers) == []
    expired = [r for r in await env.reasons("w1") if r.startswith("HeartbeatExpired")]
    assert expired and "heartbeat lease kernel expired" in expired[0], expired
    # the pod without the annotation is untouched; the labelled lease is deleted
    plain = await env.vk.pod("plain")
    assert plain is not None and plain["status"]["phase"] == "Running"
    assert not plain["metadata"].get("deletionTimestamp")
    assert await env.get_lease("kernel") is None
    assert sample(env.vk, "interlink_vk_reaped_pods_total") == 2
    print(f"reaped {took:.1f} s after the last renewal (lease {DURATION} s, check {CHECK} s)")


async def test_missing_and_foreign_expired_leases(env: Env) -> None:
    # an expired lease without the heartbeat label: its pod goes, the lease stays
    await env.lease("foreign", datetime.now(UTC) - timedelta(minutes=1), labelled=False)
    # a lease never renewed counts from its creation: its pod lives until then
    await env.lease("unrenewed", None)
    created = time.monotonic()
    await env.pod("orphan", "no-such-lease")
    await env.pod("f1", "foreign")
    await env.pod("u1", "unrenewed")
    await env.pod("plain", None)
    [u1] = await env.running("u1")
    if time.monotonic() - created < DURATION - 2:
        await asyncio.sleep(1.5)  # a check or two while the unrenewed lease is still valid
        assert not ((await env.vk.pod("u1")) or {}).get("metadata", {}).get("deletionTimestamp")
    for name in ("orphan", "f1"):
        t0 = time.monotonic()
        while await env.vk.pod(name) is not None:
            assert time.monotonic() - t0 < CHECK + SLACK + 10, f"{name} was not reaped"
            await asyncio.sleep(0.2)
    assert any("no-such-lease does not exist" in r for r in await env.reasons("orphan"))
    await env.gone([u1], timeout=DURATION + CHECK + SLACK + 5)
    assert await env.get_lease("foreign") is not None  # not ours to delete
    assert await env.get_lease("unrenewed") is None  # labelled: deleted once expired
    await env.running("plain")


async def test_the_helm_role_is_enough_for_the_reaper(k8s: K8sInfo, tmp_path: Path) -> None:
    """The VK runs as the chart's ServiceAccount (helm/interlink-vk/rbac.yaml): it reads the
    Lease, records the Event, deletes the pod (remote job first) and the labelled Lease."""
    kubeconfig = helm_role_kubeconfig(k8s, tmp_path / "vk.kubeconfig")
    async with local_vk(
        k8s,
        tmp_path,
        "vk-helm",
        kubeconfig=kubeconfig,
        heartbeat_check_seconds=CHECK,
    ) as (vk, edge):
        api = await kr8s.asyncio.api(kubeconfig=str(k8s.kubeconfig))
        env = Env(vk, edge, Kube(api))
        await env.lease("kernel", datetime.now(UTC))
        await env.pod("w", "kernel")
        [w] = await env.running("w")
        await env.gone([w], timeout=DURATION + CHECK + SLACK + 10)
        assert any(r.startswith("HeartbeatExpired") for r in await env.reasons("w"))
        assert await env.get_lease("kernel") is None
        assert sample(vk, "interlink_vk_reaped_pods_total") == 1
