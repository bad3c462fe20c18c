"""Kubelet rules for one container, in the standard library only: probe and hook handlers
(exec, httpGet, tcpSocket), the probe result state machine, and the restart back-off.

Plugins call :func:`supervision_spec` when a pod is created: it checks the container's
``startupProbe``, ``livenessProbe``, ``readinessProbe`` and ``lifecycle`` and turns them into
plain JSON for the pod runner (:mod:`interlink_core.podrunner`), which uses the rest of this
module. The runner also runs inside batch jobs as a file next to this one (``python3`` is all a
compute node needs), so nothing here imports anything outside the standard library.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROBE_KINDS = ("startup", "liveness", "readiness")
"""Probe kinds in the order a kubelet gates them: startup first, then the other two."""
PROBE_FIELDS = {
    "startup": "startupProbe",
    "liveness": "livenessProbe",
    "readiness": "readinessProbe",
}
HOOK_FIELDS = ("postStart", "preStop")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
BACKOFF_FIRST = 10.0
BACKOFF_CAP = 300.0
BACKOFF_RESET = 600.0
"""A container that ran this long before it ended restarts without delay (back-off reset)."""
OUTPUT_LIMIT = 1024
"""Bytes of a probe's output kept for its Event message."""

_PROBE_NUMBERS = {
    # field: (default, least allowed)
    "initialDelaySeconds": (0, 0),
    "periodSeconds": (10, 1),
    "timeoutSeconds": (1, 1),
    "failureThreshold": (3, 1),
    "successThreshold": (1, 1),
}


class SpecError(ValueError):
    """A probe or hook the runner cannot honour; the message names the field."""


# --- checking a container's spec ------------------------------------------------------------


def _port(value: Any, where: str, ports: dict[str, int]) -> int:
    if isinstance(value, str) and not value.isdigit():
        if value not in ports:
            raise SpecError(
                f"{where}: no containerPort named {value!r} in this container; name one in "
                "ports[] or give a number"
            )
        return ports[value]
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise SpecError(f"{where}: {value!r} is not a port number or name") from None
    if not 0 < port < 65536:
        raise SpecError(f"{where}: {port} is not a port number (1-65535)")
    return port


def handler_spec(
    obj: Any, where: str, ports: dict[str, int], fix: Callable[[str], str]
) -> dict[str, Any]:
    """One handler (exec, httpGet or tcpSocket) as the runner's JSON. ``fix`` maps each word
    of an exec command as the container's own command is mapped (volume paths, ``$(VAR)``)."""
    if not isinstance(obj, dict):
        raise SpecError(f"{where}: must be an object")
    kinds = [k for k in ("exec", "httpGet", "tcpSocket", "grpc", "sleep") if obj.get(k)]
    if len(kinds) != 1:
        raise SpecError(f"{where}: give exactly one of exec, httpGet, tcpSocket")
    kind = kinds[0]
    if kind in ("grpc", "sleep"):
        raise SpecError(f"{where}.{kind}: not supported here; use exec, httpGet or tcpSocket")
    body = obj[kind]
    if kind == "exec":
        command = body.get("command")
        if not isinstance(command, list) or not command:
            raise SpecError(f"{where}.exec.command: must be a non-empty list of strings")
        return {"kind": "exec", "command": [fix(str(word)) for word in command]}
    out: dict[str, Any] = {
        "kind": kind,
        "host": str(body.get("host") or ""),
        "port": _port(body.get("port"), f"{where}.{kind}.port", ports),
    }
    if kind == "httpGet":
        scheme = str(body.get("scheme") or "HTTP").upper()
        if scheme not in ("HTTP", "HTTPS"):
            raise SpecError(f"{where}.httpGet.scheme: {scheme!r} must be HTTP or HTTPS")
        path = str(body.get("path") or "/")
        out.update(scheme=scheme, path=path if path.startswith("/") else "/" + path)
        headers = body.get("httpHeaders") or []
        out["headers"] = [[str(h.get("name", "")), str(h.get("value", ""))] for h in headers]
    return out


def probe_spec(
    obj: Any, where: str, kind: str, ports: dict[str, int], fix: Callable[[str], str]
) -> dict[str, Any]:
    """One probe as the runner's JSON, with Kubernetes' defaults filled in."""
    if not isinstance(obj, dict):
        raise SpecError(f"{where}: must be an object")
    out = handler_spec(obj, where, ports, fix)
    for name, (default, least) in _PROBE_NUMBERS.items():
        value = obj.get(name)
        value = default if value is None else value
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise SpecError(f"{where}.{name}: {value!r} must be an integer >= {least}")
        out[name] = value
    if kind in ("startup", "liveness") and out["successThreshold"] != 1:
        raise SpecError(f"{where}.successThreshold: must be 1 for a {kind} probe")
    return out


def supervision_spec(
    container: dict[str, Any], where: str, restart_policy: Any, fix: Callable[[str], str]
) -> dict[str, Any]:
    """What the runner needs to supervise one container: its probes, hooks and restart
    policy (init containers: restarted on failure unless the pod's policy is ``Never``, and
    never probed, as a kubelet does; no policy at all, which only a pod that did not come
    through Kubernetes can have, is ``Never``). Raises :class:`SpecError` naming the field."""
    # Kubernetes' API server fills in Always; a pod sent without it (direct mode) runs once
    policy = "Never" if restart_policy is None else restart_policy
    if policy not in RESTART_POLICIES:
        raise SpecError(f"spec.restartPolicy: {policy!r} must be one of Always, OnFailure, Never")
    ports = {
        str(p["name"]): int(p["containerPort"])
        for p in container.get("ports") or []
        if isinstance(p, dict) and p.get("name") and p.get("containerPort")
    }
    init = where.startswith("spec.initContainers")
    if init:  # a kubelet reruns a failed init container unless the pod's policy is Never
        policy = "Never" if policy == "Never" else "OnFailure"
    out: dict[str, Any] = {"restartPolicy": policy}
    probes = {}
    for kind, name in PROBE_FIELDS.items():
        if container.get(name) is not None:
            if init:
                raise SpecError(f"{where}.{name}: init containers cannot have probes")
            probes[kind] = probe_spec(container[name], f"{where}.{name}", kind, ports, fix)
    if probes:
        out["probes"] = probes
    lifecycle = container.get("lifecycle") or {}
    for hook in HOOK_FIELDS:
        if lifecycle.get(hook) is not None:
            if init:
                raise SpecError(f"{where}.lifecycle.{hook}: init containers cannot have hooks")
            out[hook] = handler_spec(lifecycle[hook], f"{where}.lifecycle.{hook}", ports, fix)
    return out


def needs_supervision(spec: dict[str, Any]) -> bool:
    """True if a container's supervision spec asks for more than running it once."""
    return spec.get("restartPolicy") != "Never" or len(spec) > 1


# --- running a handler -----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a handler runs: the container's exec prefix, env and working directory, and the
    host its network handlers dial when they name none."""

    exec_prefix: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    cwd: str | None = None
    host: str = "127.0.0.1"


def run_handler(handler: dict[str, Any], target: Target, timeout: float | None) -> tuple[bool, str]:
    """Run one handler; ``(succeeded, what it said)``. Blocking: call it from a thread."""
    kind = handler["kind"]
    try:
        if kind == "exec":
            return _run_exec(handler, target, timeout)
        host = handler.get("host") or target.host
        if kind == "tcpSocket":
            with socket.create_connection((host, handler["port"]), timeout=timeout):
                return True, ""
        return _run_http(handler, host, timeout)
    except subprocess.TimeoutExpired:
        return False, f"command timed out after {timeout:g}s"
    except (OSError, http.client.HTTPException) as exc:
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return False, f"timeout after {timeout:g}s connecting to port {handler['port']}"
        where = f"{host}:{handler['port']}"
        if kind == "httpGet":
            where = f"{handler['scheme'].lower()}://{where}{handler['path']}"
        return False, f"{kind} {where}: {exc.strerror or exc}"  # type: ignore[union-attr]


def _run_exec(handler: dict[str, Any], target: Target, timeout: float | None) -> tuple[bool, str]:
    proc = subprocess.Popen(
        [*target.exec_prefix, *handler["command"]],
        env=target.env,
        cwd=target.cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)  # the whole command, not only its first process
        proc.wait()
        raise
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
    output = out[:OUTPUT_LIMIT].decode(errors="replace").strip()
    if proc.returncode == 0:
        return True, output
    return False, output or f"command {handler['command'][0]!r} exited with {proc.returncode}"


def _run_http(handler: dict[str, Any], host: str, timeout: float | None) -> tuple[bool, str]:
    conn: http.client.HTTPConnection
    if handler["scheme"] == "HTTPS":
        # a kubelet does not verify a probe's certificate either
        context = ssl._create_unverified_context()  # noqa: S323
        conn = http.client.HTTPSConnection(host, handler["port"], timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, handler["port"], timeout=timeout)
    try:
        headers = {"User-Agent": "kube-probe/interlink", **dict(handler.get("headers") or [])}
        conn.request("GET", handler["path"], headers=headers)
        resp = conn.getresponse()
        body = resp.read(OUTPUT_LIMIT)
    finally:
        conn.close()
    if 200 <= resp.status < 400:
        return True, ""
    text = body.decode(errors="replace").strip()
    return False, f"HTTP probe failed with statuscode: {resp.status}" + (f": {text}" * bool(text))


# --- the state machines ----------------------------------------------------------------------


class ProbeState:
    """One probe of one container instance, as a kubelet's probe worker keeps it: the verdict
    changes only after ``failureThreshold`` failures or ``successThreshold`` successes in a
    row. Readiness starts failed, liveness succeeded, startup unknown (``None``)."""

    def __init__(self, kind: str, spec: dict[str, Any], started_at: float) -> None:
        self.kind = kind
        self.spec = spec
        self.next_at = started_at + spec["initialDelaySeconds"]
        self.verdict: bool | None = {"readiness": False, "liveness": True}.get(kind)
        self._last: bool | None = None
        self._run = 0

    def due(self, now: float) -> bool:
        """Is a probe run due at ``now``? (Also moves the next run one period on.)"""
        if now < self.next_at:
            return False
        self.next_at = now + self.spec["periodSeconds"]
        return True

    def record(self, ok: bool) -> bool:
        """Count one result; True if the verdict changed."""
        self._run = self._run + 1 if ok == self._last else 1
        self._last = ok
        threshold = self.spec["successThreshold" if ok else "failureThreshold"]
        if self._run < threshold or self.verdict == ok:
            return False
        self.verdict = ok
        return True


class Backoff:
    """The kubelet's crash-loop back-off: the first restart at once, then 10 s, doubling up
    to 300 s; a container that ran ``BACKOFF_RESET`` seconds starts the sequence again."""

    def __init__(self) -> None:
        self._next = 0.0

    def delay(self, ran_for: float) -> float:
        """Seconds to wait before the next restart of a container that ran ``ran_for`` s."""
        if ran_for >= BACKOFF_RESET:
            self._next = 0.0
        delay = self._next
        self._next = min(BACKOFF_CAP, max(BACKOFF_FIRST, 2 * self._next))
        return delay


def should_restart(policy: str, exit_code: int) -> bool:
    """Does the restart policy restart a container that ended with ``exit_code``?"""
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)
