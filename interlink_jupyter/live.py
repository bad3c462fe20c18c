"""What the open sidebars see: the nodes and clusters, kept fresh while at least one stream is
open, and every change sent to every stream at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from interlink_core.models import JSON
from interlink_dask.config import ClusterOptions, load_options

from .clusters import ClusterBook
from .nodes import NodeBoard

log = logging.getLogger("interlink.jupyter")


class Subscriber(Protocol):
    """A live stream (one per open sidebar)."""

    def deliver(self, kind: str, message: JSON) -> None:
        """Send one change (``nodes``, ``clusters``, ``cluster`` or ``removed``)."""


class Live:
    """Nodes and clusters, and the streams that follow them."""

    def __init__(
        self,
        max_workers: int | None,
        refresh_interval: float,
        options: Callable[[], ClusterOptions] = lambda: load_options(attach=True),
    ) -> None:
        self.refresh_interval = refresh_interval
        self.options = options
        self.subscribers: set[Subscriber] = set()
        self.nodes = NodeBoard(self.publish, options)
        self.clusters = ClusterBook(self.publish, max_workers, refresh_interval, options)
        self._loop_task: asyncio.Task[None] | None = None

    def publish(self, kind: str, message: JSON) -> None:
        """Tell every stream about a change."""
        for sub in list(self.subscribers):
            try:
                sub.deliver(kind, message)
            except Exception as exc:  # a closed socket: it unsubscribes itself
                log.debug("stream dropped a %s message: %s", kind, exc)

    async def subscribe(self, sub: Subscriber) -> None:
        """Start streaming changes to ``sub`` after reading fresh state (which the caller
        sends first: nothing happens between this return and its sends)."""
        await self.refresh()
        self.subscribers.add(sub)
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._refresh_loop())

    def unsubscribe(self, sub: Subscriber) -> None:
        """Stop streaming to ``sub`` (the refresh loop ends with the last stream)."""
        self.subscribers.discard(sub)

    async def refresh(self) -> None:
        """Read nodes and list clusters once (changes are published)."""
        await asyncio.gather(self.nodes.refresh(), self.clusters.refresh())

    async def _refresh_loop(self) -> None:
        """While anyone watches: nodes and the cluster list every ``refresh_interval``
        (cluster contents are pushed by their owners, not polled)."""
        while self.subscribers:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("interLink sidebar refresh failed: %s", exc)

    async def close(self) -> None:
        """Stop background work; close the clusters this server made."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
        await self.clusters.close()
