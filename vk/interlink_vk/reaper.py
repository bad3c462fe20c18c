"""Heartbeat reaper: pods whose client has gone away are deleted.

A pod annotated ``interlink.eu/heartbeat-lease: <name>`` lives only as long as the Lease
``<name>`` of its namespace is renewed by its client (a notebook kernel running a Dask cluster).
Every ``heartbeat_check_seconds`` the reaper reads each such Lease once (bounded concurrency) for
the node's pods the pod controller last listed; when the Lease is gone or expired
(``renewTime`` — or ``creationTimestamp`` if never renewed — plus ``leaseDurationSeconds`` is
past) it records a ``HeartbeatExpired`` Event on each of its pods and deletes them normally, so
the pod controller removes their remote jobs first. An expired Lease labelled
``interlink.eu/heartbeat: "true"`` is deleted too (only if unchanged since it was read). The
garbage collector would also delete pods owned by a deleted Lease; the reaper does not rely on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from interlink_core.kube import LEASES_API, lease_expiry
from interlink_core.models import JSON

from .config import HEARTBEAT_ANNOTATION, HEARTBEAT_LABEL, VKConfig
from .kube import Kube
from .metrics import VKMetrics

log = logging.getLogger("interlink.vk.reaper")
CONCURRENCY = 8


def verdict(lease: JSON | None, name: str, now: datetime) -> str | None:
    """Why the pods of Lease ``name`` must go (``None``: they stay)."""
    if lease is None:
        return f"heartbeat lease {name} does not exist"
    ends = lease_expiry(lease)
    if ends is None or ends >= now:
        return None
    late = (now - ends).total_seconds()
    return (
        f"heartbeat lease {name} expired at {ends.isoformat(timespec='seconds')} "
        f"({late:.0f} s ago; holder {(lease.get('spec') or {}).get('holderIdentity') or '-'})"
    )


@dataclass
class HeartbeatReaper:
    """Deletes the node's pods whose heartbeat Lease expired or vanished."""

    kube: Kube
    config: VKConfig
    pods: Callable[[], list[JSON]]  # the node's pods that name a Lease, as the VK holds them
    metrics: VKMetrics
    _reaped: set[str] = field(default_factory=set)  # UIDs deleted, until they leave the list

    async def run(self, stop: asyncio.Event) -> None:
        """Check every ``heartbeat_check_seconds`` until ``stop``."""
        while not stop.is_set():
            try:
                await self.check()
            except Exception:
                log.exception("heartbeat check failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.heartbeat_check_seconds)

    async def check(self) -> int:
        """One check of every referenced Lease (one GET each); the number of pods deleted."""
        pods = self.pods()
        self._reaped &= {str(p["metadata"]["uid"]) for p in pods}
        by_lease: dict[tuple[str, str], list[JSON]] = {}
        for pod in pods:
            meta = pod["metadata"]
            lease = (meta.get("annotations") or {}).get(HEARTBEAT_ANNOTATION)
            if lease and not meta.get("deletionTimestamp") and meta["uid"] not in self._reaped:
                by_lease.setdefault((meta["namespace"], lease), []).append(pod)
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(ns: str, name: str, members: list[JSON]) -> int:
            async with sem:
                return await self._check_lease(ns, name, members)

        counts = await asyncio.gather(*(one(ns, n, m) for (ns, n), m in by_lease.items()))
        return sum(counts)

    async def _check_lease(self, ns: str, name: str, pods: list[JSON]) -> int:
        try:
            lease = await self.kube.get("leases", ns, name, version=LEASES_API)
        except Exception as exc:  # unknown is not expired: keep the pods
            log.warning("heartbeat lease %s/%s unreadable (%s); its pods are kept", ns, name, exc)
            return 0
        why = verdict(lease, name, datetime.now(UTC))
        if why is None:
            return 0
        names = ", ".join(p["metadata"]["name"] for p in pods)
        log.info("%s (namespace %s): deleting pods %s", why, ns, names)
        reaped = 0
        for pod in pods:
            reaped += await self._reap(pod, why)
        if lease is not None and (lease["metadata"].get("labels") or {}).get(HEARTBEAT_LABEL) == (
            "true"
        ):
            await self._delete_lease(lease)
        return reaped

    async def _reap(self, pod: JSON, why: str) -> int:
        """Event, then a normal delete of this very pod (UID precondition)."""
        meta = pod["metadata"]
        await self.kube.event(
            pod, "HeartbeatExpired", f"{why}: deleting the pod", self.config.node_name, warning=True
        )
        if not await self.kube.delete_pod(pod):
            return 0  # gone already, or another pod of that name
        self._reaped.add(str(meta["uid"]))
        self.metrics.reaped.inc()
        return 1

    async def _delete_lease(self, lease: JSON) -> None:
        """Delete the expired Lease, unless it was renewed (or replaced) since it was read."""
        meta = lease["metadata"]
        preconditions = {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}
        if not await self.kube.delete(
            "leases",
            meta["namespace"],
            meta["name"],
            version=LEASES_API,
            options={"preconditions": preconditions},
        ):
            log.info("heartbeat lease %s/%s changed or gone; kept", meta["namespace"], meta["name"])
            return
        log.info("heartbeat lease %s/%s deleted", meta["namespace"], meta["name"])
