"""Kubernetes mode: worker pods on virtual nodes, created through kr8s. The cluster is a Lease
that the client renews; the pods are owned by it and carry its name, so the virtual kubelet
removes them when the client stops renewing (the kernel died), and the garbage collector does
when the Lease is deleted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import kr8s.asyncio
from kr8s import ServerError

from interlink_core.kube import LEASES_API, KubeJSON, lease_expiry, now_rfc3339, status_code
from interlink_core.models import JSON
from interlink_core.names import HEARTBEAT_LABEL, VK_TYPE_LABEL

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


def lease_expired(lease: JSON) -> bool:
    """Whether the holder stopped renewing ``lease``, by the rule the VK's reaper applies."""
    ends = lease_expiry(lease)
    return ends is not None and ends < datetime.now(UTC)


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
    answer = await kube.call(
        "GET",
        "leases",
        namespace=namespace,
        version=LEASES_API,
        params={"labelSelector": f"{CLUSTER_LABEL},{HEARTBEAT_LABEL}=true"},
    )
    return [record_of_lease(x) for x in answer.get("items") or [] if not lease_expired(x)]


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
            if (node["metadata"].get("labels") or {}).get(VK_TYPE_LABEL) != "virtual-kubelet":
                raise LookupError(f"node: {self.opts.node!r} is not an interLink virtual node")
        elif not await self._virtual_nodes():
            raise LookupError(
                "node: this cluster has no interLink virtual node; start one (interlink vk) "
                "or ask your administrator"
            )

    async def _virtual_nodes(self) -> list[str]:
        answer = await self._kube.call(
            "GET", "nodes", params={"labelSelector": f"{VK_TYPE_LABEL}=virtual-kubelet"}
        )
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
            headers={"Content-Type": "application/merge-patch+json"},
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
        if not name or event not in ("ADDED", "MODIFIED", "DELETED"):
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

    async def create(self, pod_name: str, scheduler: str) -> None:
        assert self.lease is not None
        pod = worker_pod(self.opts, pod_name, scheduler, namespace=self.namespace, owner=self.lease)
        try:
            await self._kube.call("POST", "pods", namespace=self.namespace, body=pod)
        except ServerError as exc:
            if status_code(exc) != 409:  # already there: a retried create
                raise

    async def delete(self, pod_name: str) -> None:
        try:
            await self._kube.call("DELETE", f"pods/{pod_name}", namespace=self.namespace)
        except ServerError as exc:
            if status_code(exc) != 404:
                raise

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
        self.update({p["metadata"]["name"]: view_of_kube_pod(p) for p in answer.get("items") or []})

    async def _delete_lease(self) -> None:
        try:
            await self._kube.call(
                "DELETE",
                f"leases/{self.lease_name}",
                namespace=self.namespace,
                version=LEASES_API,
                body={"propagationPolicy": "Background"},
            )
        except ServerError as exc:
            if status_code(exc) != 404:
                raise

    async def close(self, shutdown: bool) -> None:
        await super().close(shutdown)
        if shutdown and self.kube is not None:
            await self.delete_all()
            await self._delete_lease()
