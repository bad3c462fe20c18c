"""The HTCondor backend: each pod is one HTCondor job (``interlink plugin htcondor``).

The job runs the SLURM backend's job script (see :mod:`.submit`). Per status cycle it makes
**one** schedd query for all tracked jobs and one history query only for jobs that left the
queue; end states are cached, so a finished pod costs no schedd call at all. Per-container
states come from the files the job script writes (``containers/<name>/started``, ``exit``,
``0.log``): live on a shared filesystem, or with ``transfer: true`` when HTCondor brings the
output back (until then a running job's containers are reported running since the job
started).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar, cast

from interlink_core.hostpaths import refuse_host_paths
from interlink_core.jobfiles import (
    assemble_pod_status,
    base_status,
    container_files,
    container_logs,
    new_pod_dir,
    recent_events,
    rfc3339,
    started_or_waiting,
    waiting,
    write_job_files,
)
from interlink_core.models import (
    JSON,
    LogStruct,
    NodeResources,
    PingAnswer,
    PodStatus,
    RetrievedPodData,
)
from interlink_core.podspec import checked_uid
from interlink_core.sdk import Plugin, PluginConfig, Submitted
from interlink_core.store import JobRecord
from interlink_core.tenants import load_tenants
from interlink_plugins.slurm.script import record_data

from .config import HTCondorConfig
from .schedd import PROJECTION, Ad, BindingsSchedd, Calls, Schedd, member_constraint
from .submit import build_submit, transfer_inputs

IDLE, RUNNING, REMOVED, COMPLETED, HELD, TRANSFERRING, SUSPENDED = 1, 2, 3, 4, 5, 6, 7
STATUS_NAMES = {
    IDLE: "Idle",
    RUNNING: "Running",
    REMOVED: "Removed",
    COMPLETED: "Completed",
    HELD: "Held",
    TRANSFERRING: "TransferringOutput",
    SUSPENDED: "Suspended",
}
TERMINAL = {REMOVED, COMPLETED}


def _int(ad: Ad, key: str) -> int | None:
    value = ad.get(key)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _text(ad: Ad, key: str) -> str:
    value = ad.get(key)
    return str(value).strip() if value is not None else ""


class HTCondorPlugin(Plugin):
    """Pods as HTCondor jobs."""

    name = "htcondor"
    config_model: ClassVar[type[PluginConfig]] = HTCondorConfig

    def __init__(self, config: PluginConfig, schedd: Schedd | None = None) -> None:
        super().__init__(config)
        self.settings = cast(HTCondorConfig, config)
        self.calls = Calls()
        self._schedd = schedd
        self._final: dict[str, PodStatus] = {}
        self._ended: dict[int, Ad] = {}
        self._notices: dict[str, list[JSON]] = {}  # pod UID: Events the plugin wrote at submit
        self.tenants = load_tenants(self.settings.tenants_file)

    @property
    def schedd(self) -> Schedd:
        """The schedd (the ``htcondor2`` bindings unless one was given)."""
        if self._schedd is None:
            self._schedd = BindingsSchedd(self.settings.schedd_name, self.settings.collector)
        return self._schedd

    async def start(self) -> None:
        """Make sure the jobs directory exists (tracked jobs are re-read from the schedd)."""
        self.settings.jobs_path.mkdir(parents=True, exist_ok=True)

    # --- create -------------------------------------------------------------------------------

    async def submit(self, data: RetrievedPodData) -> Submitted:
        """Write the pod's files and submit description, then submit it."""
        return await self.submit_for(data, None)

    async def submit_for(self, data: RetrievedPodData, tenant: str | None) -> Submitted:
        """:meth:`submit` with the tenant's accounting group (with a tenant map)."""
        refuse_host_paths(data.pod, self.settings.host_path_prefixes)
        found = None
        if self.tenants is not None:
            found = self.tenants.get(tenant or "", "the plugin's tenants_file")
        async with new_pod_dir(self.settings.jobs_path, checked_uid(data.pod)) as pod_dir:
            plan, files, desc = await asyncio.to_thread(
                build_submit, data, self.settings, pod_dir, found
            )
            await asyncio.to_thread(write_job_files, pod_dir, files, ("job.sh", "launch.sh"))
            if self.settings.transfer:
                desc["transfer_input_files"] = transfer_inputs(pod_dir)
            (pod_dir / "job.sub").write_text(
                "".join(f"{k} = {v}\n" for k, v in desc.items()) + "queue\n"
            )
            self.calls.submit += 1
            cluster = await asyncio.to_thread(self.schedd.submit, desc)
        rec = record_data(plan, pod_dir)
        rec["transfer"] = self.settings.transfer
        return Submitted(job_id=str(cluster), data=rec)

    # --- delete -------------------------------------------------------------------------------

    async def cancel(self, record: JobRecord, pod: JSON) -> None:
        """Remove the job, wait until it left the queue, remove its directory."""
        cluster = int(record.job_id)
        if cluster not in self._ended:
            queue = await self._query([cluster])
            if cluster in queue and _int(queue[cluster], "JobStatus") not in TERMINAL:
                self.calls.remove += 1
                await asyncio.to_thread(self.schedd.remove, [cluster])
                deadline = time.monotonic() + self.settings.remove_timeout
                while time.monotonic() < deadline:
                    if cluster not in await self._query([cluster]):
                        break
                    await asyncio.sleep(0.5)
        if not self.settings.keep_work_dirs:
            await asyncio.to_thread(shutil.rmtree, record.data.get("dir", ""), True)
        self._final.pop(record.uid, None)
        self._notices.pop(record.uid, None)
        self._ended.pop(cluster, None)

    # --- status -------------------------------------------------------------------------------

    async def _query(self, clusters: list[int]) -> dict[int, Ad]:
        self.calls.query += 1
        ads = await asyncio.to_thread(
            self.schedd.query, member_constraint(clusters), list(PROJECTION)
        )
        return _by_cluster(ads, clusters)

    async def _history(self, clusters: list[int]) -> dict[int, Ad]:
        self.calls.history += 1
        ads = await asyncio.to_thread(
            self.schedd.history, member_constraint(clusters), list(PROJECTION)
        )
        return _by_cluster(ads, clusters)

    async def poll(self, records: list[JobRecord]) -> list[PodStatus]:
        """Statuses of all these pods: one queue query, history only for departed jobs."""
        open_ids = [
            int(r.job_id)
            for r in records
            if r.uid not in self._final and r.job_id.isdigit() and int(r.job_id) not in self._ended
        ]
        queue = await self._query(open_ids) if open_ids else {}
        gone = [c for c in open_ids if c not in queue]
        past = await self._history(gone) if gone else {}
        for cluster, ad in past.items():
            self._ended[cluster] = ad
        for cluster, ad in queue.items():
            if _int(ad, "JobStatus") in TERMINAL:
                self._ended[cluster] = ad
        jobs = {**past, **queue, **self._ended}
        return await asyncio.to_thread(
            lambda: [
                self._status(r, jobs.get(int(r.job_id)) if r.job_id.isdigit() else None)
                for r in records
            ]
        )

    def _status(self, record: JobRecord, job: Ad | None) -> PodStatus:
        final = self._final.get(record.uid)
        if final is not None:
            return final
        code = _int(job, "JobStatus") if job is not None else None
        status = assemble_pod_status(
            record, lambda name, why, never: self._container(record, name, job, why, never)
        )
        if record.data.get("events"):  # written once at submit (kube-events): read once
            if record.uid not in self._notices:
                self._notices[record.uid] = recent_events(str(record.data.get("dir", "")))
            status.events = self._notices[record.uid] or None
        if code in TERMINAL:
            self._final[record.uid] = status
        return status

    def _container(
        self,
        record: JobRecord,
        name: str,
        job: Ad | None,
        waiting_reason: str,
        never: str = "",
    ) -> JSON:
        cluster = record.job_id
        base = base_status(record, name)
        started, terminated = container_files(record, name, f"htcondor://{cluster}/{name}")
        if terminated is not None:
            base["state"] = {"terminated": terminated}
            return base
        if job is None:
            return waiting(
                base,
                "JobStateUnknown",
                f"HTCondor job {cluster} is not in the queue or history (yet)",
            )
        status = _int(job, "JobStatus")
        if status in TERMINAL:
            if never:  # an init container failed
                return waiting(base, "PodInitializing", never)
            base["state"] = {"terminated": _job_end(cluster, job, started)}
            return base
        if status == IDLE:
            why = _text(job, "LastRejMatchReason") or "Idle"
            return waiting(base, f"Queued: {why}", f"HTCondor job {cluster} is idle")
        if status == HELD:
            why = _text(job, "HoldReason") or "no reason given"
            return waiting(base, f"Queued: Held: {why}", f"HTCondor job {cluster} is held")
        if status == SUSPENDED:
            return waiting(base, "Queued: Suspended", f"HTCondor job {cluster} is suspended")
        # RUNNING or TRANSFERRING (output), or a status this plugin does not know
        if started is None and record.data.get("transfer"):
            # the job's files come back only with its output: running since the job started
            started = float(_int(job, "JobCurrentStartDate") or 0) or None
        return started_or_waiting(base, started, waiting_reason)

    # --- logs ---------------------------------------------------------------------------------

    def logs(self, record: JobRecord, request: LogStruct) -> AsyncIterator[bytes]:
        """The container's log file, as asked; followed until the container or job ends."""

        async def job_ended() -> bool:
            return record.uid in self._final

        return container_logs(record, request, job_ended)

    # --- ping ---------------------------------------------------------------------------------

    async def ping(self) -> PingAnswer:
        """The configured capacity, if the schedd answers a (matching nothing) query."""
        try:
            self.calls.query += 1
            await asyncio.to_thread(self.schedd.query, "false", ["ClusterId"])
        except Exception as exc:
            return PingAnswer(status=f"HTCondor schedd unavailable: {exc}")
        gpus = self.settings.gpus
        accelerators = [{"resourceType": "nvidia.com/gpu", "available": gpus}] if gpus else []
        return PingAnswer(
            status="ok",
            resources=NodeResources.model_validate(
                {
                    "cpu": self.settings.cpu,
                    "memory": self.settings.memory,
                    "pods": str(self.settings.max_pods),
                    "accelerators": accelerators,
                }
            ),
            taints=list(self.settings.taints),
        )


def _by_cluster(ads: list[Ad], clusters: list[int]) -> dict[int, Ad]:
    wanted = set(clusters)
    out: dict[int, Ad] = {}
    for ad in ads:
        cluster = _int(ad, "ClusterId")
        if cluster in wanted and cluster is not None:
            out[cluster] = ad
    return out


def _job_end(cluster: str, job: Ad, started: float | None) -> dict[str, Any]:
    """A container that left no exit file, by how the job ended."""
    status = _int(job, "JobStatus")
    end = float(_int(job, "CompletionDate") or _int(job, "EnteredCurrentStatus") or 0)
    end = end or time.time()
    at = started or float(_int(job, "JobCurrentStartDate") or 0) or end
    if status == REMOVED:
        why = _text(job, "RemoveReason")
        return {
            "exitCode": 143,
            "reason": "Cancelled",
            "message": f"HTCondor job {cluster} was removed" + (f": {why}" if why else ""),
            "startedAt": rfc3339(at),
            "finishedAt": rfc3339(end),
        }
    if job.get("ExitBySignal") is True:
        sig = _int(job, "ExitSignal") or 9
        code, reason = 128 + sig, "Error"
        message = f"HTCondor job {cluster} was killed by signal {sig}"
    else:
        code = _int(job, "ExitCode") or 0
        reason = "Completed" if code == 0 else "Error"
        message = f"HTCondor job {cluster} completed with exit code {code}"
    return {
        "exitCode": code,
        "reason": reason,
        "message": message,
        "startedAt": rfc3339(at),
        "finishedAt": rfc3339(end),
    }
