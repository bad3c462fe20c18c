"""The ``local`` plugin: each container of a pod is a process on this host.

Each pod gets a directory ``<pods_dir>/<pod uid>/`` holding its volumes (``volumes/<name>/``),
the runner spec (``spec.json``) and per-container logs and state (``containers/<name>/``). A
detached runner process (:mod:`interlink_plugins.local.runner`) runs the containers and writes
their state as files, so the plugin can be killed and restarted at any time: status and logs are
read back from the files, and the runner is found again by its pid (checked against its command
line, so a reused pid is never mistaken for it).

Job ids are ``local-<runner pid>`` (pids can be reused once a pod is gone; the pod UID is the
real key), or ``local-q-<uid prefix>`` for a pod that had to wait in the queue. Every pod gets
a loopback address of its own from ``ip_range`` (unique among the pods the plugin knows),
reported as the pod IP and given to the processes as ``$POD_IP``.

**The queue.** At most ``max_running`` pods run at once (default: no limit but ``max_pods``);
the pods accepted beyond that (up to ``max_pods``) wait Pending with the ``waiting.reason``
``Queued: MaxRunning``, as a batch system's queued job, and start in the order they came when
a running pod ends (seen at the next status poll) or is deleted. A queued pod's directory and
volumes are written when it is accepted; deleting it only removes them.

**Volumes are exposed by path rewriting**, which needs no privileges: the processes see the
host's file system, so every occurrence of a container's ``volumeMounts[].mountPath`` in its
command, args, env values and ``workingDir`` is replaced by the volume's directory on disk
(``subPath`` honoured), and ``$INTERLINK_POD_DIR`` names the pod directory. A program that builds
a mounted path by itself (a path compiled in, or read from a file) will not find the volume.

With ``runtime: podman`` each container runs its image instead (:mod:`interlink_plugins.runtimes`:
``podman run --network host`` with bind mounts, the image's entrypoint and environment, memory
limits); its podman container is removed when the pod is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from interlink_core import conformance
from interlink_core.errors import BackendUnavailable, BadRequest
from interlink_core.hostpaths import refuse_host_paths
from interlink_core.jobfiles import (
    apply_supervision,
    assemble_pod_status,
    base_status,
    container_logs,
    event_lines,
    exit_reason,
    read_float,
    read_json,
    recent_events,
    rfc3339,
    supervision,
    waiting,
)
from interlink_core.models import (
    JSON,
    LogStruct,
    NodeResources,
    PingAnswer,
    PodStatus,
    RetrievedPodData,
    pod_meta,
)
from interlink_core.podspec import (
    checked_uid,
    command_line,
    container_mounts,
    expand,
    materialize_volumes,
    node_cpus,
    node_memory_bytes,
    path_rewriter,
    pod_containers,
    resolve_env,
)
from interlink_core.sdk import Plugin, PluginConfig, Submitted
from interlink_core.store import JobRecord

from ..runtimes import (
    DEFAULT_PATH,
    PodmanConfig,
    container_name,
    env_file,
    limit_options,
    remove_argv,
    run_args,
    run_as,
    wrapped,
)

log = logging.getLogger("interlink.plugin.local")

DEFAULT_GRACE = 30.0
KILL_MARGIN = 5.0
LOST_EXIT_CODE = 255
QUEUED_REASON = "Queued: MaxRunning"
POD_DIR_ENV = "INTERLINK_POD_DIR"


class LocalConfig(PluginConfig):
    """Settings of the ``local`` plugin."""

    pods_dir: Path | None = Field(
        default=None, description="Where pod directories live (default: <state_dir>/pods)."
    )
    max_grace_seconds: float | None = Field(
        default=None, ge=0, description="Upper bound on a pod's termination grace period."
    )
    keep_pod_dirs: bool = Field(
        default=False, description="Keep a pod's directory (logs, volumes) after deletion."
    )
    ip_range: IPv4Network = Field(
        default=IPv4Network("127.1.0.0/16"),
        description="Loopback network the pod IPs are taken from (inside 127.0.0.0/8).",
    )
    max_pods: int = Field(
        default=1000, ge=1, description="Pods this node accepts at once (running and queued)."
    )
    max_running: int | None = Field(
        default=None,
        ge=1,
        description="Pods that run at once; the others accepted wait Pending, reason "
        "'Queued: MaxRunning', and start in order as running pods end (default: no limit "
        "but max_pods).",
    )
    inherit_env: list[str] = Field(
        default_factory=lambda: ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"],
        description="Variables of the plugin's environment passed on to every container "
        "(runtime host; PATH defaults to the standard one when the plugin has none).",
    )
    runtime: Literal["host", "podman"] = Field(
        default="host",
        description="host: each container is a process on this host (the image is ignored); "
        "podman: each container runs its image with podman (--network host).",
    )
    podman: PodmanConfig = Field(default_factory=PodmanConfig)
    host_path_prefixes: list[Path] = Field(
        default_factory=list,
        description="Host directories pods may mount as hostPath volumes (below these "
        "prefixes, symlinks resolved); any other hostPath volume is refused (default: none).",
    )

    @field_validator("ip_range")
    @classmethod
    def _loopback(cls, value: IPv4Network) -> IPv4Network:
        if not value.subnet_of(IPv4Network("127.0.0.0/8")):
            raise ValueError("must be inside 127.0.0.0/8 (loopback addresses need no setup)")
        return value

    @property
    def pods_path(self) -> Path:
        """``pods_dir`` with its default and ``~`` expanded."""
        return (self.pods_dir or self.state_path / "pods").expanduser()


def memory_quantity(n: int) -> str:
    """Bytes as a Kubernetes quantity (``Gi`` when at least 1 GiB, else ``Mi``)."""
    if n >= 2**30:
        return f"{n // 2**30}Gi"
    return f"{n // 2**20}Mi"


def find_pod_processes(pod_dirs: set[str]) -> list[int]:
    """Pids of processes whose environment marks them as belonging to one of ``pod_dirs``."""
    marks = {f"{POD_DIR_ENV}={d}".encode() for d in pod_dirs}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
        except OSError:
            continue
        if marks.intersection(env):
            found.append(int(entry))
    return found


class LocalPlugin(Plugin):
    """Runs each pod as local processes (one detached runner per pod)."""

    name = "local"
    config_model = LocalConfig
    loopback_only = True
    startup_warning = (
        "every container runs as a process on this host, as this plugin's own Unix user, "
        "with that user's rights (files, network); serve it only to the API server "
        "(a unix socket, the default, or loopback)"
    )

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.settings = (
            config
            if isinstance(config, LocalConfig)
            else LocalConfig.model_validate(config.model_dump())
        )
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        # statuses that can no longer change (the runner finished or was lost), and each
        # container's start time and pid once seen: polls then skip those files
        self._final: dict[str, PodStatus] = {}
        self._started: dict[tuple[str, str], tuple[float, float | None]] = {}
        self._adopted: set[int] = set()
        self._recent: dict[str, tuple[int, PodStatus]] = {}
        self._inflight: dict[str, str] = {}
        self._ips: dict[str, str] = {}  # pod uid → IP of every pod the store knows
        # the queue: uids of pods waiting for a slot, in order, and of those holding one
        self._queue: dict[str, None] = {}
        self._running: set[str] = set()

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Re-adopt running pods (nothing to do: state is on disk) and clear leftovers of a
        crash between starting a runner and recording it."""
        root = self.settings.pods_path
        root.mkdir(parents=True, exist_ok=True)
        records = self.store.all()
        known = {r.uid for r in records}
        self._ips = {r.uid: str(r.data.get("ip", "")) for r in records}
        self._queue = {r.uid: None for r in records if r.data.get("queued")}
        # a pod that ended while the plugin was down gives its slot back now: the VK does not
        # ask again about a pod it saw end
        self._running = {r.uid for r in records if not r.data.get("queued") and self._alive(r)}
        orphans = [d for d in root.iterdir() if d.is_dir() and d.name not in known]
        if orphans:
            await asyncio.to_thread(self._destroy, orphans, not self.settings.keep_pod_dirs)
        log.info("local plugin: %d pods tracked, %d leftovers cleared", len(known), len(orphans))
        self._fill_slots()

    # --- create -----------------------------------------------------------------------------

    async def submit(self, data: RetrievedPodData) -> Submitted:
        """Prepare the pod directory and start the pod's runner."""
        pod = data.pod
        uid = checked_uid(pod)
        pod_containers(pod)  # names checked before anything is written
        refuse_host_paths(pod, self.settings.host_path_prefixes)
        notices = conformance.check(pod, "local", self.settings.runtime)
        if len(self._ips) + len(self._inflight) >= self.settings.max_pods:
            raise BackendUnavailable(
                f"this node already runs max_pods={self.settings.max_pods} pods; delete some "
                "or raise max_pods"
            )
        self._reap()
        ip = self._allocate_ip(uid)
        pod_dir = self.settings.pods_path / uid
        run_now = self._slot_free()
        if run_now:  # the slot is taken now: creates in flight cannot all take the last one
            self._running.add(uid)
        try:
            if pod_dir.exists():
                await asyncio.to_thread(self._destroy, [pod_dir], True)
            prepared = await asyncio.to_thread(self._prepare_pod, data, pod_dir, ip, notices)
            if run_now:
                pid = await asyncio.to_thread(self._launch, pod_dir)
                submitted = Submitted(job_id=f"local-{pid}", data={"pid": pid, **prepared})
            else:  # recorded by the SDK before anything else runs: the queue may start it
                submitted = Submitted(
                    job_id=f"local-q-{uid[:8]}", data={"pid": 0, "queued": True, **prepared}
                )
                self._queue[uid] = None
            self._ips[uid] = ip
            return submitted
        except BaseException:
            self._running.discard(uid)
            await asyncio.to_thread(shutil.rmtree, pod_dir, True)
            raise
        finally:
            self._inflight.pop(uid, None)

    def _slot_free(self) -> bool:
        """Can one more pod start now (nothing queued before it, a slot free)?"""
        limit = self.settings.max_running
        return not self._queue and (limit is None or len(self._running) < limit)

    def _fill_slots(self) -> None:
        """Start queued pods, oldest first, while slots are free. Runs on the event loop
        without awaiting, so no delete or poll sees a pod half started."""
        limit = self.settings.max_running
        while self._queue and (limit is None or len(self._running) < limit):
            uid = next(iter(self._queue))
            del self._queue[uid]
            record = self.store.get(uid)
            if record is None:
                continue
            try:
                pid = self._launch(Path(record.data["dir"]))
            except OSError as exc:  # reported as Lost by the next poll (no runner, no done)
                log.error("could not start queued pod %s: %s", uid, exc)
                pid = 0
            record.data.pop("queued", None)
            record.data["pid"] = pid
            self.store.put(record)
            self._running.add(uid)

    def _allocate_ip(self, uid: str) -> str:
        used = set(self._ips.values()) | set(self._inflight.values())
        for host in self.settings.ip_range.hosts():
            ip = str(host)
            if ip not in used:
                self._inflight[uid] = ip
                return ip
        raise BackendUnavailable(f"no free address left in ip_range {self.settings.ip_range}")

    def _grace(self, pod: JSON, delete: bool = False) -> float:
        meta = pod.get("metadata") or {}
        value = meta.get("deletionGracePeriodSeconds") if delete else None
        if value is None:
            value = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        grace = DEFAULT_GRACE if value is None else max(0.0, float(value))
        cap = self.settings.max_grace_seconds
        return grace if cap is None else min(grace, cap)

    def _prepare_pod(
        self, data: RetrievedPodData, pod_dir: Path, ip: str, notices: list[tuple[str, str, str]]
    ) -> dict[str, Any]:
        """Write the pod directory (volumes, the runner's spec); the record's data."""
        pod = data.pod
        pod_dir.parent.mkdir(parents=True, exist_ok=True)
        pod_dir.mkdir(mode=0o700)  # spec.json and volumes may hold secrets
        volumes = materialize_volumes(data, pod_dir / "volumes", pod_ip=ip, host_ip="127.0.0.1")
        run: dict[str, list[dict[str, Any]]] = {"init": [], "containers": []}
        images: dict[str, str] = {}
        for kind, where, c in pod_containers(pod):
            images[c["name"]] = str(c.get("image") or "")
            key = "init" if kind == "init" else "containers"
            spec = self._container_spec(data, c, where, volumes, pod_dir, ip)
            if "podman" in spec:  # probes and hooks run in the container
                spec["exec_prefix"] = [spec["podman"]["binary"], "exec", spec["podman"]["name"]]
                spec.setdefault("supervision", supervision(pod, c, where, str))
            run[key].append(spec)
        (pod_dir / "containers").mkdir(exist_ok=True)  # podman env files are in it already
        if notices:  # what the conformance check says this node does not enforce
            (pod_dir / "kube-events").write_text(event_lines(notices, time.time()))
        body: dict[str, Any] = {"grace": self._grace(pod), **run}
        if self.settings.runtime == "podman":
            names = [c["podman"]["name"] for c in [*run["init"], *run["containers"]]]
            body["podman"] = {"binary": self.settings.podman.binary, "names": names}
            # the runner removes them when it ends, also when it ends a pod nobody can delete
            # any more (its directory gone) or a wrapper was killed while stopping one
            body["cleanup"] = [remove_argv(self.settings.podman, names)]
        (pod_dir / "spec.json").write_text(json.dumps(body))
        return {
            "dir": str(pod_dir),
            "ip": ip,
            "init": [c["name"] for c in run["init"]],
            "containers": [c["name"] for c in run["containers"]],
            "images": images,
        }

    def _launch(self, pod_dir: Path) -> int:
        """Start the runner of a prepared pod directory; its pid."""
        with open(pod_dir / "runner.log", "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "interlink_plugins.local.runner", str(pod_dir)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=pod_dir,
                start_new_session=True,
                env={k: v for k, v in os.environ.items() if k != POD_DIR_ENV},
            )
        self._children[proc.pid] = proc
        return proc.pid

    def _container_spec(
        self,
        data: RetrievedPodData,
        c: JSON,
        where: str,
        volumes: dict[str, Path],
        pod_dir: Path,
        ip: str,
    ) -> dict[str, Any]:
        pod = data.pod
        command, args = command_line(c, where)
        if self.settings.runtime == "podman":
            return self._podman_spec(data, c, where, volumes, pod_dir, ip)
        if not command and not args:
            raise BadRequest(
                f"{where}.command: is required by the local plugin (there is no image "
                "entrypoint to fall back to); give command and/or args"
            )
        pod_env = resolve_env(pod, c, data, ip, host_ip="127.0.0.1")
        mounts = container_mounts(c, volumes, where, pod_env)
        for j, m in enumerate(mounts):
            if m.mount_path == "/":
                raise BadRequest(f"{where}.volumeMounts[{j}].mountPath: cannot mount at /")
        rewrite = path_rewriter(mounts)
        pod_env = {k: rewrite(v) for k, v in pod_env.items()}

        def fix(word: str) -> str:
            return expand(rewrite(word), pod_env)

        argv = [fix(a) for a in [*command, *args]]
        env = self._host_env()
        env.update({"POD_IP": ip, "HOSTNAME": pod_meta(pod)[1]})
        env.update(pod_env)
        env[POD_DIR_ENV] = str(pod_dir)
        cwd = pod_dir / "work" / str(c["name"])
        if c.get("workingDir"):
            wd = Path(rewrite(str(c["workingDir"])))
            if wd.is_relative_to(pod_dir):
                wd.mkdir(parents=True, exist_ok=True)
            elif not wd.is_dir():
                raise BadRequest(
                    f"{where}.workingDir: {c['workingDir']!r} does not exist on this host; "
                    "local containers run on the host, use a directory under a volume mount"
                )
            cwd = wd
        return {
            "name": c["name"],
            "argv": argv,
            "env": env,
            "cwd": str(cwd),
            "host": ip,
            "supervision": supervision(pod, c, where, fix),
        }

    def _host_env(self) -> dict[str, str]:
        """The plugin's own variables a container gets (``inherit_env``), with the standard
        ``PATH`` when the plugin has none."""
        env = {k: os.environ[k] for k in self.settings.inherit_env if k in os.environ}
        env.setdefault("PATH", DEFAULT_PATH)
        return env

    def _podman_spec(
        self,
        data: RetrievedPodData,
        c: JSON,
        where: str,
        volumes: dict[str, Path],
        pod_dir: Path,
        ip: str,
    ) -> dict[str, Any]:
        """A container run by podman: the runner starts the podman wrapper; the pod's
        environment goes into an env file, its volumes are bind-mounted (``readOnly`` as
        ``:ro``), ``$(VAR)`` references in command and args are expanded as a kubelet does."""
        pod = data.pod
        name = str(c["name"])
        command, args = command_line(c, where)
        pod_env = {"POD_IP": ip, "HOSTNAME": pod_meta(pod)[1]}
        pod_env.update(resolve_env(pod, c, data, ip, host_ip="127.0.0.1"))
        mounts = container_mounts(c, volumes, where, pod_env)
        state = pod_dir / "containers" / name
        state.mkdir(parents=True, exist_ok=True)
        content, multiline = env_file(pod_env, where)
        (state / "env").write_text(content)
        (state / "env").chmod(0o600)
        cname = container_name(pod_dir.name, name)
        workdir = c.get("workingDir")
        if workdir is not None and (not isinstance(workdir, str) or not workdir.startswith("/")):
            raise BadRequest(f"{where}.workingDir: {workdir!r} must be an absolute path")
        cfg = self.settings.podman

        def fix(word: str) -> str:
            return expand(word, pod_env)

        run = run_args(
            cfg,
            name=cname,
            image=str(c.get("image") or ""),
            command=[fix(a) for a in command],
            args=[fix(a) for a in args],
            env_path=str(state / "env"),
            multiline_env=multiline,
            binds=[(str(m.source), m.mount_path, m.read_only) for m in mounts],
            workdir=workdir,
            user=run_as(pod, c, where),
            limits=limit_options(c, where),
            where=where,
        )
        env = self._host_env()
        env[POD_DIR_ENV] = str(pod_dir)
        argv = wrapped(cfg, cname, str(state), math.ceil(self._grace(pod)), run)
        cwd = pod_dir / "work" / name
        return {
            "name": name,
            "argv": argv,
            "env": env,
            "cwd": str(cwd),
            "host": ip,
            "podman": {"binary": cfg.binary, "name": cname},
            "supervision": supervision(pod, c, where, fix),
        }

    # --- volumes of running pods ---------------------------------------------------------------

    async def update_volumes(self, record: JobRecord, data: RetrievedPodData) -> None:
        """Rewrite the pod's volume files in place (each file replaced atomically); the
        containers see them through their mounts, as with a kubelet."""
        ip = self._ips.get(record.uid, "")
        volumes = self.settings.pods_path / record.uid / "volumes"
        await asyncio.to_thread(materialize_volumes, data, volumes, pod_ip=ip, host_ip="127.0.0.1")

    # --- status -----------------------------------------------------------------------------

    async def poll(self, records: list[JobRecord]) -> list[PodStatus]:
        """Statuses read from the pod directories (no process is started)."""
        self._reap()
        statuses = await asyncio.to_thread(lambda: [self._status(r) for r in records])
        self._running.difference_update(self._final)  # ended pods give their slot back
        self._fill_slots()
        return statuses

    def _reap(self) -> None:
        """Collect the exit status of runners that ended (no zombies left behind)."""
        for pid, child in list(self._children.items()):
            if child.poll() is not None:
                self._children.pop(pid, None)

    def _alive(self, record: JobRecord) -> bool:
        """Is the pod's runner still running? Our own children are asked with waitpid; a
        runner adopted after a restart is identified once by its command line (the pid could
        belong to another process by now), then checked with signal 0."""
        pid = int(record.data.get("pid", 0))
        child = self._children.get(pid)
        if child is not None:
            if child.poll() is None:
                return True
            self._children.pop(pid, None)
            return False
        if pid in self._adopted:
            try:
                os.kill(pid, 0)
                return True
            except OSError:
                self._adopted.discard(pid)
                return False
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            return False
        if str(record.data.get("dir", "")).encode() in cmdline.split(b"\0"):
            self._adopted.add(pid)
            return True
        return False

    def _status(self, record: JobRecord) -> PodStatus:
        final = self._final.get(record.uid)
        if final is not None:
            return final
        if record.data.get("queued"):
            return self._queued_status(record)
        pod_dir = str(record.data["dir"])
        try:  # the runner appends a byte here after every state file it writes
            version = os.stat(f"{pod_dir}/events").st_size
        except OSError:
            version = -1
        alive = self._alive(record)
        recent = self._recent.get(record.uid)
        if alive and version >= 0 and recent is not None and recent[0] == version:
            return recent[1]
        done = read_json(pod_dir, "runner.done")
        lost = not alive and done is None
        stopped = "not started: the pod was stopped" if done is not None else ""

        def container(name: str, reason: str, never: str) -> JSON:
            return self._container_status(record, pod_dir, name, lost, reason, never or stopped)

        status = assemble_pod_status(record, container)
        status.podIP = str(record.data.get("ip", "")) or None
        status.events = recent_events(pod_dir) or None
        if done is not None or lost:
            self._final[record.uid] = status
            self._recent.pop(record.uid, None)
        elif version >= 0:
            self._recent[record.uid] = (version, status)
        return status

    def _queued_status(self, record: JobRecord) -> PodStatus:
        """Every container waiting with reason ``Queued: MaxRunning`` (a message that does not
        change while it waits: the VK patches a pod's status only when it changes)."""
        message = (
            f"waiting for a free slot: this node runs max_running={self.settings.max_running} "
            "pods at once"
        )

        def container(name: str, _reason: str, _never: str) -> JSON:
            return waiting(base_status(record, name), QUEUED_REASON, message)

        return assemble_pod_status(record, container)

    def _forget(self, uid: str) -> None:
        """Drop the cached facts of a deleted pod."""
        self._final.pop(uid, None)
        self._recent.pop(uid, None)
        for key in [k for k in list(self._started) if k[0] == uid]:
            del self._started[key]

    def _container_status(
        self,
        record: JobRecord,
        pod_dir: str,
        name: str,
        lost: bool,
        waiting_reason: str,
        waiting_message: str = "",
    ) -> JSON:
        cdir = f"containers/{name}"
        exit_info = read_json(pod_dir, f"{cdir}/exit")
        seen = self._started.get((record.uid, name))
        if seen is None:
            started = read_float(pod_dir, f"{cdir}/started")
            pid = read_float(pod_dir, f"{cdir}/pid")
            if started is not None:
                self._started[(record.uid, name)] = (started, pid)
        else:
            started, pid = seen
        status = base_status(record, name)
        if pid is not None:
            status["containerID"] = f"local://{int(pid)}"
        if exit_info is not None:
            finished = float(exit_info.get("finishedAt", time.time()))
            code = int(exit_info.get("exitCode", LOST_EXIT_CODE))
            term: JSON = {
                "exitCode": code,
                "reason": exit_reason(pod_dir, name, code, str(exit_info.get("reason", "Error"))),
                "startedAt": rfc3339(started if started is not None else finished),
                "finishedAt": rfc3339(finished),
            }
            if exit_info.get("message"):
                term["message"] = str(exit_info["message"])
            if exit_info.get("signal"):
                term["signal"] = int(exit_info["signal"])
            status["state"] = {"terminated": term}
        elif lost:
            at = started if started is not None else record.created_at
            status["state"] = {
                "terminated": {
                    "exitCode": LOST_EXIT_CODE,
                    "reason": "Lost",
                    "message": "the pod's runner process died (host reboot or kill); the "
                    "container's end was not recorded",
                    "startedAt": rfc3339(at),
                    "finishedAt": rfc3339(at),
                }
            }
        elif started is not None:
            status["state"] = {"running": {"startedAt": rfc3339(started)}}
            status["ready"] = status["started"] = True
        else:
            waiting(status, waiting_reason, waiting_message)
        return apply_supervision(status, pod_dir, name)

    # --- logs -------------------------------------------------------------------------------

    def logs(self, record: JobRecord, request: LogStruct) -> AsyncIterator[bytes]:
        """The container's log file, as asked (following until the container ends)."""

        async def runner_gone() -> bool:
            return not self._alive(record)

        return container_logs(
            record, request, runner_gone, "the log of a restarted container holds all its runs"
        )

    # --- delete -----------------------------------------------------------------------------

    async def cancel(self, record: JobRecord, pod: JSON) -> None:
        """SIGTERM the runner (it gives the containers their grace period), SIGKILL whatever
        is left after grace + 5 s, then remove the pod directory (only that for a queued pod);
        a queued pod takes the slot freed."""
        pod_dir = Path(record.data["dir"])
        pid = int(record.data.get("pid", 0))
        self._queue.pop(record.uid, None)
        if pid and self._alive(record):
            grace = self._grace(pod, delete=True)
            with contextlib.suppress(OSError):
                (pod_dir / "grace").write_text(str(grace))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not await self._wait_gone(record, grace + KILL_MARGIN):
                log.warning("runner %d of pod %s ignored SIGTERM; killing it", pid, record.uid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                await self._wait_gone(record, KILL_MARGIN)
        if pid:
            await asyncio.to_thread(self._destroy, [pod_dir], not self.settings.keep_pod_dirs)
        elif not self.settings.keep_pod_dirs:  # a queued pod: no process ever ran in it
            await asyncio.to_thread(shutil.rmtree, pod_dir, True)
        self._forget(record.uid)
        self._ips.pop(record.uid, None)
        self._running.discard(record.uid)
        self._fill_slots()

    async def _wait_gone(self, record: JobRecord, seconds: float) -> bool:
        """Wait (without blocking the loop) until the runner is gone; False on timeout."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self._alive(record):
                return True
            await asyncio.sleep(0.05)
        return not self._alive(record)

    def _destroy(self, pod_dirs: list[Path], remove: bool) -> None:
        """SIGKILL every process left in these pod directories (runner first), wait until they
        are gone, remove the directories."""
        for d in pod_dirs:
            pid = read_float(d, "runner.pid")
            if pid is None:
                continue
            with contextlib.suppress(OSError):
                if str(d).encode() in Path(f"/proc/{int(pid)}/cmdline").read_bytes().split(b"\0"):
                    os.kill(int(pid), signal.SIGKILL)
        marks = {str(d) for d in pod_dirs}
        deadline = time.monotonic() + 2.0
        while (left := find_pod_processes(marks)) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)  # runs in a worker thread; wait until they are really gone
        self._remove_podman_containers(pod_dirs)
        if remove:
            for d in pod_dirs:
                shutil.rmtree(d, ignore_errors=True)

    def _remove_podman_containers(self, pod_dirs: list[Path]) -> None:
        """``podman rm --force`` the containers of these pods that may outlive their runner:
        a container is a child of podman's conmon, so killing the pod's processes does not
        end it."""
        for d in pod_dirs:
            spec = read_json(d, "spec.json") or {}
            podman = spec.get("podman")
            if not isinstance(podman, dict) or not podman.get("names"):
                continue
            cfg = PodmanConfig(binary=str(podman.get("binary") or "podman"))
            argv = remove_argv(cfg, [str(n) for n in podman["names"]])
            try:
                done = subprocess.run(argv, capture_output=True, text=True, check=False)
            except OSError as exc:
                log.warning("%s failed: %s", " ".join(argv), exc)
                continue
            if done.returncode != 0:
                log.warning("%s failed: %s", " ".join(argv), done.stderr.strip())

    # --- ping -------------------------------------------------------------------------------

    async def ping(self) -> PingAnswer:
        """This host's CPUs and memory, and ``max_pods``."""
        return PingAnswer(
            status="ok",
            resources=NodeResources(
                cpu=str(node_cpus()),
                memory=memory_quantity(node_memory_bytes()),
                pods=str(self.settings.max_pods),
            ),
        )
