"""Kubelet rules of the pod runner, without processes: probe verdicts, the restart back-off,
and what a container's spec may ask for (expected values written from Kubernetes' docs)."""

from __future__ import annotations

from typing import Any

import pytest

from interlink_core.errors import BadRequest
from interlink_core.jobfiles import apply_supervision, refuse_supervision, supervision
from interlink_core.probes import Backoff, ProbeState, SpecError, supervision_spec


def probe(**kw: Any) -> dict[str, Any]:
    base = {
        "kind": "exec",
        "command": ["true"],
        "initialDelaySeconds": 0,
        "periodSeconds": 10,
        "timeoutSeconds": 1,
        "failureThreshold": 3,
        "successThreshold": 1,
    }
    return {**base, **kw}


def test_readiness_starts_failed_and_needs_success_threshold_in_a_row() -> None:
    p = ProbeState("readiness", probe(successThreshold=2, failureThreshold=2), 0.0)
    assert p.verdict is False
    assert [p.record(ok) for ok in (True, False, True, True)] == [False, False, False, True]
    assert p.verdict is True
    # one failure is not enough with failureThreshold 2; two in a row are
    assert [p.record(ok) for ok in (False, True, False, False)] == [False, False, False, True]
    assert p.verdict is False


def test_liveness_starts_succeeded_and_fails_after_failure_threshold() -> None:
    p = ProbeState("liveness", probe(), 0.0)
    assert p.verdict is True
    assert [p.record(False) for _ in range(3)] == [False, False, True]
    assert p.verdict is False


def test_startup_starts_unknown() -> None:
    p = ProbeState("startup", probe(failureThreshold=1), 0.0)
    assert p.verdict is None
    assert p.record(True) is True
    assert p.verdict is True


def test_probe_runs_after_initial_delay_then_every_period() -> None:
    p = ProbeState("readiness", probe(initialDelaySeconds=5, periodSeconds=10), 100.0)
    assert p.due(104.9) is False
    assert p.due(105.0) is True
    assert p.due(110.0) is False
    assert p.due(115.0) is True
    assert p.next_at == 125.0


def test_backoff_first_restart_at_once_then_doubles_to_cap() -> None:
    b = Backoff()
    delays = [b.delay(1.0) for _ in range(9)]
    assert delays == [0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]


def test_backoff_resets_after_ten_minutes_running() -> None:
    b = Backoff()
    assert [b.delay(1.0) for _ in range(4)] == [0.0, 10.0, 20.0, 40.0]
    assert b.delay(600.0) == 0.0
    assert b.delay(1.0) == 10.0


def test_spec_fills_kubernetes_defaults_and_resolves_named_ports() -> None:
    c = {
        "name": "web",
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"port": "http", "path": "healthz"}},
        "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 2},
        "lifecycle": {"preStop": {"exec": {"command": ["stop", "/data"]}}},
    }
    spec = supervision_spec(c, "spec.containers[0]", "Always", lambda w: w.replace("/data", "/x"))
    assert spec == {
        "restartPolicy": "Always",
        "probes": {
            "liveness": {
                "kind": "tcpSocket",
                "host": "",
                "port": 8080,
                "initialDelaySeconds": 0,
                "periodSeconds": 2,
                "timeoutSeconds": 1,
                "failureThreshold": 3,
                "successThreshold": 1,
            },
            "readiness": {
                "kind": "httpGet",
                "host": "",
                "port": 8080,
                "scheme": "HTTP",
                "path": "/healthz",
                "headers": [],
                "initialDelaySeconds": 0,
                "periodSeconds": 10,
                "timeoutSeconds": 1,
                "failureThreshold": 3,
                "successThreshold": 1,
            },
        },
        "preStop": {"kind": "exec", "command": ["stop", "/x"]},
    }


def test_init_containers_restart_on_failure_unless_never() -> None:
    init = "spec.initContainers[0]"
    assert supervision_spec({"name": "i"}, init, None, str) == {"restartPolicy": "Never"}
    assert supervision_spec({"name": "i"}, init, "Always", str) == {"restartPolicy": "OnFailure"}
    assert supervision_spec({"name": "i"}, init, "Never", str) == {"restartPolicy": "Never"}


@pytest.mark.parametrize(
    ("container", "policy", "message"),
    [
        (
            {"readinessProbe": {"httpGet": {"port": "web"}}},
            None,
            "spec.containers[0].readinessProbe.httpGet.port: no containerPort named 'web'",
        ),
        (
            {"livenessProbe": {"exec": {"command": ["x"]}, "successThreshold": 2}},
            None,
            "spec.containers[0].livenessProbe.successThreshold: must be 1",
        ),
        (
            {"startupProbe": {"exec": {"command": ["x"]}, "periodSeconds": 0}},
            None,
            "spec.containers[0].startupProbe.periodSeconds: 0 must be an integer >= 1",
        ),
        (
            {"readinessProbe": {"grpc": {"port": 9000}}},
            None,
            "spec.containers[0].readinessProbe.grpc: not supported here",
        ),
        (
            {"lifecycle": {"postStart": {}}},
            None,
            "spec.containers[0].lifecycle.postStart: give exactly one of exec, httpGet",
        ),
        ({}, "Sometimes", "spec.restartPolicy: 'Sometimes' must be one of Always"),
    ],
)
def test_bad_specs_name_the_field(container: dict[str, Any], policy: str, message: str) -> None:
    with pytest.raises(SpecError, match=r"^" + message.replace("[", r"\[").replace("]", r"\]")):
        supervision_spec({"name": "c", **container}, "spec.containers[0]", policy, str)
    pod = {"spec": {"restartPolicy": policy}}
    with pytest.raises(BadRequest):
        supervision(pod, {"name": "c", **container}, "spec.containers[0]", str)


def test_backends_without_a_runner_refuse_probes_naming_the_field() -> None:
    pod = {"spec": {"containers": [{"name": "a"}, {"name": "b", "lifecycle": {"preStop": {}}}]}}
    with pytest.raises(BadRequest, match=r"^spec\.containers\[1\]\.lifecycle: no hooks here$"):
        refuse_supervision(pod, "no hooks here")
    refuse_supervision({"spec": {"containers": [{"name": "a"}]}}, "never raised")


def test_status_file_overlays_a_running_container(tmp_path: Any) -> None:
    (tmp_path / "containers" / "c").mkdir(parents=True)
    (tmp_path / "containers" / "c" / "status").write_text(
        '{"restartCount": 2, "started": true, "ready": false, "startedAt": 0,'
        ' "lastState": {"terminated": {"exitCode": 137, "reason": "Error",'
        ' "startedAt": 0, "finishedAt": 60}}}'
    )
    status = {"name": "c", "ready": True, "started": True, "restartCount": 0, "state": {}}
    assert apply_supervision(status, tmp_path, "c") == {
        "name": "c",
        "ready": False,
        "started": True,
        "restartCount": 2,
        "state": {"running": {"startedAt": "1970-01-01T00:00:00Z"}},
        "lastState": {
            "terminated": {
                "exitCode": 137,
                "reason": "Error",
                "startedAt": "1970-01-01T00:00:00Z",
                "finishedAt": "1970-01-01T00:01:00Z",
            }
        },
    }


def test_status_file_shows_crash_loop_back_off(tmp_path: Any) -> None:
    (tmp_path / "containers" / "c").mkdir(parents=True)
    (tmp_path / "containers" / "c" / "status").write_text(
        '{"restartCount": 1, "started": false, "ready": false,'
        ' "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}'
    )
    status = {"name": "c", "state": {"running": {"startedAt": "x"}}}
    out = apply_supervision(status, tmp_path, "c")
    assert out["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}
    assert (out["ready"], out["started"], out["restartCount"]) == (False, False, 1)
