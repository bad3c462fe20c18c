"""The batch state of a notebook pod, as one line for the hub's spawn progress."""

from __future__ import annotations

from typing import Any

from interlink_core.names import JOB_ID_ANNOTATION

UPSTREAM_JOB_ID = "JobID"
"""The annotation upstream interLink writes the job id to."""


def batch_state(pod: dict[str, Any]) -> str | None:
    """``Submitted (job 42)``, ``Queued: Priority (job 42)``, ``Running (job 42)`` or
    ``Failed: <why> (job 42)``; ``None`` before the virtual kubelet submitted the pod."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    job = annotations.get(JOB_ID_ANNOTATION) or annotations.get(UPSTREAM_JOB_ID)
    if not job:
        return None
    status = pod.get("status") or {}
    suffix = f" (job {job})"
    if status.get("phase") == "Failed":
        return f"Failed: {status.get('message') or status.get('reason') or 'unknown'}{suffix}"
    containers = status.get("containerStatuses") or []
    state = (containers[0].get("state") or {}) if containers else {}
    if "running" in state:
        return "Running" + suffix
    if "terminated" in state:
        return f"Exited with code {state['terminated'].get('exitCode')}" + suffix
    reason = (state.get("waiting") or {}).get("reason") or ""
    if reason.startswith("Queued"):
        return reason + suffix
    return "Submitted" + suffix
