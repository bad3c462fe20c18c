"""What a worker pod is doing, from its pod status (Kubernetes or the wire) and the scheduler:
queued (with the batch system's reason), starting, running, connected, finished."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from interlink_core.kube import job_id
from interlink_core.models import JSON, pod_state


class WorkerState(StrEnum):
    """The life of a worker job, in order."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    CONNECTED = "connected"
    FINISHED = "finished"


STATE_ORDER = list(WorkerState)


@dataclass(frozen=True)
class PodDetail:
    """What a user wants to know about a worker pod besides its state."""

    job_id: str = ""
    node: str = ""
    created: str | None = None  # RFC 3339
    restarts: int = 0


@dataclass(frozen=True)
class PodView:
    """A worker pod as the cluster shows it."""

    state: WorkerState
    reason: str = ""
    detail: PodDetail = PodDetail()


SUBMITTED = PodView(WorkerState.QUEUED, "submitted")


def _containers(statuses: Any) -> list[JSON]:
    return [c for c in statuses or [] if isinstance(c, dict)]


def _state(container: JSON) -> JSON:
    state = container.get("state")
    return state if isinstance(state, dict) else {}


def _finished_reason(containers: list[JSON]) -> str:
    for c in containers:
        term = _state(c).get("terminated") or {}
        if term.get("exitCode", 0) != 0:
            return f"{term.get('reason') or 'Error'} (exit code {term.get('exitCode')})"
    return "Completed"


def _waiting_view(containers: list[JSON]) -> PodView | None:
    """Queued or starting, from the containers' waiting reasons (``Queued: <reason>`` comes
    from the batch system)."""
    for c in containers:
        waiting = _state(c).get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        if reason.startswith("Queued"):
            detail = reason.partition(":")[2].strip() or str(waiting.get("message") or "")
            return PodView(WorkerState.QUEUED, detail)
    for c in containers:
        waiting = _state(c).get("waiting") or {}
        if waiting:
            return PodView(WorkerState.STARTING, str(waiting.get("reason") or ""))
    return None


def _restarts(containers: list[JSON]) -> int:
    return sum(int(c.get("restartCount") or 0) for c in containers)


def kube_detail(pod: JSON) -> PodDetail:
    """Job id (written by the virtual kubelet), node, creation time and restarts of a pod."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    return PodDetail(
        job_id=job_id(pod),
        node=str((pod.get("spec") or {}).get("nodeName") or ""),
        created=meta.get("creationTimestamp"),
        restarts=_restarts(_containers(status.get("containerStatuses"))),
    )


def _kube_state(pod: JSON) -> PodView:
    status = pod.get("status") or {}
    phase = status.get("phase")
    containers = _containers(status.get("containerStatuses"))
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return PodView(WorkerState.FINISHED, "Terminating")
    if phase in ("Succeeded", "Failed"):
        return PodView(WorkerState.FINISHED, status.get("reason") or _finished_reason(containers))
    if phase == "Running":
        return PodView(WorkerState.RUNNING)
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return PodView(WorkerState.QUEUED, str(cond.get("message") or cond.get("reason")))
    return _waiting_view(containers) or SUBMITTED


def view_of_kube_pod(pod: JSON) -> PodView:
    """A pod object from the Kubernetes API."""
    view = _kube_state(pod)
    return PodView(view.state, view.reason, kube_detail(pod))


def _wire_state(containers: list[JSON]) -> PodView:
    if not containers:
        return SUBMITTED
    state = pod_state(containers)
    if state in ("failed", "succeeded"):
        return PodView(WorkerState.FINISHED, _finished_reason(containers))
    if state == "running":
        return PodView(WorkerState.RUNNING)
    return _waiting_view(containers) or SUBMITTED


def view_of_wire_status(status: JSON, detail: PodDetail = PodDetail()) -> PodView:
    """A pod status as an interLink API server answers it (direct mode), by the core's
    :func:`~interlink_core.models.pod_state` rule; ``detail`` is what the caller knows of the
    pod (job id, edge, submit time)."""
    containers = _containers(status.get("containers"))
    view = _wire_state(containers)
    job_id = str(status.get("JID") or "") or detail.job_id
    return PodView(
        view.state,
        view.reason,
        PodDetail(job_id, detail.node, detail.created, _restarts(containers)),
    )


@dataclass(frozen=True)
class WorkerRow:
    """One worker pod in the cluster's table."""

    pod: str
    state: WorkerState
    reason: str = ""
    detail: PodDetail = PodDetail()

    def as_json(self) -> JSON:
        """The row as the Jupyter extension and ``from_name`` clients receive it."""
        return {
            "pod": self.pod,
            "state": self.state.value,
            "reason": self.reason,
            **asdict(self.detail),
        }

    @classmethod
    def from_json(cls, data: JSON) -> WorkerRow:
        """The inverse of :meth:`as_json`."""
        detail = PodDetail(
            job_id=str(data.get("job_id") or ""),
            node=str(data.get("node") or ""),
            created=data.get("created"),
            restarts=int(data.get("restarts") or 0),
        )
        return cls(
            str(data["pod"]), WorkerState(data["state"]), str(data.get("reason") or ""), detail
        )


def counts(rows: list[WorkerRow]) -> dict[str, int]:
    """How many pods are in each state (every state present, in life order)."""
    found = Counter(r.state for r in rows)
    return {s.value: found.get(s, 0) for s in STATE_ORDER}


def table(rows: list[WorkerRow]) -> str:
    """The worker pods as a plain-text table (``kubectl get``-like)."""
    lines = [f"{'POD':<40} {'STATE':<10} REASON"]
    lines += [f"{r.pod:<40} {r.state.value:<10} {r.reason}".rstrip() for r in rows]
    return "\n".join(lines)
