"""Plugin statuses → the pod status a kubelet writes (phase, conditions, kubectl's STATUS)."""

from __future__ import annotations

from typing import Any

from interlink_core.models import PodStatus
from interlink_vk.podstatus import display_status, kube_status

NOW = "2026-11-25T10:00:00Z"


def pod(inits: int = 0, mains: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "n", "uid": "u"},
        "spec": {
            "initContainers": [{"name": f"i{k}", "image": "img"} for k in range(inits)],
            "containers": [{"name": f"c{k}", "image": "img"} for k in range(mains)],
        },
    }


def c(name: str, **state: Any) -> dict[str, Any]:
    ready = "running" in state
    return {"name": name, "state": state, "ready": ready, "started": ready}


def waiting(reason: str) -> dict[str, Any]:
    return {"reason": reason}


def term(code: int, reason: str = "") -> dict[str, Any]:
    return {"exitCode": code, "reason": reason or ("Completed" if code == 0 else "Error")}


def status(
    p: dict[str, Any],
    mains: list[dict[str, Any]],
    inits: list[dict[str, Any]] | None = None,
    ip: str | None = None,
) -> dict[str, Any]:
    remote = PodStatus(
        name="p",
        UID="u",
        namespace="n",
        JID="1",
        containers=mains,
        initContainers=inits or [],
        podIP=ip,
    )
    return kube_status(p, remote, NOW)


def conditions(s: dict[str, Any]) -> dict[str, str]:
    return {x["type"]: x["status"] for x in s["conditions"]}


def test_queued_job_is_pending_with_the_batch_reason() -> None:
    s = status(pod(), [c("c0", waiting=waiting("Queued: Priority"))])
    assert s["phase"] == "Pending"
    assert display_status(s) == "Queued: Priority"
    assert conditions(s) == {
        "PodScheduled": "True",
        "Initialized": "True",
        "ContainersReady": "False",
        "Ready": "False",
    }


def test_init_progress_is_shown_like_kubectl() -> None:
    p = pod(inits=2)
    s = status(p, [], [c("i0", waiting=waiting("ContainerCreating"))])
    assert (s["phase"], display_status(s)) == ("Pending", "Init:0/2")
    s = status(p, [], [c("i0", terminated=term(0)), c("i1", running={"startedAt": NOW})])
    assert display_status(s) == "Init:1/2"
    assert conditions(s)["Initialized"] == "False"
    s = status(p, [], [c("i0", waiting=waiting("Queued: Resources"))])
    assert display_status(s) == "Init:Queued: Resources"


def test_failed_init_container_fails_the_pod() -> None:
    s = status(
        pod(inits=1), [c("c0", waiting=waiting("PodInitializing"))], [c("i0", terminated=term(2))]
    )
    assert (s["phase"], s["reason"], display_status(s)) == (
        "Failed",
        "InitContainerFailed",
        "Init:Error",
    )
    assert "container i0 exited with code 2" in s["message"]


def test_running_then_succeeded() -> None:
    p = pod(mains=2)
    s = status(
        p,
        [c("c0", running={"startedAt": NOW}), c("c1", running={"startedAt": NOW})],
        ip="127.1.0.7",
    )
    assert s["phase"] == "Running" and conditions(s)["Ready"] == "True"
    assert s["podIP"] == "127.1.0.7" and s["podIPs"] == [{"ip": "127.1.0.7"}]
    s = status(p, [c("c0", terminated=term(0)), c("c1", terminated=term(0))])
    assert (s["phase"], display_status(s)) == ("Succeeded", "Completed")
    ready = next(x for x in s["conditions"] if x["type"] == "Ready")
    assert ready["reason"] == "PodCompleted"


def test_a_failed_container_fails_the_pod_even_while_another_runs() -> None:
    s = status(pod(mains=2), [c("c0", terminated=term(3)), c("c1", waiting=waiting("x"))])
    assert s["phase"] == "Failed" and "code 3" in s["message"]
    s = status(pod(mains=1), [c("c0", terminated=term(137, "OOMKilled"))])
    assert display_status(s) == "OOMKilled"
    assert "(OOMKilled)" in s["message"]


def test_missing_statuses_are_waiting_and_transition_times_are_kept() -> None:
    p = pod(mains=2)
    s = status(p, [c("c0", running={"startedAt": NOW})])
    assert s["containerStatuses"][1]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    p["status"] = s
    later = kube_status(
        p,
        PodStatus(
            name="p", UID="u", namespace="n", containers=[c("c0", running={"startedAt": NOW})]
        ),
        "2026-11-25T11:00:00Z",
    )
    assert all(x["lastTransitionTime"] == NOW for x in later["conditions"])
    assert later["startTime"] == NOW
