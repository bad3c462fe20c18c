"""The SLURM plugin as a server process (``interlink plugin slurm``) on its unix socket, on the
real SLURM of the test world. Tests see only what a caller or SLURM's own tools see: the
plugin's HTTP routes, ``squeue``/``sacct``, the work directories on disk, and the SLURM commands
it ran (its ``sbatch``/``squeue``/... are wrapper scripts that log each call, then ``exec`` the
real command)."""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.slurm import SlurmInfo, wait_finished
from tests.helpers.world import Service, plugin_client, start_plugin

COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "sinfo")
"""The SLURM commands the plugin runs from its host (``scontrol`` is also run by the jobs)."""


def make_pod(
    containers: list[dict[str, Any]],
    init: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "job",
            "namespace": "default",
            "uid": str(uuid.uuid4()),
            "annotations": annotations or {},
        },
        "spec": {"containers": containers, "initContainers": init or []},
    }


def write_wrappers(bin_dir: Path, log_dir: Path, filters: dict[str, str] | None = None) -> None:
    """One script per SLURM command in ``bin_dir``: appends ``<unix time> <args>`` to
    ``log_dir/<command>.log``, then runs the real command (``exec``; or, for a command given
    in ``filters``, its output through that shell filter, keeping its exit status on failure)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        real = shutil.which(name)
        assert real, f"{name} is not on PATH"
        log = shlex.quote(str(log_dir / f"{name}.log"))
        run = f'exec {shlex.quote(real)} "$@"'
        if filters and name in filters:
            out = f'out=$({shlex.quote(real)} "$@") || exit $?'
            run = f'{out}\nprintf "%s\\n" "$out" | {filters[name]}\nexit 0'
        wrapper = bin_dir / name
        line = f'printf "%s %s\\n" "$(date +%s.%N)" "$*" >> {log}'
        wrapper.write_text(f"#!/bin/sh\n{line}\n{run}\n")
        wrapper.chmod(0o755)


class Edge:
    """A running plugin process, its HTTP client and what SLURM and the disk show of it."""

    def __init__(self, svc: Service, http: httpx.AsyncClient, work_dir: Path, calls: Path) -> None:
        self.svc = svc
        self.http = http
        self.work_dir = work_dir
        self._calls = calls

    def calls_at(self, command: str) -> list[tuple[float, list[str]]]:
        """``(unix time, arguments)`` of every ``command`` the plugin ran so far, in order."""
        log = self._calls / f"{command}.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [(float(line.split()[0]), line.split()[1:]) for line in lines]

    def calls(self, command: str) -> list[list[str]]:
        """The arguments of every ``command`` the plugin ran so far, in order."""
        return [args for _, args in self.calls_at(command)]

    def count(self, *commands: str) -> tuple[int, ...]:
        """How many times each of these commands ran so far."""
        return tuple(len(self.calls_at(c)) for c in commands)

    async def cycle(self, *pods: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """One status call for all pods, which may run one squeue (or one more, listing this
        user's jobs) and one sacct, never one per pod; the statuses and the calls it made."""
        before = self.count("squeue", "sacct")
        statuses = await self.status(*pods)
        after = self.count("squeue", "sacct")
        squeues, saccts = after[0] - before[0], after[1] - before[1]
        assert squeues <= 2 and saccts <= 1, f"{squeues} squeue, {saccts} sacct in one cycle"
        return statuses, squeues + saccts

    def pod_dir(self, pod: dict[str, Any]) -> Path:
        """The pod's working directory under the configured ``work_dir``."""
        return self.work_dir / str(pod["metadata"]["uid"])

    async def create(self, pod: dict[str, Any], **container: Any) -> str:
        """POST /create (``container``: ConfigMaps / Secrets of the first container)."""
        entries = [{"name": pod["spec"]["containers"][0]["name"], **container}] if container else []
        r = await self.http.post("/create", json={"pod": pod, "container": entries})
        assert r.status_code == 200, r.text
        return str(r.json()["PodJID"])

    async def status(self, *pods: dict[str, Any]) -> list[dict[str, Any]]:
        r = await self.http.request("GET", "/status", json=list(pods))
        assert r.status_code == 200, r.text
        return list(r.json())

    async def logs(self, pod: dict[str, Any], container: str, **opts: Any) -> str:
        m = pod["metadata"]
        body = {
            "Namespace": m["namespace"],
            "PodUID": m["uid"],
            "PodName": m["name"],
            "ContainerName": container,
            "Opts": opts,
        }
        r = await self.http.request("GET", "/getLogs", json=body)
        assert r.status_code == 200, r.text
        return r.text

    async def delete(self, pod: dict[str, Any]) -> None:
        r = await self.http.post("/delete", json=pod)
        assert r.status_code == 200, r.text

    async def wait(self, pod: dict[str, Any], done: Any, timeout: float = 60) -> dict[str, Any]:
        """Poll the pod's status until ``done(status)``; the status."""
        deadline = time.monotonic() + timeout
        last: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            last = await self.status(pod)
            if last and done(last[0]):
                return last[0]
            await asyncio.sleep(0.2)
        raise AssertionError(f"condition never met: {json.dumps(last)[:2000]}")

    async def ended(self, pod: dict[str, Any], job: str, done: Any) -> dict[str, Any]:
        """Wait until accounting has the job's end state, then until ``done(status)``."""
        await asyncio.to_thread(wait_finished, [job], 60)
        return await self.wait(pod, done)


def state(status: dict[str, Any], i: int = 0, kind: str = "containers") -> dict[str, Any]:
    return dict(status[kind][i]["state"])


def job_state(job: str) -> str:
    """The job's state as accounting records it once it ended (e.g. ``CANCELLED``)."""
    return wait_finished([job], 60)[job]


def cancel_jobs_under(work_dir: Path) -> None:
    """scancel every job whose batch script lies under ``work_dir`` (squeue's ``%o``)."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i|%o"], capture_output=True, text=True, check=False
    ).stdout
    prefix = f"{work_dir}/"
    ids = [
        i
        for i, _, cmd in (line.partition("|") for line in out.splitlines())
        if cmd.startswith(prefix)
    ]
    if ids:
        subprocess.run(["scancel", *ids], check=False)


@asynccontextmanager
async def slurm_edge(
    slurm: SlurmInfo, root: Path, settings: dict[str, Any], filters: dict[str, str] | None = None
) -> AsyncIterator[Edge]:
    """``interlink plugin slurm`` under ``root`` with these settings (the cluster's partition,
    SLURM commands through logging wrappers, see :func:`write_wrappers`); the jobs it submitted
    are cancelled at the end."""
    write_wrappers(root / "bin", root / "calls", filters)
    config = {
        "partition": slurm.partition,
        **{name: str(root / "bin" / name) for name in COMMANDS},
        **settings,
    }
    work_dir = Path(settings.get("work_dir") or root / "plugin" / "state" / "jobs")
    svc = start_plugin(root / "plugin", "slurm", config)
    try:
        async with plugin_client(svc.socket, timeout=120) as http:
            yield Edge(svc, http, work_dir, root / "calls")
    finally:
        svc.stop()
        cancel_jobs_under(work_dir)  # never leave jobs behind


async def held_job_reports_reason_then_cancels(edge: Edge) -> None:
    """A job SLURM holds reports SLURM's reason while pending; deleting the pod cancels it."""
    pod = make_pod(
        [{"name": "main", "image": "none", "command": ["sleep", "300"]}],
        annotations={"slurm-job.vk.io/flags": "--hold --time=00:05:00"},
    )
    job = await edge.create(pod)
    s = await edge.wait(pod, lambda s: "waiting" in state(s))
    waiting = state(s)["waiting"]
    assert waiting["reason"] == "Queued: JobHeldUser", waiting
    assert f"SLURM job {job} is PENDING" in waiting["message"]
    assert edge.count("scancel") == (0,)
    await edge.delete(pod)
    assert edge.calls("scancel") == [[job]]
    assert await asyncio.to_thread(job_state, job) == "CANCELLED"
    assert await edge.status(pod) == []
