"""Deletes the edge is still owed: pods that left Kubernetes without the VK deleting them at
the edge (a pod that ended is deleted by the apiserver at once, with no grace period for the
VK to act in; a force delete; a pod gone while its create was answered).

Each one is kept, compactly, in an annotation of the virtual node itself, so an edge that is
down gets its deletes when it is back even if the VK restarted meanwhile; the list lives and
dies with the node. A delete is sent with the least pod the edge needs (name, namespace, uid,
job id, container names, grace period), retried with a growing backoff."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from interlink_core.kube import MERGE_PATCH, job_id, status_code
from interlink_core.models import JSON
from interlink_core.names import OWED_DELETES_ANNOTATION

from .config import JOB_ID_ANNOTATION
from .kube import Kube

log = logging.getLogger("interlink.vk.owed")
MAX_KEPT_BYTES = 200_000
"""Most the annotation holds (the apiserver allows 256 KiB for all annotations of an object);
beyond, the remaining deletes are retried from memory only."""
MAX_BACKOFF_SECONDS = 300.0


@dataclass
class Owed:
    """One pod the edge must still delete."""

    namespace: str
    name: str
    uid: str
    job: str
    grace: int | None
    containers: list[str]
    tries: int = 0
    due: float = 0.0  # monotonic time of the next try

    @classmethod
    def of(cls, pod: JSON, job: str | None = None) -> Owed:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        return cls(
            namespace=str(meta["namespace"]),
            name=str(meta["name"]),
            uid=str(meta["uid"]),
            job=job or job_id(pod),
            grace=spec.get("terminationGracePeriodSeconds"),
            containers=[str(c.get("name")) for c in spec.get("containers") or []],
        )

    def pod(self) -> JSON:
        """The pod as the edge's ``/delete`` reads it."""
        spec: JSON = {"containers": [{"name": c} for c in self.containers]}
        if self.grace is not None:
            spec["terminationGracePeriodSeconds"] = self.grace
        meta = {
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
            "annotations": {JOB_ID_ANNOTATION: self.job},
        }
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}

    def row(self) -> list[Any]:
        return [self.namespace, self.name, self.job, self.grace, self.containers]

    @classmethod
    def from_row(cls, uid: str, row: list[Any]) -> Owed:
        namespace, name, job, grace, containers = row
        return cls(str(namespace), str(name), uid, str(job), grace, [str(c) for c in containers])


@dataclass
class OwedDeletes:
    """The node's owed deletes, in memory and in the node's annotation."""

    kube: Kube
    node: str
    owed: dict[str, Owed] = field(default_factory=dict)
    _dirty: bool = False

    async def load(self) -> None:
        """Read what a previous VK left in the node's annotation (nothing if no node yet)."""
        try:
            node = await self.kube.call("GET", f"nodes/{self.node}")
        except Exception as exc:
            if status_code(exc) == 404:
                return
            raise
        text = ((node.get("metadata") or {}).get("annotations") or {}).get(OWED_DELETES_ANNOTATION)
        if not text:
            return
        try:
            rows = json.loads(text)
            for uid, row in rows.items():
                self.owed.setdefault(uid, Owed.from_row(uid, row))
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning(
                "annotation %s of node %s unreadable: %s", OWED_DELETES_ANNOTATION, self.node, exc
            )
        if self.owed:
            log.info("%d edge deletes still owed from before", len(self.owed))

    def add(self, item: Owed) -> None:
        if item.uid not in self.owed:
            self.owed[item.uid] = item
            self._dirty = True

    def due(self) -> list[Owed]:
        now = time.monotonic()
        return [o for o in self.owed.values() if now >= o.due]

    def done(self, uid: str) -> None:
        if self.owed.pop(uid, None) is not None:
            self._dirty = True

    def failed(self, item: Owed, base: float) -> None:
        """Try again later: ``base`` seconds, doubled at each try, at most five minutes."""
        item.tries += 1
        item.due = time.monotonic() + min(base * 2**item.tries, MAX_BACKOFF_SECONDS)

    async def save(self) -> None:
        """Write the list to the node's annotation if it changed (removed when empty)."""
        if not self._dirty:
            return
        rows: dict[str, list[Any]] = {}
        size = 0
        for uid, item in self.owed.items():
            entry = json.dumps({uid: item.row()})
            if size + len(entry) > MAX_KEPT_BYTES:
                log.warning("more owed deletes than the node annotation holds: kept in memory")
                break
            rows[uid] = item.row()
            size += len(entry)
        value = json.dumps(rows, separators=(",", ":")) if rows else None
        body = {"metadata": {"annotations": {OWED_DELETES_ANNOTATION: value}}}
        self._dirty = False  # a change made while this is written is written next time
        try:
            await self.kube.call("PATCH", f"nodes/{self.node}", body=body, headers=MERGE_PATCH)
        except Exception as exc:  # retried at the next cycle
            self._dirty = True
            log.warning("owed deletes not written to node %s: %s", self.node, exc)
