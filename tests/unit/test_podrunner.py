"""The pod runner as a process on a pod directory (no plugin, no Kubernetes): what it writes
for probes, restarts and hooks is what status assembly reports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ENV = {"PATH": "/usr/bin:/bin"}


def until(cond: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := cond():
            return value
        time.sleep(0.05)
    raise AssertionError(f"not met in {timeout}s: {what}")


def read(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def events(pod_dir: Path) -> list[tuple[str, str]]:
    try:
        lines = (pod_dir / "kube-events").read_text().splitlines()
    except OSError:
        return []
    return [(e["reason"], e["message"]) for e in map(json.loads, lines)]


@pytest.fixture
def run_pod(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*containers: dict[str, Any], grace: float = 5) -> Path:
        pod_dir = tmp_path / "pod"
        (pod_dir / "containers").mkdir(parents=True)
        specs = [{"env": ENV, "cwd": str(tmp_path), **c} for c in containers]
        (pod_dir / "spec.json").write_text(json.dumps({"grace": grace, "containers": specs}))
        procs.append(
            subprocess.Popen([sys.executable, "-m", "interlink_core.podrunner", str(pod_dir)])
        )
        return pod_dir

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def probe(command: str, **kw: Any) -> dict[str, Any]:
    return {
        "kind": "exec",
        "command": ["sh", "-c", command],
        "initialDelaySeconds": 0,
        "periodSeconds": 1,
        "timeoutSeconds": 1,
        "failureThreshold": 1,
        "successThreshold": 1,
        **kw,
    }


def test_readiness_follows_the_probe(run_pod: Callable[..., Path], tmp_path: Path) -> None:
    sup = {"restartPolicy": "Never", "probes": {"readiness": probe("test -f flag")}}
    pod = run_pod({"name": "web", "argv": ["sleep", "30"], "supervision": sup})
    status = pod / "containers" / "web" / "status"
    first = until(lambda: read(status), "a status file")
    assert (first["started"], first["ready"], first["restartCount"]) == (True, False, 0)
    until(lambda: events(pod), "an Unhealthy event")
    assert events(pod)[0] == ("Unhealthy", "Readiness probe failed: command 'sh' exited with 1")
    (tmp_path / "flag").touch()
    until(lambda: (read(status) or {}).get("ready"), "ready")


def test_on_failure_restarts_at_once_then_backs_off(run_pod: Callable[..., Path]) -> None:
    sup = {"restartPolicy": "OnFailure"}
    pod = run_pod({"name": "crash", "argv": ["sh", "-c", "exit 3"], "supervision": sup})
    status = pod / "containers" / "crash" / "status"
    back = until(
        lambda: (
            (s := read(status))
            and "waiting" in s
            and s["waiting"]["reason"] != "ContainerCreating"
            and s
        ),
        "CrashLoopBackOff",
    )
    assert back["waiting"] == {
        "reason": "CrashLoopBackOff",
        "message": "back-off 10s restarting failed container=crash",
    }
    assert back["restartCount"] == 1
    assert back["lastState"]["terminated"]["exitCode"] == 3
    assert ("BackOff", "Back-off 10s restarting failed container crash") in events(pod)
    assert not (pod / "containers" / "crash" / "exit").exists()


def test_on_failure_does_not_restart_a_success(run_pod: Callable[..., Path]) -> None:
    pod = run_pod({"name": "ok", "argv": ["true"], "supervision": {"restartPolicy": "OnFailure"}})
    done = until(lambda: read(pod / "containers" / "ok" / "exit"), "exit file")
    assert done["exitCode"] == 0
    assert read(pod / "containers" / "ok" / "status")["restartCount"] == 0  # type: ignore[index]


def test_pre_stop_runs_before_sigterm(run_pod: Callable[..., Path], tmp_path: Path) -> None:
    main = 'trap "test -f hooked && touch termed; exit 0" TERM; sleep 30 & wait'
    sup = {"restartPolicy": "Always", "preStop": {"kind": "exec", "command": ["touch", "hooked"]}}
    pod = run_pod({"name": "m", "argv": ["sh", "-c", main], "supervision": sup})
    until(lambda: (read(pod / "containers" / "m" / "status") or {}).get("startedAt"), "running")
    os.kill(int((pod / "runner.pid").read_text()), signal.SIGTERM)
    done = until(lambda: read(pod / "containers" / "m" / "exit"), "exit file")
    assert done["exitCode"] == 0
    assert (tmp_path / "termed").exists()


def test_post_start_gates_running_and_its_failure_kills(run_pod: Callable[..., Path]) -> None:
    hook = {"kind": "exec", "command": ["sh", "-c", "echo nope; exit 1"]}
    sup = {"restartPolicy": "Never", "postStart": hook}
    pod = run_pod({"name": "h", "argv": ["sleep", "30"], "supervision": sup})
    done = until(lambda: read(pod / "containers" / "h" / "exit"), "exit file")
    assert done["exitCode"] == 143
    assert not (pod / "containers" / "h" / "started").exists()
    assert ("FailedPostStartHook", "PostStart hook failed: nope") in events(pod)


def test_http_and_tcp_probes_dial_the_pod(run_pod: Callable[..., Path]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    http_probe = {"kind": "httpGet", "host": "", "port": port, "scheme": "HTTP", "path": "/"}
    tcp_probe = {"kind": "tcpSocket", "host": "", "port": port}
    sup = {
        "restartPolicy": "Never",
        "probes": {
            "startup": probe("", **http_probe, failureThreshold=30),
            "readiness": probe("", **tcp_probe),
        },
    }
    pod = run_pod({"name": "srv", "argv": server, "supervision": sup, "host": "127.0.0.1"})
    # ready needs the startup probe (HTTP) to succeed, then the readiness probe (TCP)
    status = until(
        lambda: (s := read(pod / "containers" / "srv" / "status")) and s["ready"] and s, "ready"
    )
    assert status["started"] is True


def test_a_missing_page_is_a_failed_http_probe(run_pod: Callable[..., Path]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    missing = {"kind": "httpGet", "host": "", "port": port, "scheme": "HTTP", "path": "/nope"}
    sup = {"restartPolicy": "Never", "probes": {"readiness": probe("", **missing)}}
    pod = run_pod({"name": "srv", "argv": server, "supervision": sup})
    until(
        lambda: [m for _, m in events(pod) if "statuscode: 404" in m],
        "a failed probe naming the status code",
    )
    assert (read(pod / "containers" / "srv" / "status") or {}).get("ready") is False
