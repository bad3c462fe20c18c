"""What a worker pod is doing, from its pod status (Kubernetes or the wire) and the scheduler:
queued (with the batch system's reason), starting, running, connected, finished."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

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
class PodView:
    """A worker pod as the cluster shows it."""

    state: WorkerState
    reason: str = ""


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


def view_of_kube_pod(pod: JSON) -> PodView:
    """A pod object from the Kubernetes API."""
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


def view_of_wire_status(status: JSON) -> PodView:
    """A pod status as an interLink API server answers it (direct mode), by the core's
    :func:`~interlink_core.models.pod_state` rule."""
    containers = _containers(status.get("containers"))
    if not containers:
        return SUBMITTED
    state = pod_state(containers)
    if state in ("failed", "succeeded"):
        return PodView(WorkerState.FINISHED, _finished_reason(containers))
    if state == "running":
        return PodView(WorkerState.RUNNING)
    return _waiting_view(containers) or SUBMITTED


@dataclass(frozen=True)
class WorkerRow:
    """One worker pod in the cluster's table."""

    pod: str
    state: WorkerState
    reason: str = ""


def counts(rows: list[WorkerRow]) -> dict[str, int]:
    """How many pods are in each state (every state present, in life order)."""
    found = Counter(r.state for r in rows)
    return {s.value: found.get(s, 0) for s in STATE_ORDER}


def table(rows: list[WorkerRow]) -> str:
    """The worker pods as a plain-text table (``kubectl get``-like)."""
    lines = [f"{'POD':<40} {'STATE':<10} REASON"]
    lines += [f"{r.pod:<40} {r.state.value:<10} {r.reason}".rstrip() for r in rows]
    return "\n".join(lines)
