"""Kubernetes mode: worker pods on virtual nodes, created through kr8s. The cluster is a Lease
that the client renews; the pods are owned by it and carry its name, so the virtual kubelet
removes them when the client stops renewing (the kernel died), and the garbage collector does
when the Lease is deleted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import kr8s.asyncio
from kr8s import ServerError

from interlink_core.kube import (
    LEASES_API,
    MERGE_PATCH,
    KubeJSON,
    lease_expired,
    now_rfc3339,
    status_code,
)
from interlink_core.models import JSON
from interlink_core.names import HEARTBEAT_LABEL, VK_NODE_SELECTOR, VK_TYPE_LABEL, VK_TYPE_VALUE

from .backend import Backend, ClusterExists, ClusterRecord, log
from .config import ClusterOptions, holder_identity
from .pods import (
    CLUSTER_LABEL,
    DASHBOARD_ANNOTATION,
    SCHEDULER_ANNOTATION,
    WORKER_CONTAINER,
    cluster_labels,
    worker_pod,
)
from .states import view_of_kube_pod

STALE_POD_TIMEOUT = 90.0
"""Seconds a new worker pod waits for a same-named pod of an expired cluster to go (its
grace period is 30 s, and the VK cancels its batch job first)."""


def record_of_lease(lease: JSON) -> ClusterRecord:
    """The cluster a Lease stands for."""
    meta = lease["metadata"]
    ann = meta.get("annotations") or {}
    return ClusterRecord(
        name=meta["labels"][CLUSTER_LABEL],
        mode="kubernetes",
        scheduler=ann.get(SCHEDULER_ANNOTATION, ""),
        dashboard=ann.get(DASHBOARD_ANNOTATION, ""),
        holder=(lease.get("spec") or {}).get("holderIdentity", ""),
    )


async def connect(opts: ClusterOptions) -> tuple[KubeJSON, str]:
    """A Kubernetes client and the namespace to use (configured, or the context's)."""
    api = await kr8s.asyncio.api(
        kubeconfig=str(opts.kubeconfig.expanduser()) if opts.kubeconfig else None,
        namespace=opts.namespace,
    )
    return KubeJSON(api), opts.namespace or api.namespace or "default"


async def kubernetes_records(opts: ClusterOptions) -> list[ClusterRecord]:
    """Live Kubernetes-mode clusters in the namespace."""
    kube, namespace = await connect(opts)
    async with kube:
        answer = await kube.call(
            "GET",
            "leases",
            namespace=namespace,
            version=LEASES_API,
            params={"labelSelector": f"{CLUSTER_LABEL},{HEARTBEAT_LABEL}=true"},
        )
    now = datetime.now(UTC)
    return [record_of_lease(x) for x in answer.get("items") or [] if not lease_expired(x, now)]


class KubernetesBackend(Backend):
    """Worker pods on virtual nodes."""

    def __init__(self, opts: ClusterOptions) -> None:
        super().__init__(opts)
        self.kube: KubeJSON | None = None
        self.namespace = opts.namespace or "default"
        self.lease: JSON | None = None
        self.server: str | None = None

    @property
    def route_target(self) -> str | None:
        return self.server

    @property
    def _kube(self) -> KubeJSON:
        assert self.kube is not None, "check() connects first"
        return self.kube

    @property
    def lease_name(self) -> str:
        """The cluster's Lease: its name."""
        return self.opts.cluster_name

    async def check(self) -> None:
        if self.kube is not None:
            await self.kube.aclose()
        self.kube, self.namespace = await connect(self.opts)
        self.server = str(self.kube.api.auth.server)
        await self._check_node()
        lease = await self._kube.get("leases", self.namespace, self.lease_name, version=LEASES_API)
        if lease is not None:
            if not lease_expired(lease):
                holder = (lease.get("spec") or {}).get("holderIdentity")
                raise ClusterExists(
                    f"name: a cluster named {self.lease_name!r} is running in namespace "
                    f"{self.namespace} (held by {holder}); choose another name or use "
                    f"InterLinkCluster.from_name({self.lease_name!r})"
                )
            # its pods terminate in the background; create() waits for same-named ones
            log.info("replacing the expired cluster %s and its pods", self.lease_name)
            await self._delete_lease()
            await self.delete_all()
        self.lease = await self._kube.call(
            "POST", "leases", namespace=self.namespace, version=LEASES_API, body=self._lease_body()
        )

    async def _check_node(self) -> None:
        kube = self._kube
        if self.opts.node:
            node = await kube.get("nodes", None, self.opts.node)
            if node is None:
                names = await self._virtual_nodes()
                raise LookupError(
                    f"node: there is no node {self.opts.node!r}; virtual nodes: "
                    f"{', '.join(names) or 'none'}"
                )
            if (node["metadata"].get("labels") or {}).get(VK_TYPE_LABEL) != VK_TYPE_VALUE:
                raise LookupError(f"node: {self.opts.node!r} is not an interLink virtual node")
        elif not await self._virtual_nodes():
            raise LookupError(
                "node: this cluster has no interLink virtual node; start one (interlink vk) "
                "or ask your administrator"
            )

    async def _virtual_nodes(self) -> list[str]:
        answer = await self._kube.call("GET", "nodes", params={"labelSelector": VK_NODE_SELECTOR})
        return sorted(n["metadata"]["name"] for n in answer.get("items") or [])

    def _lease_body(self, scheduler: str = "", dashboard: str = "") -> JSON:
        return {
            "apiVersion": LEASES_API,
            "kind": "Lease",
            "metadata": {
                "name": self.lease_name,
                "namespace": self.namespace,
                "labels": {**cluster_labels(self.opts), HEARTBEAT_LABEL: "true"},
                "annotations": {SCHEDULER_ANNOTATION: scheduler, DASHBOARD_ANNOTATION: dashboard},
            },
            "spec": {
                "holderIdentity": holder_identity(),
                "leaseDurationSeconds": self.opts.heartbeat.timeout,
                "renewTime": now_rfc3339(micro=True),
            },
        }

    async def publish(self, scheduler: str, dashboard: str) -> None:
        body = self._lease_body(scheduler, dashboard)
        patch = {"metadata": {"annotations": body["metadata"]["annotations"]}}
        self.lease = await self._patch_lease(patch)

    async def _patch_lease(self, patch: JSON) -> JSON:
        return await self._kube.call(
            "PATCH",
            f"leases/{self.lease_name}",
            namespace=self.namespace,
            version=LEASES_API,
            body=patch,
            headers=MERGE_PATCH,
        )

    async def loops(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        return [self._heartbeat, self._watch]

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.opts.heartbeat.interval)
            try:
                await self._patch_lease({"spec": {"renewTime": now_rfc3339(micro=True)}})
            except Exception as exc:
                log.warning("cannot renew the heartbeat of %s: %s", self.lease_name, exc)

    async def _watch(self) -> None:
        """Apply each worker pod change as the watch delivers it (the refresh loop's LIST is
        the safety net): no LIST of all the cluster's pods per event, which made a scale-up
        of N pods cost ~4-5 N LISTs while the workers start."""
        while True:
            try:
                async for event, obj in self._kube.api.watch(
                    "pods", namespace=self.namespace, label_selector=self._selector
                ):
                    self.apply_event(event, dict(obj.raw))
            except Exception as exc:
                log.debug("worker pod watch ended (%s); restarting", exc)
            await asyncio.sleep(1)

    def apply_event(self, event: str, pod: JSON) -> None:
        """Update the view of one pod from a watch event (others, e.g. BOOKMARK, are left to
        the refresh loop)."""
        name = (pod.get("metadata") or {}).get("name")
        if not name or event not in ("ADDED", "MODIFIED", "DELETED") or not self._ours(pod):
            return
        views = dict(self.views)
        if event == "DELETED":
            views.pop(name, None)
        else:
            views[name] = view_of_kube_pod(pod)
        self.update(views)

    @property
    def _selector(self) -> str:
        return f"{CLUSTER_LABEL}={self.opts.cluster_name}"

    def _ours(self, pod: JSON) -> bool:
        """Whether ``pod`` belongs to this cluster instance (owned by its Lease), not to an
        expired cluster of the same name whose pods are still terminating."""
        uid = (self.lease or {}).get("metadata", {}).get("uid")
        refs = (pod.get("metadata") or {}).get("ownerReferences") or []
        return uid is not None and any(r.get("uid") == uid for r in refs)

    def _stale(self, pod: JSON) -> bool:
        """Whether ``pod`` is left from an earlier cluster of this name (its label or a Lease
        of this name owns it), so it may be deleted to make room."""
        meta = pod.get("metadata") or {}
        refs = meta.get("ownerReferences") or []
        return (meta.get("labels") or {}).get(CLUSTER_LABEL) == self.opts.cluster_name or any(
            r.get("kind") == "Lease" and r.get("name") == self.lease_name for r in refs
        )

    async def create(self, pod_name: str, scheduler: str) -> None:
        """Create the pod; a same-named pod of an expired cluster is deleted and waited for
        (up to :data:`STALE_POD_TIMEOUT`), one of this cluster (a retried create) is kept."""
        assert self.lease is not None
        pod = worker_pod(self.opts, pod_name, scheduler, namespace=self.namespace, owner=self.lease)
        deadline = time.monotonic() + STALE_POD_TIMEOUT
        while True:
            try:
                await self._kube.call("POST", "pods", namespace=self.namespace, body=pod)
                return
            except ServerError as exc:
                if status_code(exc) != 409:
                    raise
            old = await self._kube.get("pods", self.namespace, pod_name)
            if old is not None and self._ours(old):
                return  # already there: a retried create
            if old is not None and not self._stale(old):
                raise ClusterExists(
                    f"pod {pod_name} exists in namespace {self.namespace} and is not a worker "
                    f"of cluster {self.lease_name!r}; delete it or choose another name"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"pod {pod_name} of the expired cluster {self.lease_name!r} is still "
                    f"terminating after {STALE_POD_TIMEOUT:g} s (is its virtual kubelet "
                    "running?); delete it or choose another cluster name"
                )
            if old is None:
                continue  # gone meanwhile: create again
            if not old["metadata"].get("deletionTimestamp"):
                await self._delete_stale(old)
            await asyncio.sleep(0.5)

    async def _delete_stale(self, pod: JSON) -> None:
        """Delete this very pod (not a newer one of the same name); gone already is fine."""
        meta = pod["metadata"]
        options = {"preconditions": {"uid": meta["uid"]}}
        await self._kube.delete("pods", self.namespace, meta["name"], options=options)

    async def delete(self, pod_name: str) -> None:
        await self._kube.delete("pods", self.namespace, pod_name)

    async def delete_all(self) -> None:
        """Delete every worker pod of the cluster (one call)."""
        await self._kube.call(
            "DELETE", "pods", namespace=self.namespace, params={"labelSelector": self._selector}
        )

    async def logs(self, pod_name: str) -> str:
        try:
            async with self._kube.api.call_api(
                "GET",
                url=f"pods/{pod_name}/log",
                namespace=self.namespace,
                params={"container": WORKER_CONTAINER},
            ) as resp:
                return str(resp.text)
        except ServerError as exc:
            return f"(no log: {exc})"

    async def refresh(self) -> None:
        answer = await self._kube.call(
            "GET", "pods", namespace=self.namespace, params={"labelSelector": self._selector}
        )
        pods = [p for p in answer.get("items") or [] if self._ours(p)]
        self.update({p["metadata"]["name"]: view_of_kube_pod(p) for p in pods})

    async def _delete_lease(self) -> None:
        await self._kube.delete(
            "leases",
            self.namespace,
            self.lease_name,
            version=LEASES_API,
            options={"propagationPolicy": "Background"},
        )

    async def close(self, shutdown: bool) -> None:
        await super().close(shutdown)
        if self.kube is None:
            return
        try:
            if shutdown:
                await self.delete_all()
                await self._delete_lease()
        finally:
            await self.kube.aclose()
