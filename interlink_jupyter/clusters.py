"""The Dask clusters the sidebar shows: every live ``InterLinkCluster`` found by the package's
discovery (made in kernels, scripts, or by this server), each followed through its owner's
scheduler, which pushes a new snapshot as soon as anything changes (no polling of pods here)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distributed.core import rpc

from interlink_core.errors import ConfigError
from interlink_core.models import JSON
from interlink_dask import InterLinkCluster
from interlink_dask.backend import ClusterExists, ClusterRecord
from interlink_dask.cluster import all_records
from interlink_dask.config import ClusterOptions, load_options
from interlink_dask.states import counts

from .errors import InputError, Problem
from .nodes import kube_configured

log = logging.getLogger("interlink.jupyter")

WATCH_WAIT = 10.0
"""Seconds one watch call may wait on the owner for a change."""
CLOSED_MEMORY = 60.0
"""Seconds a cluster closed from here stays hidden from discovery (its record may linger)."""
CREATE_FIELDS = {"name", "node", "image", "cpu", "memory", "processes", "mode"}
"""What the sidebar's "new cluster" form may set; the rest comes from the dask config."""

Publish = Callable[[str, JSON], None]
"""How the book tells the live stream: ``publish(kind, message)``."""


def problem_of(exc: BaseException) -> str:
    """A one-line reason from an exception."""
    return f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)


@dataclass
class Entry:
    """One cluster as this server follows it."""

    name: str
    record: ClusterRecord
    owned: InterLinkCluster | None = None
    comm: Any = None
    summary: JSON = field(default_factory=dict)
    rows: list[JSON] = field(default_factory=list)
    digest: str = ""
    error: str = ""
    task: asyncio.Task[None] | None = None
    first: asyncio.Event = field(default_factory=asyncio.Event)

    async def call(self, handler: str, **kwargs: Any) -> Any:
        """One of the owner's ``interlink_*`` scheduler handlers: in this process for a
        cluster this server owns, else over the scheduler's comm."""
        if self.owned is not None:
            return await getattr(self.owned, f"_handle_{handler}")(**kwargs)
        if self.comm is None:
            self.comm = rpc(self.record.scheduler)  # type: ignore[no-untyped-call]
        return await getattr(self.comm, f"interlink_{handler}")(**kwargs)

    def as_summary(self) -> JSON:
        """The cluster's summary as the REST API and the stream send it."""
        base: JSON = {
            "name": self.name,
            "mode": self.record.mode,
            "namespace": None,
            "node": None,
            "counts": counts([]),
            "pods": 0,
            "workers": 0,
            "processes": 1,
            "adapt": None,
            "dashboard_link": self.record.dashboard,
            "scheduler_address": self.record.scheduler,
            "created": None,
        }
        base.update(self.summary)
        base["owner"] = "server" if self.owned is not None else "other"
        base["error"] = self.error
        return base

    def as_detail(self) -> JSON:
        """Summary and worker rows."""
        return {**self.as_summary(), "rows": list(self.rows)}


class ClusterBook:
    """Every live cluster, kept up to date while someone looks, and the actions on them."""

    def __init__(
        self,
        publish: Publish,
        max_workers: int | None,
        refresh_interval: float,
        options: Callable[[], ClusterOptions] = lambda: load_options(attach=True),
    ) -> None:
        self.publish = publish
        self.max_workers = max_workers
        self.refresh_interval = refresh_interval
        self.options = options
        self.entries: dict[str, Entry] = {}
        self.problems: list[Problem] = []
        self._closed: dict[str, float] = {}
        self._lock = asyncio.Lock()

    # -- discovery ----------------------------------------------------------------------------

    async def refresh(self) -> None:
        """List the live clusters once: follow new ones, drop those whose record is gone."""
        async with self._lock:
            problems: list[str] = []
            found: dict[str, ClusterRecord] = {}
            try:
                opts = self.options()
            except ConfigError as exc:
                self._set_problems([Problem("clusters", str(exc), _CONFIG_HINT)])
                return
            async for record in all_records(opts, _modes(opts), problems):
                found.setdefault(record.name, record)
            now = time.monotonic()
            self._closed = {n: t for n, t in self._closed.items() if now - t < CLOSED_MEMORY}
            changed = False
            for name, record in found.items():
                if name in self._closed or name in self.entries:
                    continue
                self._follow(Entry(name, record))
                changed = True
            for name in [n for n, e in self.entries.items() if e.owned is None]:
                if name not in found:
                    self._forget(name)
                    changed = True
            problems_now = [Problem("clusters", p, _LIST_HINT) for p in problems]
            if changed or problems_now != self.problems:
                self._set_problems(problems_now)

    def _set_problems(self, problems: list[Problem]) -> None:
        self.problems = problems
        self.publish("clusters", self.clusters_message())

    def clusters_message(self) -> JSON:
        """The full list, as ``GET clusters`` answers and the stream's ``clusters`` message."""
        return {
            "clusters": [e.as_summary() for e in self.entries.values()],
            "problems": [p.as_json() for p in self.problems],
        }

    def _follow(self, entry: Entry) -> None:
        self.entries[entry.name] = entry
        entry.task = asyncio.create_task(self._watch(entry))

    def _forget(self, name: str) -> None:
        entry = self.entries.pop(name, None)
        if entry is None:
            return
        if entry.task is not None:
            entry.task.cancel()
        if entry.comm is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().create_task(entry.comm.close_rpc())
        self.publish("removed", {"name": name})

    async def _watch(self, entry: Entry) -> None:
        """Follow one cluster: each answer of the owner's watch is a new snapshot."""
        while True:
            try:
                snap = await entry.call("watch", seen=entry.digest, wait=WATCH_WAIT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if entry.owned is not None and entry.owned.status.name in ("closing", "closed"):
                    self._forget(entry.name)
                    return
                why = (
                    f"its scheduler at {entry.record.scheduler} does not answer ({problem_of(exc)})"
                )
                if entry.error != why:
                    entry.error = why
                    self.publish("cluster", {"name": entry.name})
                entry.first.set()
                await asyncio.sleep(self.refresh_interval)
                continue
            entry.error = ""
            if snap["digest"] != entry.digest:
                entry.digest = snap["digest"]
                entry.summary = snap["summary"]
                entry.rows = snap["rows"]
                self.publish("cluster", {"name": entry.name})
            entry.first.set()

    async def close(self) -> None:
        """Stop following; close the clusters this server made (their pods go too)."""
        for name in list(self.entries):
            entry = self.entries[name]
            self._forget(name)
            if entry.owned is not None:
                with contextlib.suppress(Exception):
                    await _closed(entry.owned)

    # -- reading ------------------------------------------------------------------------------

    async def entry(self, name: str) -> Entry:
        """The cluster ``name`` with at least one snapshot read (404 if there is none)."""
        entry = self.entries.get(name)
        if entry is None:
            await self.refresh()
            entry = self.entries.get(name)
        if entry is None:
            known = ", ".join(sorted(self.entries)) or "none"
            raise InputError(f"no running cluster {name!r} (running: {known})", status=404)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(entry.first.wait(), WATCH_WAIT)
        return entry

    # -- actions ------------------------------------------------------------------------------

    async def create(self, body: JSON) -> Entry:
        """A new cluster owned by this server, from the dask config plus the form's fields."""
        unknown = sorted(set(body) - CREATE_FIELDS - {"workers"})
        if unknown:
            raise InputError(
                f"unknown field {unknown[0]!r}; allowed: {', '.join(sorted(CREATE_FIELDS))}, "
                "workers",
                field=unknown[0],
            )
        fields = {k: v for k, v in body.items() if k in CREATE_FIELDS and v not in (None, "")}
        workers = self._count(body.get("workers", 0) or 0, "workers")
        try:
            cluster = await InterLinkCluster(asynchronous=True, **fields)
        except ConfigError as exc:
            raise InputError(str(exc), field=_bad_key(str(exc))) from None
        except ClusterExists as exc:
            raise InputError(str(exc), field="name", status=409) from None
        except LookupError as exc:  # bad node
            raise InputError(str(exc), field=_bad_key(str(exc))) from None
        except PermissionError as exc:
            raise InputError(str(exc), status=403) from None
        except Exception as exc:
            raise InputError(problem_of(exc), status=503) from None
        record = ClusterRecord(
            str(cluster.name),
            cluster.options.mode,
            cluster.scheduler_address,
            cluster.dashboard_link,
            "",
        )
        entry = Entry(record.name, record, owned=cluster)
        self._closed.pop(entry.name, None)
        self._follow(entry)
        if workers:
            cluster.scale(workers)
        await asyncio.wait_for(entry.first.wait(), WATCH_WAIT)
        self.publish("clusters", self.clusters_message())
        return entry

    def _count(self, value: Any, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{name} must be a whole number >= 0, not {value!r}", field=name)
        if self.max_workers is not None and value > self.max_workers:
            raise InputError(
                f"{name}: {value} is above this server's limit of {self.max_workers} workers "
                "(c.InterLinkExtension.max_workers)",
                field=name,
            )
        return value

    async def scale(self, name: str, body: JSON) -> Entry:
        """Scale to ``workers`` Dask workers or ``jobs`` pods; ends adaptive scaling."""
        entry = await self.entry(name)
        keys = set(body) & {"workers", "jobs"}
        if len(keys) != 1 or set(body) - keys:
            raise InputError('give exactly one of "workers" or "jobs"', field="workers")
        key = keys.pop()
        processes = int(entry.as_summary()["processes"] or 1)
        value = body[key]
        if key == "jobs":
            self._count(value * processes if isinstance(value, int) else value, key)
            jobs = value
        else:
            jobs = math.ceil(self._count(value, key) / processes)
        await self._act(entry, "scale", jobs=jobs)
        return entry

    async def adapt(self, name: str, body: JSON) -> Entry:
        """Adaptive scaling between ``minimum`` and ``maximum`` workers."""
        entry = await self.entry(name)
        unknown = set(body) - {"minimum", "maximum"}
        if unknown:
            bad = sorted(unknown)[0]
            raise InputError(f"unknown field {bad!r}; give minimum and maximum", field=bad)
        minimum = self._count(body.get("minimum", 0), "minimum")
        maximum = body.get("maximum")
        if maximum is None:
            maximum = self.max_workers
        else:
            maximum = self._count(maximum, "maximum")
            if maximum < minimum:
                raise InputError(
                    f"maximum ({maximum}) must be at least minimum ({minimum})", field="maximum"
                )
        await self._act(entry, "adapt", minimum=minimum, maximum=maximum)
        return entry

    async def stop_adapt(self, name: str) -> Entry:
        """Manual scaling from now on."""
        entry = await self.entry(name)
        await self._act(entry, "adapt", stop=True)
        return entry

    async def _act(self, entry: Entry, handler: str, **kwargs: Any) -> None:
        try:
            await entry.call(handler, **kwargs)
        except (TimeoutError, OSError) as exc:
            raise InputError(
                f"cluster {entry.name}: its scheduler does not answer ({problem_of(exc)})",
                status=503,
            ) from None
        await self._settle(entry)

    async def _settle(self, entry: Entry) -> None:
        """Read the snapshot right after an action, so the answer shows its effect."""
        with contextlib.suppress(Exception):
            snap = await entry.call("watch", seen="", wait=0)
            entry.summary, entry.rows = snap["summary"], snap["rows"]

    async def remove(self, name: str) -> None:
        """Close the cluster: its pods, and so its batch jobs, are deleted."""
        entry = await self.entry(name)
        self._closed[name] = time.monotonic()
        if entry.owned is not None:
            self._forget(name)
            await _closed(entry.owned)
            return
        try:
            await entry.call("close")
        except (TimeoutError, OSError) as exc:
            self._closed.pop(name, None)
            raise InputError(
                f"cluster {name}: its scheduler does not answer ({problem_of(exc)}); "
                "close it from the kernel that made it",
                status=503,
            ) from None
        self._forget(name)

    async def logs(self, name: str, pod: str, tail: int | None, since: int = 0) -> JSON:
        """A worker pod's log (see ``InterLinkCluster._handle_logs``)."""
        entry = await self.entry(name)
        if pod not in {r["pod"] for r in entry.rows}:
            raise InputError(f"pod {pod!r} is not a worker pod of cluster {name}", status=404)
        try:
            answer: JSON = await entry.call("logs", pod=pod, tail=tail, since=since)
        except KeyError as exc:
            raise InputError(str(exc).strip("'\""), status=404) from None
        return answer


async def _closed(cluster: InterLinkCluster) -> None:
    """Close a cluster made with ``asynchronous=True``."""
    closing = cluster.close()
    if closing is not None:
        await closing


def _modes(opts: ClusterOptions) -> tuple[str, ...]:
    """The configured mode first; Kubernetes only when a cluster is configured at all (the
    node list already says when none is; a direct-mode setup such as Binder has none)."""
    other = "direct" if opts.mode == "kubernetes" else "kubernetes"
    kube = kube_configured(opts.kubeconfig)
    return tuple(m for m in (opts.mode, other) if m != "kubernetes" or kube)


def _bad_key(message: str) -> str | None:
    """The option a config error names (``  memory: ...`` or ``node: ...``)."""
    for line in message.splitlines():
        head, sep, _ = line.strip().removeprefix("(top level):").strip().partition(":")
        if sep and head and " " not in head and not head.startswith("invalid"):
            return head.split(".")[0]
    return None


_CONFIG_HINT = "fix the interlink: section of your dask config (~/.config/dask/*.yaml)"
_LIST_HINT = (
    "clusters of that mode cannot be listed; check your kubeconfig (Kubernetes mode) or "
    "interlink.state-dir (direct mode)"
)
