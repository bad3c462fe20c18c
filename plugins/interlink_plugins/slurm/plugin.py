"""The SLURM backend: each pod is one batch job (``interlink plugin slurm``).

Per status cycle it runs **one** ``squeue --states=all`` for all tracked jobs (finished jobs
stay visible there for SLURM's MinJobAge) and ``sacct`` only for jobs slurmctld no longer holds;
end states are cached, so a finished pod costs no SLURM call at all. Per-container
states come from the files the job script writes in the pod's working directory
(``containers/<name>/started``, ``exit``, ``0.log``), which must be on a filesystem shared with
the compute nodes; with ``shared_filesystem: false`` they come from the job's Comment (in the
same squeue/sacct answers) and the logs from its output file (see :mod:`.scratch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar, cast

from pydantic import Field

from interlink_core import beneath
from interlink_core.errors import BackendUnavailable, BadRequest, ConfigError, Unsupported
from interlink_core.hostpaths import refuse_host_paths
from interlink_core.jobfiles import (
    apply_supervision,
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
from interlink_core.podspec import checked_uid, materialize_volumes
from interlink_core.sdk import Plugin, PluginConfig, Submitted
from interlink_core.store import JobRecord
from interlink_core.tenants import UnixAccount, load_tenants, unix_account

from .commands import (
    SACCT_FIELDS,
    SQUEUE_FORMAT,
    Calls,
    JobState,
    parse_node_addr,
    parse_sacct,
    parse_sbatch,
    parse_sinfo,
    parse_squeue,
    run,
    sbatch_error,
)
from .config import SlurmConfig
from .orphans import forget, orphan_job, remember
from .scratch import ContainerReport, LogDemux, decode_comment, reported_state
from .script import JobPlan, build_job, record_data
from .tenancy import (
    cancel_argv,
    check_choices,
    check_work_dir,
    handover_argv,
    own_tree,
    reclaim_argv,
    resolve_tenant,
    share_with_plugin,
    submit_argv,
    sudo_refusal,
    tenant_settings,
    umask_problem,
)

ACTIVE = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
    "RESV_DEL_HOLD",
    "SPECIAL_EXIT",
}
QUEUED = {
    "PENDING",
    "CONFIGURING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "SUSPENDED",
    "RESV_DEL_HOLD",
}
# SLURM's end state of a job whose container left no exit file → (reason, exit code)
JOB_END = {
    "TIMEOUT": ("DeadlineExceeded", 143),
    "OUT_OF_MEMORY": ("OOMKilled", 137),
    "CANCELLED": ("Cancelled", 143),
    "NODE_FAIL": ("NodeFailure", 255),
    "BOOT_FAIL": ("NodeFailure", 255),
    "PREEMPTED": ("Preempted", 143),
    "DEADLINE": ("DeadlineExceeded", 143),
    "FAILED": ("Error", 1),
    "COMPLETED": ("Completed", 0),
}


RUNNER_MARGIN = 10.0
"""Seconds a deleted pod's runner gets beyond the grace period before the job is cancelled."""


class SlurmPluginConfig(SlurmConfig):
    """:class:`SlurmConfig` plus the capacity announced to Kubernetes."""

    max_pods: int = Field(default=1000, ge=1)


def prepare_job(
    data: RetrievedPodData,
    settings: SlurmConfig,
    pod_dir: Path,
    tenant: str | None,
    account: UnixAccount | None,
) -> tuple[JobPlan, JSON]:
    """Write the pod's script and files into ``pod_dir`` and record what goes with the job id
    (before ``sbatch`` runs, so that a killed create's job is adopted); the plan and the
    record."""
    plan, files = build_job(data, settings, pod_dir)
    write_job_files(pod_dir, {"job.sh": plan.script, **files}, ("job.sh",))
    for stale in (plan.output, plan.error) if plan.output else ():  # appended to
        Path(stale).unlink(missing_ok=True)
    recorded = record_data(plan, pod_dir)
    if account is not None:
        recorded["tenant"], recorded["user"] = tenant, account.user
    remember(settings.state_path, data.pod["metadata"]["uid"], recorded)
    return plan, recorded


class SlurmPlugin(Plugin):
    """Pods as SLURM batch jobs."""

    name = "slurm"
    config_model: ClassVar[type[PluginConfig]] = SlurmPluginConfig

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.settings = cast(SlurmPluginConfig, config)
        self.calls = Calls()
        self._final: dict[str, PodStatus] = {}
        self._ended: dict[str, JobState] = {}
        self._user = str(os.getuid())
        # shared_filesystem: false: last Comment seen per job, log splitters per pod
        self._comments: dict[str, str] = {}
        self._addrs: dict[str, str] = {}  # batch host -> its address (the pod IP)
        self._demux: dict[str, tuple[LogDemux, asyncio.Lock]] = {}
        self._notices: dict[str, list[JSON]] = {}  # pod UID: Events the plugin wrote at submit
        self.tenants = load_tenants(self.settings.tenants_file)
        if self.tenants is not None:
            missing = self.tenants.unix_problems()
            if missing:
                raise ConfigError("tenant map: " + "; ".join(missing))
            if not self.settings.shared_filesystem:
                raise ConfigError(
                    "tenants_file with shared_filesystem: false is not supported: the plugin "
                    "would copy each job's output, written as the tenant's user, into files as "
                    "root; use a shared filesystem for a multi-tenant site, or one plugin per "
                    "tenant running as that tenant's user"
                )
            check_work_dir(self.settings)
            umask = umask_problem() if self.settings.submit_as == "sudo" else None
            if umask:
                raise ConfigError(umask)

    async def start(self) -> None:
        """Make sure the jobs directory exists (tracked jobs are re-read from SLURM)."""
        self.settings.jobs_path.mkdir(parents=True, exist_ok=True)
        if not self.settings.shared_filesystem:
            self.settings.logs_path.mkdir(parents=True, exist_ok=True)

    # --- create -------------------------------------------------------------------------------

    async def submit(self, data: RetrievedPodData) -> Submitted:
        """Write the pod's files and script, then ``sbatch`` it (as the plugin's user)."""
        return await self.submit_for(data, None)

    async def submit_for(self, data: RetrievedPodData, tenant: str | None) -> Submitted:
        """Write the pod's files and script, then ``sbatch`` it; with a tenant map, as the
        tenant's Unix user, in a directory only that user can read, with its SLURM policy."""
        refuse_host_paths(data.pod, self.settings.host_path_prefixes)
        settings: SlurmConfig = self.settings
        account: UnixAccount | None = None
        if self.tenants is not None:
            found = resolve_tenant(self.tenants, tenant)
            settings = tenant_settings(self.settings, str(tenant), found)
            check_choices(data.pod, settings, str(tenant), found)
            account = unix_account(found)
        uid = checked_uid(data.pod)
        adopted = await orphan_job(settings.squeue, settings.state_path, settings.jobs_path / uid)
        if adopted is not None:  # submitted by a create the plugin was killed in
            return adopted
        if account is not None:  # a leftover the tenant owns (a create killed after handover)
            await self._reclaim(settings.jobs_path / uid)
        async with new_pod_dir(settings.jobs_path, uid) as pod_dir:
            # one thread hop for all the files: a burst of creates queues at the thread pool
            plan, recorded = await asyncio.to_thread(
                prepare_job, data, settings, pod_dir, tenant, account
            )
            argv = [settings.sbatch, "--parsable", *plan.options, str(pod_dir / "job.sh")]
            if account is not None:
                await self._hand_over(pod_dir, account)
                argv = submit_argv(settings, account, argv)
            self.calls.sbatch += 1
            rc, out, err = await run(argv)
            if rc != 0:
                forget(settings.state_path, uid)
                if account is not None:
                    await self._reclaim(pod_dir)  # so that the failed create leaves nothing
                refused = sudo_refusal(account, "sbatch", err) if account else None
                if refused and settings.submit_as == "sudo":
                    raise BackendUnavailable(refused)
                raise sbatch_error(err)
            job_id = parse_sbatch(out)
        return Submitted(job_id=job_id, data=recorded)

    async def _hand_over(self, pod_dir: Path, account: UnixAccount) -> None:
        """Give a pod directory to its tenant's user (as root, or through sudo chown)."""
        if self.settings.submit_as != "sudo":
            await asyncio.to_thread(own_tree, pod_dir, account)
            return
        await asyncio.to_thread(share_with_plugin, pod_dir)
        rc, _, err = await run(handover_argv(self.settings, account, pod_dir))
        if rc != 0:
            raise BackendUnavailable(
                f"cannot give {pod_dir} to {account.user} with sudo chown: {err.strip()} "
                "(see the sudo rule in docs/tenants.md)"
            )

    async def _reclaim(self, pod_dir: Path) -> None:
        """``submit_as: sudo``: take a tenant's pod directory back, so that the plugin can
        remove it (as root the plugin removes it as it is)."""
        if self.settings.submit_as == "sudo" and await asyncio.to_thread(pod_dir.is_dir):
            rc, _, err = await run(reclaim_argv(self.settings, pod_dir))
            if rc != 0:
                raise BackendUnavailable(
                    f"cannot take {pod_dir} back with sudo chown to remove it: {err.strip()} "
                    "(see the sudo rule in docs/tenants.md)"
                )

    # --- volumes of running pods ---------------------------------------------------------------

    async def update_volumes(self, record: JobRecord, data: RetrievedPodData) -> None:
        """Rewrite the pod's volume files in its job directory (shared filesystem: the job
        sees them through its binds; each file is replaced atomically)."""
        if "scratch" in record.data:
            raise Unsupported(
                "the SLURM plugin runs with shared_filesystem: false here and cannot update the "
                "volumes of running jobs (their files were unpacked on the compute node); "
                "service-account tokens expire at their expirationSeconds"
            )
        if record.data.get("tenant"):
            raise Unsupported(
                "the pod's directory belongs to its tenant's Unix user, and the plugin does not "
                "write into it once the job runs; service-account tokens expire at their "
                "expirationSeconds"
            )
        volumes = self.settings.jobs_path / record.uid / "volumes"
        await asyncio.to_thread(materialize_volumes, data, volumes)

    # --- delete -------------------------------------------------------------------------------

    async def cancel(self, record: JobRecord, pod: JSON) -> None:
        """``scancel`` the job, wait until SLURM let it go, remove its directory."""
        queue = await self._squeue([record.job_id])
        job = queue.get(record.job_id)
        if record.data.get("runner") and job is not None and job.state == "RUNNING":
            await self._stop_runner(record, pod)
            queue = await self._squeue([record.job_id])
            if record.job_id in queue and queue[record.job_id].state not in ACTIVE:
                del queue[record.job_id]  # the runner ended it: nothing left to cancel
        if record.job_id in queue:
            self.calls.scancel += 1
            account = self._account(record)
            argv = cancel_argv(self.settings, account, [self.settings.scancel])
            rc, _, err = await run([*argv, record.job_id])
            refused = sudo_refusal(account, "scancel", err) if account and rc != 0 else None
            if refused and self.settings.submit_as == "sudo":
                raise BackendUnavailable(refused)
            if rc != 0 and "Invalid job id" not in err:
                raise BadRequest(f"scancel {record.job_id} failed: {err.strip()}")
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                queue = await self._squeue([record.job_id])
                state = queue.get(record.job_id)
                if state is None or state.state not in ACTIVE:
                    break
                await asyncio.sleep(0.5)
        if not self.settings.keep_work_dirs:
            if record.data.get("tenant") and record.data.get("dir"):
                await self._reclaim(Path(str(record.data["dir"])))
            await asyncio.to_thread(shutil.rmtree, record.data.get("dir", ""), True)
            for name in (record.data.get("scratch") or {}).values():
                await asyncio.to_thread(Path(name).unlink, True)
        forget(self.settings.state_path, record.uid)
        self._final.pop(record.uid, None)
        self._ended.pop(record.job_id, None)
        self._comments.pop(record.job_id, None)
        self._demux.pop(record.uid, None)
        self._notices.pop(record.uid, None)

    async def _stop_runner(self, record: JobRecord, pod: JSON) -> None:
        """A job running the pod runner: write the grace period for it and signal only the
        runner (``scancel --batch --signal=TERM``), which runs preStop hooks, then stops the
        containers within the grace period; wait for it that long (plus a margin)."""
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        grace = meta.get("deletionGracePeriodSeconds")
        grace = spec.get("terminationGracePeriodSeconds") if grace is None else grace
        grace = 30.0 if grace is None else max(0.0, float(grace))
        pod_dir = Path(str(record.data.get("dir", "")))
        # the tenant's job owns the directory: no symlink there is followed; its runner reads it
        # (one the job made unwritable: the runner takes the pod spec's grace period instead)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(beneath.write_text, pod_dir, "grace", str(grace), 0o644)
        self.calls.scancel += 1
        argv = cancel_argv(self.settings, self._account(record), [self.settings.scancel])
        rc, _, _ = await run([*argv, "--batch", "--signal=TERM", record.job_id])
        if rc != 0:
            return  # e.g. the job just ended; the plain scancel below decides
        deadline = time.monotonic() + grace + RUNNER_MARGIN
        while time.monotonic() < deadline:
            state = (await self._squeue([record.job_id])).get(record.job_id)
            if state is None or state.state not in ACTIVE:
                return
            await asyncio.sleep(0.5)

    def _account(self, record: JobRecord) -> UnixAccount | None:
        """The Unix account a tenant's job runs as (``None`` without a tenant map)."""
        name = record.data.get("tenant")
        if self.tenants is None or not name or name not in self.tenants.tenants:
            return None
        return unix_account(self.tenants.tenants[name])

    # --- status -------------------------------------------------------------------------------

    async def _squeue(self, job_ids: list[str]) -> dict[str, JobState]:
        """One ``squeue`` call for all these jobs."""
        self.calls.squeue += 1
        # --states=all: jobs that just ended stay visible (for MinJobAge) with their end state
        argv = [
            self.settings.squeue,
            "-h",
            "-t",
            "all",
            "-o",
            SQUEUE_FORMAT,
            "-j",
            ",".join(job_ids),
        ]
        rc, out, err = await run(argv)
        if rc != 0 and "Invalid job id" in err:
            # some ids are no longer known to slurmctld: list this user's jobs instead (with
            # a tenant map, the jobs of all users)
            self.calls.squeue += 1
            users = [] if self.tenants is not None else ["-u", self._user]
            rc, out, err = await run(
                [self.settings.squeue, "-h", "-t", "all", "-o", SQUEUE_FORMAT, *users]
            )
        if rc != 0:
            raise BackendUnavailable(f"squeue failed: {err.strip() or rc}")
        wanted = set(job_ids)
        return {k: v for k, v in parse_squeue(out).items() if k in wanted}

    async def _sacct(self, job_ids: list[str]) -> dict[str, JobState]:
        """One ``sacct`` call for jobs that left the queue (empty if accounting is off)."""
        self.calls.sacct += 1
        rc, out, _ = await run(
            [self.settings.sacct, "-n", "-X", "-P", "-o", SACCT_FIELDS, "-j", ",".join(job_ids)]
        )
        return parse_sacct(out) if rc == 0 else {}

    async def poll(self, records: list[JobRecord]) -> list[PodStatus]:
        """Statuses of all these pods: one squeue, and sacct only for jobs that just ended."""
        open_ids = [r.job_id for r in records if r.uid not in self._final]
        queue = await self._squeue(open_ids) if open_ids else {}
        # squeue answers for everything slurmctld still holds; sacct only for jobs it purged
        gone = [j for j in open_ids if j not in queue and j not in self._ended]
        accounted = await self._sacct(gone) if gone else {}
        for job_id, job in [*queue.items(), *accounted.items()]:
            if job.state not in ACTIVE:  # accounting may lag: cache only end states
                self._ended[job_id] = job
        jobs = {**accounted, **queue, **self._ended}
        await self._resolve_hosts({j.host for j in queue.values() if j.host})
        return await asyncio.to_thread(
            lambda: [self._status(r, jobs.get(r.job_id)) for r in records]
        )

    async def _resolve_hosts(self, hosts: set[str]) -> None:
        """The address of each batch host not seen before (``scontrol show node``'s
        NodeAddr, else the name's DNS address): what the pod IP is, so that a hub's proxy or
        a Dask scheduler can reach a server the job runs. Once per node, not per cycle."""
        for host in sorted(hosts - set(self._addrs)):
            rc, out, _ = await run([self.settings.scontrol, "show", "node", host, "-o"])
            addr = parse_node_addr(out) if rc == 0 else ""
            if not addr or addr == host:
                try:
                    found = await asyncio.get_running_loop().getaddrinfo(host, None)
                    addr = str(found[0][4][0])
                except OSError:
                    addr = ""
            self._addrs[host] = addr

    def _status(self, record: JobRecord, job: JobState | None) -> PodStatus:
        final = self._final.get(record.uid)
        if final is not None:
            return final
        terminal = job is not None and job.state not in ACTIVE
        reports = self._reports(record, job)
        status = assemble_pod_status(
            record,
            lambda name, why, never: self._container(record, name, job, why, never, reports),
        )
        if job is not None and job.host and not terminal:
            status.podIP = self._addrs.get(job.host) or None
        if record.data.get("runner"):
            status.events = recent_events(str(record.data.get("dir", ""))) or None
        elif record.data.get("events"):  # written once at submit: read once
            if record.uid not in self._notices:
                self._notices[record.uid] = recent_events(str(record.data.get("dir", "")))
            status.events = self._notices[record.uid] or None
        if terminal:
            self._final[record.uid] = status
        return status

    def _container(
        self,
        record: JobRecord,
        name: str,
        job: JobState | None,
        waiting_reason: str,
        never: str = "",
        reports: dict[str, ContainerReport] | None = None,
    ) -> JSON:
        base = base_status(record, name)
        cid = f"slurm://{record.job_id}/{name}"
        if reports is None:
            started, terminated = container_files(record, name, cid)
        else:
            started, terminated = reported_state(reports.get(name), cid)
        if terminated is not None:
            if job is not None and job.state == "OUT_OF_MEMORY" and terminated["exitCode"] == 137:
                terminated["reason"] = "OOMKilled"  # SLURM's memory cgroup killed it
            base["state"] = {"terminated": terminated}
            return self._supervised(record, name, base)
        if job is None:
            return waiting(
                base,
                "JobStateUnknown",
                f"SLURM job {record.job_id} is not known to squeue or sacct (yet)",
            )
        if job.state not in ACTIVE:
            if never:  # an init container failed
                return waiting(base, "PodInitializing", never)
            reason, code = JOB_END.get(job.state, ("Error", 1))
            if job.state == "FAILED" and job.exit_code:
                code = job.exit_code
            at = started or time.time()
            base["state"] = {
                "terminated": {
                    "exitCode": code,
                    "reason": reason,
                    "message": f"SLURM job {record.job_id} ended {job.state}",
                    "startedAt": rfc3339(at),
                    "finishedAt": rfc3339(at),
                }
            }
            return base
        if job.state in QUEUED:
            message = f"SLURM job {record.job_id} is {job.state}"
            if job.start:
                message += f"; expected start {job.start}"
            return waiting(base, f"Queued: {job.reason or job.state.title()}", message)
        return self._supervised(record, name, started_or_waiting(base, started, waiting_reason))

    def _supervised(self, record: JobRecord, name: str, status: JSON) -> JSON:
        """What the pod runner reports for the container, for jobs that run it."""
        if not record.data.get("runner"):
            return status
        return apply_supervision(status, str(record.data.get("dir", "")), name)

    def _reports(
        self, record: JobRecord, job: JobState | None
    ) -> dict[str, ContainerReport] | None:
        """Container states from the job's Comment (``None`` for shared-filesystem jobs); the
        last Comment seen is kept, for an accounting record that has none."""
        if "scratch" not in record.data:
            return None
        if job is not None and job.comment:
            self._comments[record.job_id] = job.comment
        names = [*record.data.get("init", []), *record.data.get("containers", [])]
        return decode_comment(self._comments.get(record.job_id, ""), names)

    # --- logs ---------------------------------------------------------------------------------

    def logs(self, record: JobRecord, request: LogStruct) -> AsyncIterator[bytes]:
        """The container's log file, as asked; followed until the container or job ends."""
        if "scratch" in record.data:
            return self._scratch_logs(record, request)

        async def job_ended() -> bool:
            return record.uid in self._final

        return container_logs(record, request, job_ended)

    def _scratch_logs(self, record: JobRecord, request: LogStruct) -> AsyncIterator[bytes]:
        """Logs of a ``shared_filesystem: false`` job: its output file is split into the
        per-container log files of the pod's directory first (and again while following)."""
        name = request.ContainerName

        async def ended() -> bool:
            if record.uid not in self._demux:  # the pod was deleted meanwhile
                return True
            await self._split_output(record)
            if record.uid in self._final:
                return True
            report = (self._reports(record, None) or {}).get(name)
            return report is not None and report.exit_code is not None

        inner = container_logs(record, request, ended)  # checks the request now

        async def stream() -> AsyncIterator[bytes]:
            await self._split_output(record)
            async for chunk in inner:
                yield chunk

        return stream()

    async def _split_output(self, record: JobRecord) -> None:
        entry = self._demux.get(record.uid)
        if entry is None:
            names = [*record.data.get("init", []), *record.data.get("containers", [])]
            output = Path(record.data["scratch"]["output"])
            entry = (LogDemux(output, Path(record.data["dir"]), names), asyncio.Lock())
            self._demux[record.uid] = entry
        async with entry[1]:
            await asyncio.to_thread(entry[0].update)

    # --- ping ---------------------------------------------------------------------------------

    async def ping(self) -> PingAnswer:
        """Capacity from ``sinfo`` (or ``announce_cpu``) and the configured taints."""
        self.calls.sinfo += 1
        argv = [self.settings.sinfo, "-h", "-N", "-o", "%N|%c|%m|%G|%h"]
        if self.settings.partition:
            argv += ["-p", self.settings.partition]
        rc, out, err = await run(argv)
        if rc != 0:
            return PingAnswer(status=f"sinfo failed: {err.strip()}")
        cpus, mem_mib, gpus = parse_sinfo(out)
        cpus = self.settings.announce_cpu or cpus
        accelerators = [{"resourceType": "nvidia.com/gpu", "available": gpus}] if gpus else []
        return PingAnswer(
            status="ok",
            resources=NodeResources.model_validate(
                {
                    "cpu": str(cpus),
                    "memory": f"{mem_mib}Mi",
                    "pods": str(self.settings.max_pods),
                    "accelerators": accelerators,
                }
            ),
            taints=list(self.settings.taints),
        )
