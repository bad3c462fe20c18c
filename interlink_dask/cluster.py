"""``InterLinkCluster``: a Dask cluster whose workers are pods on interLink virtual nodes
(Kubernetes mode) or pods sent straight to an interLink API server (direct mode)."""

from __future__ import annotations

import asyncio
import contextlib
import html
import math
from collections import defaultdict
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from dask.utils import parse_bytes
from distributed import Scheduler
from distributed.core import Status, rpc
from distributed.deploy.adaptive import Adaptive
from distributed.deploy.spec import ProcessInterface, SpecCluster
from distributed.objects import SchedulerInfo
from distributed.utils import Log, Logs, NoOpAwaitable

from interlink_core.embedded import free_port

from .backend import Backend, ClusterRecord, log, route_address
from .config import ClusterOptions, load_options
from .pods import worker_names
from .scaling import hold_scale_up, pods_to_drop
from .states import SUBMITTED, WorkerRow, WorkerState, counts, table


def make_backend(opts: ClusterOptions) -> Backend:
    """The backend of the configured mode."""
    if opts.mode == "direct":
        from .direct import DirectBackend

        return DirectBackend(opts)
    from .kubernetes import KubernetesBackend

    return KubernetesBackend(opts)


async def list_records(opts: ClusterOptions, mode: str) -> list[ClusterRecord]:
    """Live clusters of one mode (direct: on this machine; Kubernetes: in the namespace)."""
    if mode == "direct":
        from .direct import direct_records

        return direct_records(opts)
    from .kubernetes import kubernetes_records

    return await kubernetes_records(opts)


async def all_records(
    opts: ClusterOptions, modes: Sequence[str], problems: list[str]
) -> AsyncGenerator[ClusterRecord, None]:
    """Live clusters of these modes, mode by mode (a caller that stops early lists no more
    modes); why a mode could not be listed (no kubeconfig, API down) goes to ``problems``."""
    for mode in modes:
        try:
            records = await list_records(opts, mode)
        except Exception as exc:
            problems.append(f"cannot list {mode} clusters: {exc}")
            continue
        for record in records:
            yield record


async def find_record(opts: ClusterOptions) -> ClusterRecord:
    """The live cluster named ``opts.name``: looked for in the configured mode first, then
    in the other one (so ``from_name`` finds a cluster whatever mode made it)."""
    known: list[str] = []
    problems: list[str] = []
    other = "direct" if opts.mode == "kubernetes" else "kubernetes"
    async with contextlib.aclosing(all_records(opts, (opts.mode, other), problems)) as records:
        async for record in records:
            if record.name == opts.name:
                return record
            known.append(record.name)
    raise LookupError(
        f"name: no running cluster {opts.name!r} (running: {', '.join(known) or 'none'})"
        + "".join(f"; {p}" for p in problems)
    )


class WorkerPod(ProcessInterface):
    """One worker job: a pod running ``processes`` Dask workers."""

    def __init__(self, scheduler: str, name: str, backend: Backend, **_: Any) -> None:
        super().__init__()
        self.scheduler = scheduler
        self.name = name
        self.backend = backend

    async def start(self) -> None:
        """Create the pod (returns once the pod exists, not when the worker connects)."""
        await self.backend.create(self.name, self.scheduler)
        await super().start()

    async def close(self) -> None:
        """Delete the pod, and so its batch job."""
        try:
            await self.backend.delete(self.name)
        except Exception as exc:
            log.warning("could not delete worker pod %s: %s", self.name, exc)
        await super().close()


class ExistingScheduler(ProcessInterface):
    """The scheduler of a cluster another process owns (``from_name``)."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = self.external_address = address


class InterLinkAdaptive(Adaptive):
    """Adaptive scaling that waits for queued jobs instead of asking for more, and retires
    idle connected workers before jobs that wait in the batch queue."""

    async def recommendations(self, target: int) -> dict[str, Any]:
        """Like dask's, except for the two rules above."""
        cluster: InterLinkCluster = self.cluster  # type: ignore[assignment]
        plan = self.plan
        if target == len(plan):
            self.close_counts.clear()
            return {"status": "same"}
        if target > len(plan):
            self.close_counts.clear()
            if hold_scale_up(cluster.worker_states):
                return {"status": "same"}  # jobs still wait in the queue: do not pile on
            return {"status": "up", "n": target}
        to_close = await cluster.retire_candidates(len(plan) - target, adaptive=True)
        firmly = set()
        tally: dict[str, int] = self.close_counts  # type: ignore[assignment]
        for w in to_close:
            tally[w] += 1
            if tally[w] >= self.wait_count:
                firmly.add(w)
        for k in list(tally):
            if k in firmly or k not in to_close:
                del tally[k]
        return {"status": "down", "workers": sorted(firmly)} if firmly else {"status": "same"}


class InterLinkCluster(SpecCluster):
    """A Dask cluster whose workers run as pods on interLink virtual nodes.

    Options come from dask config under ``interlink:`` and keyword arguments (which win); see
    docs/dask.md. ``mode="direct"`` sends the pods straight to an interLink API server.

    >>> cluster = InterLinkCluster(image="ghcr.io/dask/dask:latest", node="hpc-slurm")
    >>> cluster.scale(8)            # 8 workers (processes per pod: ``processes``)
    >>> cluster.scale(jobs=2)       # or 2 pods
    >>> cluster.adapt(minimum=0, maximum=50)
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        n_workers: int = 0,
        asynchronous: bool = False,
        loop: Any = None,
        shutdown_on_close: bool | None = None,
        silence_logs: str | int | bool = "error",
        _attach: bool = False,
        **options: Any,
    ) -> None:
        self.options = load_options(
            attach=_attach, name=name, shutdown_on_close=shutdown_on_close, **options
        )
        self._attach = _attach
        # an attached cluster (from_name) makes no pods: the owner does
        self.backend: Backend | None = None if _attach else make_backend(self.options)
        self._remote_rows: list[WorkerRow] = []
        self._rows_task: asyncio.Task[None] | None = None
        self.contact_address = ""
        processes = self.options.processes
        worker: dict[str, Any] = {
            "cls": WorkerPod,
            "options": {
                "backend": self.backend,
                "nthreads": self.options.threads_per_process,
                "memory_limit": self.options.memory_bytes // processes,
            },
        }
        if processes > 1:
            worker["group"] = [f"-{i}" for i in range(processes)]
        try:
            super().__init__(
                scheduler={"cls": Scheduler, "options": {}},
                worker=worker,
                asynchronous=asynchronous,
                loop=loop,
                silence_logs=silence_logs,
                name=self.options.cluster_name,
                shutdown_on_close=bool(shutdown_on_close)
                if _attach
                else self.options.shutdown_on_close,
            )
        except BaseException:
            self.status = Status.closed
            with contextlib.suppress(Exception):
                self._loop_runner.stop()
            raise
        if n_workers:
            self.scale(n_workers)

    # -- life cycle ---------------------------------------------------------------------------

    @classmethod
    def from_name(
        cls,
        name: str,
        *,
        asynchronous: bool = False,
        shutdown_on_close: bool = False,
        **options: Any,
    ) -> InterLinkCluster:
        """Reconnect to the running cluster ``name`` (started by another process). Scaling and
        adaptivity are done by the owner; ``close()`` only disconnects unless
        ``shutdown_on_close=True``."""
        return cls(
            name,
            asynchronous=asynchronous,
            shutdown_on_close=shutdown_on_close,
            _attach=True,
            **options,
        )

    async def _start(self) -> None:
        if self.status in (Status.running, Status.starting):
            return await super()._start()  # type: ignore[no-any-return]
        if self._attach:
            await self._attach_to(await find_record(self.options))
            return None
        try:
            await self.backend.check()  # bad node, unreachable edge, name in use: nothing made
        except BaseException:
            self.status = Status.failed
            with contextlib.suppress(Exception):
                await self.backend.close(shutdown=False)
            raise
        self.scheduler_spec["options"] = self._scheduler_options()
        await super()._start()
        assert isinstance(self.scheduler, Scheduler)
        self.scheduler.handlers.update(
            {
                "interlink_scale": self._handle_scale,
                "interlink_adapt": self._handle_adapt,
                "interlink_rows": self._handle_rows,
                "interlink_close": self._handle_close,
            }
        )
        await self.backend.publish(self.contact_address, self.dashboard_link)
        await self.backend.start()
        return None

    async def _attach_to(self, record: ClusterRecord) -> None:
        """Talk to another process' scheduler without subscribing to its worker stream (the
        scheduler allows one subscriber, its owner); poll it instead."""
        self._lock = asyncio.Lock()
        self.scheduler = ExistingScheduler(record.scheduler)
        self.scheduler_comm = rpc(
            record.scheduler, connection_args=self.security.get_connection_args("client")
        )
        await self._poll_remote_once()
        self._rows_task = asyncio.create_task(self._poll_remote())
        self.status = Status.running

    def _scheduler_options(self) -> dict[str, Any]:
        """Listen address and the contact address workers dial."""
        sched = self.options.scheduler
        port = sched.port
        contact = sched.contact_address
        if contact and not port:
            with contextlib.suppress(ValueError):
                port = int(contact.rsplit(":", 1)[1])
        if not port:
            port = free_port("")  # free on every interface, wherever the scheduler listens
        direct = self.options.mode == "direct"
        here = route_address(self.backend.route_target)
        host = sched.host or (here if direct else "0.0.0.0")
        if not contact:
            contact = f"{sched.protocol}://{here}:{port}"
        self.contact_address = contact
        return {
            "host": host,
            "port": port,
            "protocol": sched.protocol,
            "dashboard_address": sched.dashboard_address,
            "contact_address": contact,
            **sched.options,
        }

    async def _close(self) -> None:
        if not self._attach:
            await super()._close()
            await self.backend.close(shutdown=True)
            return
        if self.status == Status.closed:
            return
        if self._rows_task:
            self._rows_task.cancel()
        if self.shutdown_on_close and self.status == Status.running:
            with contextlib.suppress(OSError):
                await self.scheduler_comm.interlink_close()
        self.status = Status.closing
        await self.scheduler_comm.close_rpc()
        self.status = Status.closed

    # -- scaling ------------------------------------------------------------------------------

    def scale(
        self,
        n: int | None = None,
        jobs: int = 0,
        memory: str | None = None,
        cores: int | None = None,
    ) -> Any:
        """Scale to ``n`` workers (``ceil(n / processes)`` pods) or to ``jobs`` pods; with
        ``memory``/``cores``, to at least that much. Pods that have not connected yet go
        first when shrinking (queued before started)."""
        processes = self.options.processes
        if n is not None:
            jobs = math.ceil(n / processes)
        if memory is not None:
            jobs = max(jobs, math.ceil(parse_bytes(memory) / self.options.memory_bytes))
        if cores is not None:
            per_pod = self.options.threads_per_process * processes
            jobs = max(jobs, math.ceil(cores / per_pod))
        if self._attach:
            if self.status in (Status.closing, Status.closed):
                return NoOpAwaitable() if self.asynchronous else None
            return self.sync(self.scheduler_comm.interlink_scale, jobs=jobs)
        self._drop_finished()
        excess = len(self.worker_spec) - jobs
        if excess > 0:
            for pod in pods_to_drop(self.worker_states, excess, adaptive=False):
                self.worker_spec.pop(pod, None)
        while len(self.worker_spec) < jobs and self.status not in (
            Status.closing,
            Status.closed,
        ):
            self.worker_spec.update(self.new_worker_spec())
        self.loop.add_callback(self._correct_state)
        return NoOpAwaitable() if self.asynchronous else None

    def _new_worker_name(self, worker_number: int) -> str:
        return f"{self.options.cluster_name}-worker-{worker_number}"

    def _drop_finished(self) -> None:
        """Pods whose worker ended on its own leave the plan (a later scale replaces them)."""
        for row in self.worker_states:
            if row.state == WorkerState.FINISHED:
                self.worker_spec.pop(row.pod, None)

    def adapt(  # type: ignore[override]
        self,
        minimum: int = 0,
        maximum: float = math.inf,
        minimum_jobs: int | None = None,
        maximum_jobs: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Adaptive scaling between ``minimum`` and ``maximum`` workers (or ``*_jobs`` pods)
        that does not pile up queued jobs and keeps queued jobs longest."""
        processes = self.options.processes
        if minimum_jobs is not None:
            minimum = minimum_jobs * processes
        if maximum_jobs is not None:
            maximum = maximum_jobs * processes
        if self._attach:
            return self.sync(
                self.scheduler_comm.interlink_adapt,
                minimum=minimum,
                maximum=None if math.isinf(maximum) else maximum,
                **kwargs,
            )
        pod_of = self._pod_of_worker
        return super().adapt(
            Adaptive=InterLinkAdaptive,
            minimum=minimum,
            maximum=maximum,
            worker_key=lambda ws: pod_of(str(ws.name)),
            **kwargs,
        )

    def _pod_of_worker(self, worker: str) -> str:
        if worker in self.worker_spec or self.options.processes == 1:
            return worker
        return worker.rsplit("-", 1)[0]

    # -- worker states ------------------------------------------------------------------------

    @property
    def worker_states(self) -> list[WorkerRow]:
        """Every worker pod with its state: queued (and why), starting, running, connected to
        the scheduler, finished."""
        if self._attach:
            return list(self._remote_rows)
        connected: dict[str, int] = defaultdict(int)
        if isinstance(self.scheduler, Scheduler):
            for ws in self.scheduler.workers.values():
                connected[self._pod_of_worker(str(ws.name))] += 1
        rows = []
        for pod in self.worker_spec:
            view = self.backend.views.get(str(pod), SUBMITTED)
            n = connected.get(str(pod), 0)
            if n and view.state != WorkerState.FINISHED:
                reason = "" if self.options.processes == 1 else f"{n}/{self.options.processes}"
                rows.append(WorkerRow(str(pod), WorkerState.CONNECTED, reason))
            else:
                rows.append(WorkerRow(str(pod), view.state, view.reason))
        return rows

    def worker_state_counts(self) -> dict[str, int]:
        """How many worker pods are in each state."""
        return counts(self.worker_states)

    async def retire_candidates(self, n_workers: int, adaptive: bool) -> list[str]:
        """Names of the workers of the pods to remove to drop about ``n_workers`` workers
        (whole pods only; see :mod:`interlink_dask.scaling` for the order)."""
        processes = self.options.processes
        n_pods = n_workers // processes
        rows = self.worker_states
        idle: list[str] = []
        connected = [r.pod for r in rows if r.state == WorkerState.CONNECTED]
        if adaptive and connected and isinstance(self.scheduler, Scheduler):
            keep = max(len(connected) - n_pods, 0) * processes
            names = self.scheduler.workers_to_close(
                target=keep,
                key=lambda ws: self._pod_of_worker(str(ws.name)),
                attribute="name",
            )
            idle = list(dict.fromkeys(self._pod_of_worker(str(w)) for w in names))
        pods = pods_to_drop(rows, n_pods, adaptive, idle)
        return [w for pod in pods for w in worker_names(pod, processes)]

    # -- what users see -----------------------------------------------------------------------

    def state_table(self) -> str:
        """The worker pods and their states as plain text."""
        return table(self.worker_states)

    def _scaling_status(self) -> str:
        adaptive = getattr(self, "_adaptive", None)
        mode = "Adaptive" if adaptive is not None and adaptive.periodic_callback else "Manual"
        cells = "".join(
            f"<td style='text-align: left;'>{html.escape(state)}: {n}</td>"
            for state, n in self.worker_state_counts().items()
        )
        return (
            f"<table><tr><td style='text-align: left;'>Scaling mode: {mode}</td></tr>"
            f"<tr>{cells}</tr></table>"
        )

    def _repr_html_(self, cluster_status: str | None = None) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(r.pod)}</td><td>{r.state.value}</td>"
            f"<td>{html.escape(r.reason)}</td></tr>"
            for r in self.worker_states
        )
        status = (
            self._scaling_status()
            + "<table><tr><th>pod</th><th>state</th><th>reason</th></tr>"
            + rows
            + "</table>"
        )
        return str(super()._repr_html_(cluster_status=status))

    async def _get_logs(
        self, cluster: bool = True, scheduler: bool = True, workers: Any = True
    ) -> Logs:
        """Cluster and scheduler logs, the connected workers' logs, and the log of every
        worker pod (which also shows why a worker never connected)."""
        logs = await super()._get_logs(cluster=cluster, scheduler=scheduler, workers=workers)
        if workers and not self._attach:
            pods = [str(p) for p in self.worker_spec]
            texts = await asyncio.gather(
                *(self.backend.logs(p) for p in pods), return_exceptions=True
            )
            for pod, text in zip(pods, texts, strict=True):
                logs[pod] = Log(f"(no log: {text})" if isinstance(text, BaseException) else text)
        return logs

    # -- requests from other processes (from_name) --------------------------------------------

    async def _handle_scale(self, jobs: int = 0) -> None:
        self.scale(jobs=jobs)

    async def _handle_adapt(self, **kwargs: Any) -> None:
        if kwargs.pop("stop", False):
            if self._adaptive is not None:
                self._adaptive.stop()
            return
        if kwargs.get("maximum") is None:
            kwargs["maximum"] = math.inf
        self.adapt(**kwargs)

    async def _handle_rows(self) -> list[tuple[str, str, str]]:
        return [(r.pod, r.state.value, r.reason) for r in self.worker_states]

    async def _handle_close(self) -> None:
        self.loop.add_callback(self._close)

    async def _poll_remote_once(self) -> None:
        self.scheduler_info = SchedulerInfo(await self.scheduler_comm.identity())
        rows = await self.scheduler_comm.interlink_rows()
        self._remote_rows = [WorkerRow(p, WorkerState(s), r) for p, s, r in rows]

    async def _poll_remote(self) -> None:
        while True:
            await asyncio.sleep(self.options.status_interval)
            try:
                await self._poll_remote_once()
            except Exception as exc:
                log.debug("cannot refresh %s from its owner: %s", self.name, exc)
