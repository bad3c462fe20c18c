"""The virtual node: the Node object, its status (capacity, conditions incl. connectivity to the
edge) and its Lease heartbeat, kept up to date the way a kubelet does.

Everything goes through the VK's Kubernetes client (``kube.py``) with plain JSON dicts:

- the Node is created with ``POST /api/v1/nodes`` (or, if it exists, its labels and taints are
  merged in with a JSON merge patch carrying ``metadata.resourceVersion``, so a concurrent change
  by the node lifecycle controller makes it retry instead of being overwritten);
- the status goes with ``PATCH /api/v1/nodes/<name>/status`` (``application/merge-patch+json``);
- the Lease ``kube-node-lease/<name>`` is created once, then replaced (``PUT``) with a new
  ``renewTime`` every ``lease_duration_seconds / 4``.

``Ready`` follows the edge: it is ``True`` only while the last ping of the interLink API server
succeeded; the custom condition ``InterLinkConnectivity`` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from kr8s import ServerError

from interlink_core.client import InterLinkClient
from interlink_core.kube import LEASES_API
from interlink_core.models import JSON, PingAnswer
from interlink_core.names import CONNECTIVITY_CONDITION, VK_TYPE_LABEL, VK_TYPE_VALUE

from .config import VK_TAINT_KEY, VKConfig
from .kube import MERGE_PATCH, Kube, now_rfc3339, status_code
from .metrics import VKMetrics

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
K8S_COMPAT_VERSION = "v1.33.13"

try:
    PACKAGE_VERSION = version("interlink")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    PACKAGE_VERSION = "0.0.0"

KUBELET_VERSION = f"{K8S_COMPAT_VERSION}-interlink"
BASE_LABELS = {
    VK_TYPE_LABEL: VK_TYPE_VALUE,
    "kubernetes.io/role": "agent",
    "kubernetes.io/os": "linux",
    "type": VK_TYPE_VALUE,
}
VK_TAINT: JSON = {"key": VK_TAINT_KEY, "value": "true", "effect": "NoSchedule"}
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# Conditions a real kubelet reports and that never change for a virtual node.
_STEADY_CONDITIONS = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("NetworkUnavailable", "RouteCreated", "the pods' network is the edge's"),
)


def taint_key(t: JSON) -> tuple[str, str]:
    """Taints are unique by key and effect."""
    return (str(t.get("key", "")), str(t.get("effect", "")))


def merge_taints(*groups: list[JSON]) -> list[JSON]:
    """All taints of ``groups`` in order, the first of each key+effect winning."""
    seen: set[tuple[str, str]] = set()
    out: list[JSON] = []
    for group in groups:
        for t in group:
            k = taint_key(t)
            if k not in seen:
                seen.add(k)
                out.append(t)
    return out


def edge_taints(raw: list[JSON]) -> list[JSON]:
    """The usable taints of a ping answer (a key; effect NoSchedule unless a valid one)."""
    out: list[JSON] = []
    for t in raw:
        key = t.get("key") or t.get("Key")
        if not isinstance(key, str) or not key:
            continue
        effect = t.get("effect") or t.get("Effect") or "NoSchedule"
        value = t.get("value") or t.get("Value") or ""
        out.append(
            {
                "key": key,
                "value": str(value),
                "effect": effect if effect in _EFFECTS else "NoSchedule",
            }
        )
    return out


class NodeController:
    """Registers one virtual node and keeps its status and Lease fresh.

    ``kube`` is the VK's Kubernetes client; ``edge`` the client of the interLink API server
    (give it a short retry policy: a ping that waits long delays the NotReady report).
    """

    def __init__(
        self,
        kube: Kube,
        config: VKConfig,
        edge: InterLinkClient,
        *,
        ping_timeout: float | None = None,
        metrics: VKMetrics,
    ) -> None:
        self.kube = kube
        self.metrics = metrics
        self.config = config
        self.edge = edge
        self.name = config.node_name
        self.ping_timeout = ping_timeout or max(5.0, 2 * config.ping_interval_seconds)
        self.capacity = self.configured_capacity()
        self._announced: set[str] = set()  # resource names in the node's status
        self.edge_taints: list[JSON] = []
        self.reachable = False
        self.message = "waiting for the first ping of the interLink edge"
        self._transitions: dict[str, tuple[str, str]] = {}  # type -> (status, since)
        self._managed_taints: set[tuple[str, str]] = set()
        self.uid: str | None = None
        self._lease: JSON | None = None
        self.registered = False

    # -- Kubernetes API ----------------------------------------------------------------------
    async def get_node(self) -> JSON | None:
        """The Node object, or ``None`` if it does not exist."""
        try:
            return await self.kube.call("GET", f"nodes/{self.name}")
        except ServerError as exc:
            if status_code(exc) == 404:
                return None
            raise

    # -- desired state -----------------------------------------------------------------------
    def configured_capacity(self) -> dict[str, str]:
        """The capacity of the configuration (announced until the edge tells otherwise)."""
        cap = self.config.capacity
        out = {"cpu": cap.cpu, "memory": cap.memory, "pods": cap.pods}
        out.update({k: str(v) for k, v in cap.accelerators.items()})
        return out

    def labels(self) -> dict[str, str]:
        """The node's labels: ours, then the configured ones."""
        return {**BASE_LABELS, "kubernetes.io/hostname": self.name, **self.config.labels}

    def taints(self) -> list[JSON]:
        """The taints we manage: the VK taint, the configured ones, the edge's."""
        configured = [t.model_dump() for t in self.config.taints]
        return merge_taints([dict(VK_TAINT)], configured, self.edge_taints)

    def _condition(self, ctype: str, status: str, reason: str, message: str, now: str) -> JSON:
        prev = self._transitions.get(ctype)
        if prev is None or prev[0] != status:
            self._transitions[ctype] = (status, now)
        return {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": self._transitions[ctype][1],
        }

    def conditions(self) -> list[JSON]:
        """Ready and InterLinkConnectivity follow the last ping; the pressures are all False."""
        now = now_rfc3339()
        out = [
            self._condition(ctype, "False", reason, message, now)
            for ctype, reason, message in _STEADY_CONDITIONS
        ]
        if self.reachable:
            out.append(
                self._condition(
                    "Ready", "True", "KubeletReady", "the interLink edge is reachable", now
                )
            )
            out.append(
                self._condition(CONNECTIVITY_CONDITION, "True", "EdgeReachable", self.message, now)
            )
        else:
            out.append(
                self._condition(
                    "Ready",
                    "False",
                    "KubeletNotReady",
                    f"the interLink edge is unreachable: {self.message}",
                    now,
                )
            )
            out.append(
                self._condition(
                    CONNECTIVITY_CONDITION, "False", "EdgeUnreachable", self.message, now
                )
            )
        return out

    def status(self) -> JSON:
        """The node's status, as a merge patch (resources no longer offered set to null)."""
        resources: dict[str, str | None] = dict(self.capacity)
        for gone in self._announced - set(self.capacity):
            resources[gone] = None
        return {
            "capacity": resources,
            "allocatable": dict(resources),
            "conditions": self.conditions(),
            "addresses": [
                {"type": "InternalIP", "address": self.config.internal_ip},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.config.kubelet_port}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": "",
                "osImage": "interLink",
                "containerRuntimeVersion": f"interlink://{PACKAGE_VERSION}",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    # -- registration and updates ------------------------------------------------------------
    def _remember(self, node: JSON) -> None:
        self.uid = node.get("metadata", {}).get("uid")
        # Keep the transition times the node already shows, so a restart is not a flip.
        for c in node.get("status", {}).get("conditions") or []:
            if "type" in c and "status" in c and "lastTransitionTime" in c:
                self._transitions.setdefault(c["type"], (c["status"], c["lastTransitionTime"]))

    async def register(self) -> None:
        """Create the Node (or merge our labels and taints into the existing one), then write
        its status."""
        node = await self.get_node()
        created = False
        if node is None:
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": self.name, "labels": self.labels()},
                "spec": {"taints": self.taints()},
            }
            try:
                node = await self.kube.call("POST", "nodes", body=body)
                self._managed_taints = {taint_key(t) for t in self.taints()}
                created = True
            except ServerError as exc:
                if status_code(exc) != 409:
                    raise  # 409: created meanwhile, merge below
        if not created:
            node = await self._merge_spec(labels=True)
        assert node is not None
        self._remember(node)
        self.registered = True
        await self.patch_status()
        log.info("node %s registered (uid %s)", self.name, self.uid)

    async def _merge_spec(self, labels: bool = False) -> JSON:
        """Merge our taints (and labels) into the node; taints of others are kept, ours that
        are no longer wanted are removed. Retries on conflicts."""
        for attempt in range(5):
            node = await self.get_node()
            if node is None:
                raise RuntimeError(f"node {self.name} disappeared")
            wanted = self.taints()
            wanted_keys = {taint_key(t) for t in wanted}
            drop = self._managed_taints | wanted_keys
            current = node.get("spec", {}).get("taints") or []
            merged = [t for t in current if taint_key(t) not in drop] + wanted
            patch: JSON = {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]}}
            if labels:
                patch["metadata"]["labels"] = self.labels()
            if merged != current or labels:
                patch["spec"] = {"taints": merged}
                try:
                    node = await self.kube.call(
                        "PATCH", f"nodes/{self.name}", body=patch, headers=MERGE_PATCH
                    )
                except ServerError as exc:
                    if status_code(exc) == 409 and attempt < 4:
                        continue
                    raise
            self._managed_taints = wanted_keys
            return node
        raise RuntimeError("unreachable")  # pragma: no cover

    async def patch_status(self) -> None:
        """Write the node's status (merge patch on the ``status`` subresource)."""
        body = {"status": self.status()}
        node = await self.kube.call(
            "PATCH", f"nodes/{self.name}/status", body=body, headers=MERGE_PATCH
        )
        self.uid = node.get("metadata", {}).get("uid", self.uid)
        self._announced = set(self.capacity)

    async def probe(self) -> bool:
        """Ping the edge and update what we know (capacity, taints, reachability); no
        Kubernetes call. True when the edge's taints changed."""
        try:
            async with self.metrics.edge_call("ping"), asyncio.timeout(self.ping_timeout):
                answer: PingAnswer = await self.edge.ping()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure means unreachable
            msg = str(exc) or type(exc).__name__
            if self.reachable or msg != self.message:
                log.warning("interLink edge unreachable: %s", msg)
            self.reachable = False
            self.metrics.node_ready.set(0)
            self.message = msg
            return False
        if not self.reachable:
            log.info("interLink edge reachable (%s)", answer.status)
        self.reachable = True
        self.metrics.node_ready.set(1)
        self.message = f"the interLink edge answered the ping: {answer.status}"
        res = answer.resources
        if res is not None:  # the edge's figures over the configured ones
            capacity = self.configured_capacity()
            for name in ("cpu", "memory", "pods"):
                value = getattr(res, name)
                if value:
                    capacity[name] = value
            for acc in res.accelerators:
                capacity[acc.resourceType] = str(acc.available)
            self.capacity = capacity
        if answer.taints is None:  # no taints in the answer: the edge's stay as they are
            return False
        taints = edge_taints(answer.taints)
        changed = taints != self.edge_taints
        self.edge_taints = taints
        return changed

    async def ping_once(self) -> None:
        """One ping of the edge, then the node's taints (if the edge changed them) and status."""
        taints_changed = await self.probe()
        if not self.registered:
            await self.register()
            return
        if taints_changed:
            await self._merge_spec()
        try:
            await self.patch_status()
        except ServerError as exc:
            if status_code(exc) == 404:  # someone deleted the node: register it again
                self.registered = False
                self._managed_taints = set()
                self._lease = None
            raise

    # -- Lease -------------------------------------------------------------------------------
    def _lease_body(self) -> JSON:
        meta: JSON = {"name": self.name, "namespace": LEASE_NAMESPACE}
        if self.uid:
            meta["ownerReferences"] = [
                {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.uid}
            ]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.name,
                "leaseDurationSeconds": self.config.lease_duration_seconds,
                "renewTime": now_rfc3339(micro=True),
            },
        }

    async def renew_lease(self) -> JSON:
        """Create or renew the node's Lease; the Lease as stored."""
        url = f"leases/{self.name}"
        lease = self._lease
        if lease is None:
            try:
                lease = await self.kube.call(
                    "GET", url, version=LEASES_API, namespace=LEASE_NAMESPACE
                )
            except ServerError as exc:
                if status_code(exc) != 404:
                    raise
                self._lease = await self.kube.call(
                    "POST",
                    "leases",
                    body=self._lease_body(),
                    version=LEASES_API,
                    namespace=LEASE_NAMESPACE,
                )
                return self._lease
        fresh = self._lease_body()
        lease["spec"] = {**lease.get("spec", {}), **fresh["spec"]}
        if self.uid and not lease["metadata"].get("ownerReferences"):
            lease["metadata"]["ownerReferences"] = fresh["metadata"]["ownerReferences"]
        try:
            self._lease = await self.kube.call(
                "PUT", url, body=lease, version=LEASES_API, namespace=LEASE_NAMESPACE
            )
        except ServerError as exc:
            self._lease = None  # re-read it next time (conflict, or deleted)
            if status_code(exc) == 404:
                return await self.renew_lease()
            raise
        return self._lease

    # -- loop --------------------------------------------------------------------------------
    async def _every(
        self, what: str, seconds: float, step: Callable[[], Awaitable[Any]], stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s of node %s failed (retrying): %r", what, self.name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)

    async def run(self, stop: asyncio.Event) -> None:
        """Register, then ping the edge and renew the Lease until ``stop`` is set. Failures of
        the Kubernetes API or of the edge are logged and retried."""
        await self.probe()
        delay = 0.5
        while not stop.is_set():
            try:
                await self.register()
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("registering node %s failed (retrying): %r", self.name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)
        if stop.is_set():
            return
        renew = self.config.lease_duration_seconds / 4
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._every("lease renewal", renew, self.renew_lease, stop))
            tg.create_task(
                self._every(
                    "status update", self.config.ping_interval_seconds, self.ping_once, stop
                )
            )
