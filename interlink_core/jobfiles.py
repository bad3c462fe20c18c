"""The files a job wrapper writes for each container, and reading them back.

Batch backends (SLURM, HTCondor) run a wrapper script that leaves, per container, in
``<pod dir>/containers/<name>/``: ``started`` (unix time), ``exit``
(``{"exitCode", "finishedAt"}``) and ``0.log`` (CRI log lines). This module turns those files
into Kubernetes container states and serves the logs, so every backend reads them the same way.
Files below a pod directory are read through :mod:`.beneath` (a tenant's job owns them: no
symlink is followed, no FIFO blocks, no file is read without bound).
"""

from __future__ import annotations

import asyncio
import errno
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import beneath
from .errors import BadRequest, InsufficientStorage, NotFound
from .logs import follow_log, read_log
from .models import JSON, LogStruct, PodStatus
from .probes import SpecError, supervision_spec
from .store import JobRecord

EVENTS_FILE = "kube-events"
EVENTS_SHOWN = 20
"""The latest Events of a pod sent with each status (the VK forwards those it has not seen)."""


@asynccontextmanager
async def new_pod_dir(root: Path, uid: str) -> AsyncIterator[Path]:
    """A fresh private directory for a pod's job files (a leftover of a create that crashed
    before it was recorded is removed first); removed again if the body raises, so a failed
    submission leaves nothing behind. A full disk (or quota) becomes
    :class:`InsufficientStorage` naming ``root``."""
    pod_dir = root / uid
    if pod_dir.exists():
        await asyncio.to_thread(shutil.rmtree, pod_dir, True)
    try:
        pod_dir.mkdir(mode=0o700, parents=True)
        yield pod_dir
    except BaseException as exc:
        await asyncio.to_thread(shutil.rmtree, pod_dir, True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage(
                f"the plugin cannot write the pod's files under {root}: {exc.strerror}; "
                "free space there (or raise the quota), then create the pod again"
            ) from None
        raise


def write_job_files(pod_dir: Path, files: dict[str, str], executable: Collection[str]) -> None:
    """Write a job's files under ``pod_dir``: the ``executable`` ones (scripts) mode 0700,
    the others (volumes, which may hold secrets) 0600."""
    for rel, content in files.items():
        path = pod_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(0o700 if rel in executable else 0o600)


def rfc3339(t: float) -> str:
    """A unix time as Kubernetes writes times (seconds, UTC)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_text(pod_dir: str | Path, rel: str) -> str | None:
    """A small file's text below ``pod_dir``, or ``None`` if it is not there (yet)."""
    return beneath.read_small(pod_dir, rel)


def read_float(pod_dir: str | Path, rel: str) -> float | None:
    """A file holding one number, or ``None``."""
    text = read_text(pod_dir, rel)
    try:
        return float(text.strip()) if text else None
    except ValueError:
        return None


def read_json(pod_dir: str | Path, rel: str) -> dict[str, Any] | None:
    """A small JSON object file, or ``None`` if it is not there (yet) or not an object."""
    text = read_text(pod_dir, rel)
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def base_status(record: JobRecord, name: str) -> JSON:
    """A container status without its state yet."""
    images: dict[str, str] = record.data.get("images", {})
    return {
        "name": name,
        "image": images.get(name, ""),
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "started": False,
    }


OOM_MARKER = "oom"
"""Written in a container's directory by a runtime wrapper when the kernel's OOM killer ended
the container (see :mod:`interlink_plugins.runtimes`)."""
OOM_EXIT_CODE = 137


def exit_reason(pod_dir: str | Path, name: str, code: int, reason: str) -> str:
    """``OOMKilled`` for an exit 137 whose container directory holds the :data:`OOM_MARKER`,
    else ``reason``."""
    if code == OOM_EXIT_CODE and beneath.exists(pod_dir, f"containers/{name}/{OOM_MARKER}"):
        return "OOMKilled"
    return reason


def container_files(
    record: JobRecord, name: str, container_id: str
) -> tuple[float | None, JSON | None]:
    """``(started, terminated)`` from a container's files: its start time if it started, and
    its ``terminated`` state if its exit file is there."""
    pod_dir = str(record.data.get("dir", ""))
    started = read_float(pod_dir, f"containers/{name}/started")
    info = read_json(pod_dir, f"containers/{name}/exit")
    if info is None:
        return started, None
    try:
        code = int(info.get("exitCode", 1))
        finished = float(info.get("finishedAt") or started or 0)
    except (ValueError, TypeError):
        return started, None
    return started, {
        "exitCode": code,
        "reason": exit_reason(pod_dir, name, code, "Completed" if code == 0 else "Error"),
        "startedAt": rfc3339(started or finished),
        "finishedAt": rfc3339(finished),
        "containerID": container_id,
    }


def container_logs(
    record: JobRecord,
    request: LogStruct,
    finished: Callable[[], Awaitable[bool]],
    no_restart: str = "jobs do not restart containers",
) -> AsyncIterator[bytes]:
    """Serve ``/getLogs`` from ``0.log``: checks the container name, refuses ``Previous``,
    follows until ``finished()`` (or the container's exit file) says it ended."""
    name = request.ContainerName
    if name not in [*record.data.get("init", []), *record.data.get("containers", [])]:
        raise NotFound(f"pod {record.namespace}/{record.name} has no container named {name!r}")
    if request.Opts.Previous:
        raise BadRequest(f"container {name!r} has no previous instance: {no_restart}")
    pod_dir = Path(str(record.data.get("dir", "")))
    path = beneath.File(pod_dir, f"containers/{name}/0.log")
    if not request.Opts.Follow:

        async def once() -> AsyncIterator[bytes]:
            yield await asyncio.to_thread(read_log, path, request.Opts)

        return once()

    async def ended() -> bool:
        return beneath.exists(pod_dir, f"containers/{name}/exit") or await finished()

    return follow_log(path, request.Opts, ended)


def waiting(status: JSON, reason: str, message: str = "") -> JSON:
    """Set a container status to waiting, with its reason (and message)."""
    state: JSON = {"reason": reason}
    if message:
        state["message"] = message
    status["state"] = {"waiting": state}
    return status


def started_or_waiting(status: JSON, started: float | None, waiting_reason: str) -> JSON:
    """A container of a running job: running once its start file is there, else waiting."""
    if started is not None:
        status["state"] = {"running": {"startedAt": rfc3339(started)}}
        status["ready"] = status["started"] = True
        return status
    return waiting(status, waiting_reason)


def supervision(pod: JSON, c: JSON, where: str, fix: Callable[[str], str]) -> dict[str, Any]:
    """The pod runner's supervision spec of one container (probes, hooks, restart policy); a
    field the runner cannot honour is a 400 naming it."""
    try:
        return supervision_spec(c, where, (pod.get("spec") or {}).get("restartPolicy"), fix)
    except SpecError as exc:
        raise BadRequest(str(exc)) from None


def refuse_supervision(pod: JSON, why: str) -> None:
    """A 400 naming the first probe or lifecycle hook of the pod, for a backend that cannot
    run them (``why`` says so)."""
    spec = pod.get("spec") or {}
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(kind) or []):
            for name in ("startupProbe", "livenessProbe", "readinessProbe", "lifecycle"):
                if c.get(name):
                    raise BadRequest(f"spec.{kind}[{i}].{name}: {why}")


def apply_supervision(status: JSON, pod_dir: str | Path, name: str) -> JSON:
    """Overlay what the pod runner reports for a supervised container (its ``status`` file):
    ``restartCount``, ``lastState``, ``started``, ``ready``, and while it has not ended for
    good, whether it runs or waits (postStart hook, ``CrashLoopBackOff``)."""
    sup = read_json(pod_dir, f"containers/{name}/status")
    if sup is None:
        return status
    status["restartCount"] = int(sup.get("restartCount") or 0)
    if isinstance(sup.get("lastState"), dict):
        last = dict(sup["lastState"].get("terminated") or {})
        for key in ("startedAt", "finishedAt"):
            if isinstance(last.get(key), int | float):
                last[key] = rfc3339(last[key])
        status["lastState"] = {"terminated": last}
    if "terminated" in (status.get("state") or {}):
        status["ready"] = status["started"] = False
        return status
    status["started"], status["ready"] = bool(sup.get("started")), bool(sup.get("ready"))
    if isinstance(sup.get("waiting"), dict):
        status["state"] = {"waiting": sup["waiting"]}
    elif sup.get("startedAt") is not None:
        status["state"] = {"running": {"startedAt": rfc3339(float(sup["startedAt"]))}}
    return status


def event_lines(events: list[tuple[str, str, str]], at: float) -> str:
    """``kube-events`` lines (``seq`` 1, 2, ...) for Warning Events a plugin knows before the
    pod runs, as ``(container, reason, message)``; the pod runner numbers its own after them."""
    lines = []
    for seq, (container, reason, message) in enumerate(events, 1):
        event = {"seq": seq, "at": at, "type": "Warning", "reason": reason, "message": message}
        lines.append(json.dumps({**event, "container": container}) + "\n")
    return "".join(lines)


def recent_events(pod_dir: str | Path, limit: int = EVENTS_SHOWN) -> list[JSON]:
    """The pod's latest ``limit`` kubelet Events (from the tail of its ``kube-events``)."""
    try:
        with beneath.open_read(pod_dir, EVENTS_FILE) as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 1500 * limit))
            lines = fh.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines[-limit:]:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # the first line may be cut
        if isinstance(event, dict) and isinstance(event.get("seq"), int):
            out.append(event)
    return out


ContainerStatusFn = Callable[[str, str, str], JSON]
"""``(name, waiting reason, why it will never start)`` → status; the last is ``""`` unless an
init container failed, in which case it names that container and its exit code."""


def assemble_pod_status(record: JobRecord, container: ContainerStatusFn) -> PodStatus:
    """A pod's status from its containers' statuses: init containers in order (a failed one
    means the containers will never start), then the containers."""
    inits: list[JSON] = []
    failed = ""
    init_done = True
    for name in record.data.get("init", []):
        st = container(name, "PodInitializing", "")
        inits.append(st)
        term = st["state"].get("terminated")
        if term is None:
            init_done = False
        elif term["exitCode"] != 0 and not failed:
            failed = f"not started: init container {name!r} failed with exit code "
            failed += str(term["exitCode"])
    reason = "ContainerCreating" if init_done and not failed else "PodInitializing"
    mains = [container(name, reason, failed) for name in record.data.get("containers", [])]
    return PodStatus(
        name=record.name,
        UID=record.uid,
        namespace=record.namespace,
        JID=record.job_id,
        containers=mains,
        initContainers=inits,
    )
