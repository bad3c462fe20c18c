"""``InterLinkCluster``: a Dask cluster whose workers are pods on interLink virtual nodes
(Kubernetes mode) or pods sent straight to an interLink API server (direct mode)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import json
import math
from collections import defaultdict
from collections.abc import AsyncGenerator, Sequence
from inspect import isawaitable
from typing import Any

from dask.utils import parse_bytes
from distributed import Scheduler
from distributed.core import Status, rpc
from distributed.deploy.adaptive import Adaptive
from distributed.deploy.spec import ProcessInterface, SpecCluster
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.objects import SchedulerInfo
from distributed.utils import Log, Logs, NoOpAwaitable

from interlink_core.embedded import free_port
from interlink_core.kube import now_rfc3339
from interlink_core.models import JSON

from .backend import Backend, ClusterRecord, log, route_address
from .config import ClusterOptions, load_options
from .pods import worker_names
from .scaling import hold_scale_up, pods_to_drop
from .states import SUBMITTED, WorkerRow, WorkerState, counts, table


def digest(snapshot: JSON) -> str:
    """A short fingerprint of a cluster snapshot (what watchers compare)."""
    data = json.dumps(snapshot, sort_keys=True, default=str).encode()
    return hashlib.blake2b(data, digest_size=12).hexdigest()


WATCH_TICK = 1.0
"""Seconds after which a watcher's wait re-reads the cluster even without a change event."""


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

    async def scale_up(self, n: int) -> None:
        """Ask for ``n`` workers without ending adaptive scaling (a user's ``scale`` does)."""
        cluster: InterLinkCluster = self.cluster  # type: ignore[assignment]
        f = cluster._scale(n)
        if isawaitable(f):
            await f


class ChangeNotifier(SchedulerPlugin):
    """Tells the cluster when a worker connects or leaves (its rows change)."""

    name = "interlink-changes"

    def __init__(self, changed: Any) -> None:
        self.changed = changed

    def add_worker(self, scheduler: Any = None, worker: Any = None) -> None:
        self.changed()

    def remove_worker(self, scheduler: Any = None, worker: Any = None, **kwargs: Any) -> None:
        self.changed()


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
        self._remote_summary: JSON = {}
        self._remote_digest = ""
        self._rows_task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self.created = ""
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
        self.created = now_rfc3339()
        await super()._start()
        assert isinstance(self.scheduler, Scheduler)
        self.scheduler.handlers.update(
            {
                "interlink_scale": self._handle_scale,
                "interlink_adapt": self._handle_adapt,
                "interlink_watch": self._handle_watch,
                "interlink_logs": self._handle_logs,
                "interlink_close": self._handle_close,
            }
        )
        self.scheduler.add_plugin(ChangeNotifier(self._changed))
        self.backend.on_change = self._changed
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
        await self._poll_remote_once(wait=0)
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
        first when shrinking (queued before started). Ends adaptive scaling, as a manual
        scale does in dask-gateway: otherwise the next adaptive step would undo it."""
        if not self._attach:
            self.stop_adaptive("manual scale")
        return self._scale(n, jobs, memory, cores)

    def stop_adaptive(self, reason: str = "stopped by the user") -> None:
        """End adaptive scaling (the workers stay as they are)."""
        adaptive = getattr(self, "_adaptive", None)
        if adaptive is not None:
            adaptive.stop(reason=reason)
            self._adaptive = None
            self.loop.add_callback(self._changed)

    def _scale(
        self,
        n: int | None = None,
        jobs: int = 0,
        memory: str | None = None,
        cores: int | None = None,
    ) -> Any:
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
        if self.status == Status.running:  # before that, _start makes the workers
            self.loop.add_callback(self._correct_state)
            self.loop.add_callback(self._changed)
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
        adaptive = super().adapt(
            Adaptive=InterLinkAdaptive,
            minimum=minimum,
            maximum=maximum,
            worker_key=lambda ws: pod_of(str(ws.name)),
            **kwargs,
        )
        self.loop.add_callback(self._changed)
        return adaptive

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
                rows.append(WorkerRow(str(pod), WorkerState.CONNECTED, reason, view.detail))
            else:
                rows.append(WorkerRow(str(pod), view.state, view.reason, view.detail))
        return rows

    def worker_state_counts(self) -> dict[str, int]:
        """How many worker pods are in each state."""
        return counts(self.worker_states)

    @property
    def adaptive_bounds(self) -> tuple[float, float] | None:
        """``(minimum, maximum)`` workers while adaptive scaling runs, else None."""
        if self._attach:
            bounds = self._remote_summary.get("adapt")
            if not bounds:
                return None
            top = bounds.get("maximum")
            return bounds["minimum"], math.inf if top is None else top
        adaptive = getattr(self, "_adaptive", None)
        if adaptive is None or adaptive.state in ("stopped", "inactive"):
            return None
        return adaptive.minimum, adaptive.maximum

    def summary(self, rows: list[WorkerRow] | None = None) -> JSON:
        """What a dashboard shows of the cluster (the Jupyter extension's cluster summary)."""
        if self._attach:
            return dict(self._remote_summary)
        rows = self.worker_states if rows is None else rows
        bounds = self.adaptive_bounds
        workers = len(self.scheduler.workers) if isinstance(self.scheduler, Scheduler) else 0
        namespace = getattr(self.backend, "namespace", None) or self.options.direct.namespace
        return {
            "name": self.name,
            "mode": self.options.mode,
            "namespace": namespace,
            "node": self.options.node,
            "counts": counts(rows),
            "pods": len(rows),
            "workers": workers,
            "processes": self.options.processes,
            "adapt": None
            if bounds is None
            else {
                "minimum": bounds[0],
                "maximum": None if math.isinf(bounds[1]) else bounds[1],
            },
            "dashboard_link": self.dashboard_link if self.scheduler_info else "",
            "scheduler_address": self.scheduler_address if self.scheduler_info else "",
            "created": self.created,
        }

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

    def _changed(self) -> None:
        """Wake the watchers (:meth:`_handle_watch`): the rows or the summary may differ."""
        if self._wake is not None:
            self._wake.set()
        self._wake = asyncio.Event()

    def snapshot(self) -> JSON:
        """Summary and rows, as watchers receive them."""
        rows = self.worker_states
        return {"summary": self.summary(rows), "rows": [r.as_json() for r in rows]}

    async def _handle_scale(self, jobs: int = 0) -> None:
        self.scale(jobs=jobs)

    async def _handle_adapt(self, **kwargs: Any) -> None:
        if kwargs.pop("stop", False):
            self.stop_adaptive()
            return
        if kwargs.get("maximum") is None:
            kwargs["maximum"] = math.inf
        self.adapt(**kwargs)

    async def _handle_watch(self, seen: str = "", wait: float = 10.0) -> JSON:
        """The cluster's :meth:`snapshot` (with its ``digest``) as soon as its digest differs
        from ``seen`` (at once when it already does), or after ``wait`` seconds. Changes wake
        it at once (pod states, workers connecting, scale, adapt); it also re-reads every
        :data:`WATCH_TICK`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            if self._wake is None:
                self._wake = asyncio.Event()
            wake = self._wake
            snap = self.snapshot()
            snap["digest"] = digest(snap)
            left = deadline - loop.time()
            if snap["digest"] != seen or left <= 0 or self.status != Status.running:
                return snap
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), min(left, WATCH_TICK))

    async def _handle_logs(self, pod: str, tail: int | None = None, since: int = 0) -> JSON:
        """A worker pod's container log: the last ``tail`` lines, or what came after byte
        ``since``; ``size`` is the log's length in bytes (the next ``since``)."""
        if pod not in self.worker_spec:
            raise KeyError(f"pod: {pod!r} is not a worker pod of cluster {self.name}")
        data = (await self.backend.logs(pod)).encode()
        text = data[since:] if since else data
        if tail is not None and not since:
            text = b"".join(text.splitlines(keepends=True)[-tail:]) if tail > 0 else b""
        view = self.backend.views.get(pod, SUBMITTED)
        return {
            "text": text.decode(errors="replace"),
            "size": len(data),
            "finished": view.state == WorkerState.FINISHED,
        }

    async def _handle_close(self) -> None:
        self.loop.add_callback(self._close)

    async def _poll_remote_once(self, wait: float = 10.0) -> None:
        snap = await self.scheduler_comm.interlink_watch(seen=self._remote_digest, wait=wait)
        self._remote_digest = snap["digest"]
        self.scheduler_info = SchedulerInfo(await self.scheduler_comm.identity())
        self._remote_summary = snap["summary"]
        self._remote_rows = [WorkerRow.from_json(r) for r in snap["rows"]]

    async def _poll_remote(self) -> None:
        while True:
            try:
                await self._poll_remote_once()
            except Exception as exc:
                log.debug("cannot refresh %s from its owner: %s", self.name, exc)
                await asyncio.sleep(self.options.status_interval)
