"""From a plugin's view of a pod (:class:`PodStatus`) to the ``status`` a kubelet would write:
phase, conditions, container statuses and pod IP, following Kubernetes' own rules.

Plugins that run pods with the pod runner (local, SLURM) honour the pod's restartPolicy
inside the job: a container they will restart is reported ``waiting`` (``CrashLoopBackOff``
during back-off) with its ``lastState``, and the pod stays ``Running``; a ``terminated`` state
is final. A backend that never restarts (HTCondor) reports the end at once, so a container that
ended non-zero ends the pod (``Failed``) whatever the restartPolicy says; the message says so.
"""

from __future__ import annotations

from typing import Any

from interlink_core.models import JSON, PodStatus

from .kube import now_rfc3339

TERMINAL_PHASES = ("Succeeded", "Failed")
_CONTAINER_DEFAULTS: dict[str, Any] = {
    "image": "",
    "imageID": "",
    "ready": False,
    "restartCount": 0,
    "started": False,
}


def _state(c: JSON) -> JSON:
    state = c.get("state")
    return state if isinstance(state, dict) else {}


def _complete(statuses: list[JSON], spec_containers: list[JSON]) -> list[JSON]:
    """One status per container of the spec, in spec order; missing ones are waiting."""
    by_name = {c.get("name"): c for c in statuses if isinstance(c, dict)}
    out = []
    for spec in spec_containers:
        name = spec.get("name")
        found = by_name.get(name)
        status = {**_CONTAINER_DEFAULTS, "name": name, "image": spec.get("image", "")}
        if found:
            status.update(found)
        if not _state(status):
            status["state"] = {"waiting": {"reason": "ContainerCreating"}}
        out.append(status)
    return out


def _condition(
    kind: str, ok: bool, now: str, reason: str = "", previous: JSON | None = None
) -> JSON:
    status = "True" if ok else "False"
    since = now
    for cond in (previous or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == status:
            since = cond.get("lastTransitionTime", now)  # keep the time it became so
    cond_out: JSON = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since,
    }
    if reason:
        cond_out["reason"] = reason
    return cond_out


def _restarting(c: JSON) -> bool:
    """A container that ended and waits to be restarted (it has a ``lastState``)."""
    last = c.get("lastState")
    return "waiting" in _state(c) and isinstance(last, dict) and "terminated" in last


def pod_phase(inits: list[JSON], mains: list[JSON]) -> tuple[str, str]:
    """``(phase, reason)`` of a pod from its container statuses."""
    for c in inits:
        term = _state(c).get("terminated")
        if term and term.get("exitCode", 0) != 0:
            return "Failed", "InitContainerFailed"
    main_states = [_state(c) for c in mains]
    if main_states and all("terminated" in s for s in main_states):
        failed = any(s["terminated"].get("exitCode", 0) != 0 for s in main_states)
        return ("Failed", "ContainerFailed") if failed else ("Succeeded", "")
    if any("running" in s for s in main_states) or any(_restarting(c) for c in mains):
        return "Running", ""
    if any("terminated" in s for s in main_states):  # some ended, none running, some waiting
        if any(s["terminated"].get("exitCode", 0) != 0 for s in main_states if "terminated" in s):
            return "Failed", "ContainerFailed"
        return "Running", ""
    return "Pending", ""


def kube_status(pod: JSON, remote: PodStatus, now: str | None = None) -> JSON:
    """The pod's new ``status`` (for a ``pods/status`` patch) from the plugin's answer."""
    now = now or now_rfc3339()
    spec = pod.get("spec") or {}
    previous = pod.get("status") or {}
    inits = _complete(remote.initContainers, spec.get("initContainers") or [])
    mains = _complete(remote.containers, spec.get("containers") or [])
    phase, reason = pod_phase(inits, mains)
    initialized = all(
        "terminated" in _state(c) and _state(c)["terminated"].get("exitCode", 0) == 0 for c in inits
    )
    ready = phase == "Running" and all(c.get("ready") for c in mains)
    ready_reason = (
        "" if ready else ("PodCompleted" if phase in TERMINAL_PHASES else "ContainersNotReady")
    )
    status: JSON = {
        "phase": phase,
        "conditions": [
            _condition("PodScheduled", True, now, previous=previous),
            _condition(
                "Initialized",
                initialized,
                now,
                "" if initialized else "ContainersNotInitialized",
                previous,
            ),
            _condition("ContainersReady", ready, now, ready_reason, previous),
            _condition("Ready", ready, now, ready_reason, previous),
        ],
        "initContainerStatuses": inits,
        "containerStatuses": mains,
        "startTime": previous.get("startTime") or now,
    }
    if reason:
        status["reason"] = reason
        failed = [
            c for c in [*inits, *mains] if _state(c).get("terminated", {}).get("exitCode", 0) != 0
        ]
        if failed:
            term = _state(failed[0])["terminated"]
            status["message"] = (
                f"container {failed[0]['name']} exited with code {term.get('exitCode')}"
                + (f" ({term['reason']})" if term.get("reason") else "")
            )
            if spec.get("restartPolicy", "Always") != "Never" and not failed[0].get("lastState"):
                status["message"] += "; this backend does not restart containers"
    if remote.podIP:
        status["podIP"] = remote.podIP
        status["podIPs"] = [{"ip": remote.podIP}]
    return status


def display_status(status: JSON) -> str:
    """What ``kubectl get pods`` shows in its STATUS column for this status (for events/logs)."""
    inits = status.get("initContainerStatuses") or []
    for i, c in enumerate(inits):
        state = _state(c)
        if "terminated" in state and state["terminated"].get("exitCode", 0) != 0:
            return "Init:Error"
        if "terminated" not in state:
            waiting = state.get("waiting", {}).get("reason")
            if waiting and waiting not in ("PodInitializing", "ContainerCreating"):
                return f"Init:{waiting}"
            return f"Init:{i}/{len(inits)}"
    if status.get("phase") in TERMINAL_PHASES:
        for c in status.get("containerStatuses") or []:
            term = _state(c).get("terminated") or {}
            if term.get("exitCode", 0) != 0:
                return str(term.get("reason") or "Error")
        return "Completed"
    for c in status.get("containerStatuses") or []:
        waiting = _state(c).get("waiting")
        if waiting and waiting.get("reason"):
            return str(waiting["reason"])
    return str(status.get("phase", "Unknown"))
