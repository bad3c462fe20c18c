"""The node's pods as the VK holds them between cycles: each pod's JSON, compact, plus the few
fields its loops read on every cycle.

Parsed, a pod is ~12 KB of Python objects (10,000 pods: ~120 MB); as JSON bytes ~2 KB. The pod
loop reads a handful of fields of every pod each cycle, and the whole pod only for the few it
acts on (a create, a changed status, a delete), so each pod is held as its JSON (without
``metadata.managedFields``) and parsed when needed. A status call sends each pod's *slim* JSON,
also held: its identity, annotations, container names and phase, which is all a plugin's or an API
server's ``/status`` reads (ours read the UIDs; upstream's the name, namespace, UID, phase and
container names), so that 10,000 pods are one call of ~3 MB, not 21 MB.
"""

from __future__ import annotations

from dataclasses import dataclass

import pydantic_core

from interlink_core.kube import job_id, parse_time
from interlink_core.models import JSON

from .config import HEARTBEAT_ANNOTATION
from .podstatus import TERMINAL_PHASES

# kubectl apply's copy of the whole manifest: often most of a pod's annotations, of no use there
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass(frozen=True, slots=True)
class Held:
    """One pod: its JSON and the fields the pod loop reads every cycle."""

    uid: str
    namespace: str
    name: str
    version: str  # metadata.resourceVersion
    phase: str
    job: str  # the job id annotation ("" before the pod was submitted)
    deleting: bool  # metadata.deletionTimestamp is set
    created: float  # creation time (unix seconds; 0 if unknown)
    lease: str  # the heartbeat Lease it names ("" if none)
    raw: bytes
    slim: bytes  # what a status call sends (:func:`slim_pod`)

    @classmethod
    def of(cls, pod: JSON) -> Held:
        """Hold ``pod`` (its ``managedFields`` dropped: a third of its JSON, of no use to the
        VK or the edge)."""
        meta = pod["metadata"]
        meta.pop("managedFields", None)
        return cls(
            uid=str(meta["uid"]),
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            version=str(meta.get("resourceVersion") or ""),
            phase=str((pod.get("status") or {}).get("phase") or ""),
            job=job_id(pod),
            deleting=bool(meta.get("deletionTimestamp")),
            created=_created(meta.get("creationTimestamp")),
            lease=str((meta.get("annotations") or {}).get(HEARTBEAT_ANNOTATION) or ""),
            raw=pydantic_core.to_json(pod),
            slim=pydantic_core.to_json(slim_pod(pod)),
        )

    def pod(self) -> JSON:
        """The pod, parsed (a new copy each time)."""
        return dict(pydantic_core.from_json(self.raw))

    @property
    def tracked(self) -> bool:
        """Submitted to the edge, not terminal and not being deleted."""
        return bool(self.job) and not self.deleting and self.phase not in TERMINAL_PHASES

    @property
    def new(self) -> bool:
        """Not submitted yet, and still to be (not terminal, not being deleted)."""
        return not (self.job or self.deleting or self.phase in TERMINAL_PHASES)

    def older_than(self, other: Held) -> bool:
        """Whether ``other`` is a later version of this pod. Kubernetes' resourceVersions are
        etcd revisions: compared as numbers when both are, so a patch's answer is not replaced
        by a watch event that left before it; otherwise the other one is taken as later."""
        if self.version.isdigit() and other.version.isdigit():
            return int(self.version) < int(other.version)
        return True


def slim_pod(pod: JSON) -> JSON:
    """What a ``/status`` call needs of a pod: its name, namespace, UID and annotations (the
    job id; not kubectl's last-applied manifest), its containers' names and its phase; not its
    spec or its status' details."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    keep = ("name", "namespace", "uid", "resourceVersion")
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}
    slim: JSON = {
        "metadata": {
            **{k: meta[k] for k in keep if k in meta},
            **({"annotations": annotations} if annotations else {}),
        },
        "spec": {
            kind: [{"name": c.get("name")} for c in spec[kind]]
            for kind in ("initContainers", "containers")
            if spec.get(kind)
        },
    }
    phase = (pod.get("status") or {}).get("phase")
    if phase:
        slim["status"] = {"phase": phase}
    return slim


def encoded(pods: list[Held], full: bool = False) -> bytes:
    """The pods as one JSON array of their slim JSON (their whole JSON when ``full``), from
    the JSON held (nothing parsed or encoded again)."""
    return b"[" + b",".join(h.raw if full else h.slim for h in pods) + b"]"


def batches(pods: list[Held], max_bytes: int, full: bool = False) -> list[list[Held]]:
    """``pods`` in order, in the fewest runs whose :func:`encoded` body is at most
    ``max_bytes`` (a pod larger than that alone goes in a run of its own)."""
    runs: list[list[Held]] = []
    size = max_bytes + 1  # the first pod starts a run
    for held in pods:
        cost = len(held.raw if full else held.slim) + 1  # its JSON and a comma (or a bracket)
        if size + cost > max_bytes:
            runs.append([])
            size = 1
        runs[-1].append(held)
        size += cost
    return runs


def _created(stamp: object) -> float:
    try:
        return parse_time(str(stamp)).timestamp() if stamp else 0.0
    except ValueError:
        return 0.0
