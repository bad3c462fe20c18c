"""What a cluster needs from where its worker pods live: Kubernetes (through the virtual
kubelet) or an interLink API server directly. Both keep a live view of the pods' states."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .config import ClusterOptions
from .states import PodView

log = logging.getLogger("interlink.dask")


@dataclass(frozen=True)
class ClusterRecord:
    """A running cluster as other processes find it (discovery, ``from_name``)."""

    name: str
    mode: str
    scheduler: str
    dashboard: str
    holder: str


class ClusterExists(Exception):
    """Another live cluster already uses this name."""


def route_address(target: str | None) -> str:
    """This machine's address on the route to ``target`` (a URL or host), i.e. an address
    the remote side can likely dial back; no packet is sent."""
    host = urlsplit(target).hostname if target and "://" in target else target
    if not host:
        return socket.gethostbyname(socket.gethostname())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((socket.gethostbyname(host), 9))
            return str(s.getsockname()[0])
        except OSError:
            return socket.gethostbyname(socket.gethostname())


class Backend(ABC):
    """Pods of one cluster: create, delete, logs, and a view of their states kept fresh by
    :meth:`start`."""

    def __init__(self, opts: ClusterOptions) -> None:
        self.opts = opts
        self.views: dict[str, PodView] = {}
        self.on_change: Callable[[], None] | None = None
        """Called (in the event loop) whenever :attr:`views` changes."""
        self._tasks: list[asyncio.Task[None]] = []

    @property
    @abstractmethod
    def route_target(self) -> str | None:
        """Where workers run from this process' point of view (for the contact address)."""

    @abstractmethod
    async def check(self) -> None:
        """Refuse bad settings (unknown node, unreachable edge, name in use) before any
        scheduler or pod exists; raise with a message that says what to fix."""

    @abstractmethod
    async def publish(self, scheduler: str, dashboard: str) -> None:
        """Record the running cluster for discovery and ``from_name``."""

    @abstractmethod
    async def create(self, pod_name: str, scheduler: str) -> None:
        """Create one worker pod."""

    @abstractmethod
    async def delete(self, pod_name: str) -> None:
        """Delete one worker pod (and so its batch job); a missing pod is fine."""

    @abstractmethod
    async def logs(self, pod_name: str) -> str:
        """The worker container's log."""

    @abstractmethod
    async def refresh(self) -> None:
        """Update :attr:`views` once."""

    async def loops(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        """Extra background loops (heartbeat, watches)."""
        return []

    async def start(self) -> None:
        """Start refreshing the views in the background."""
        loops = [self._refresh_loop, *await self.loops()]
        self._tasks = [asyncio.create_task(loop()) for loop in loops]

    async def _refresh_loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # keep the last view; say why it is stale
                log.warning("cannot refresh worker states of %s: %s", self.opts.cluster_name, exc)
            await asyncio.sleep(self.opts.status_interval)

    def update(self, views: dict[str, PodView]) -> None:
        """Replace the views (and tell :attr:`on_change` if anything changed)."""
        changed = views != self.views
        self.views = views
        if changed and self.on_change is not None:
            self.on_change()

    async def close(self, shutdown: bool) -> None:
        """Stop background work; with ``shutdown``, remove the cluster's record."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
