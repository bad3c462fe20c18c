"""The ``dask_cluster_discovery`` entry point (used by dask-ctl and friends): the running
InterLinkClusters, found in both modes with the options of the dask config."""

from __future__ import annotations

from collections.abc import AsyncIterator

from .backend import log
from .cluster import InterLinkCluster, all_records
from .config import load_options


async def discover() -> AsyncIterator[tuple[str, type[InterLinkCluster]]]:
    """Yield ``(name, InterLinkCluster)`` for every live cluster; reconnect to one with
    ``InterLinkCluster.from_name(name)``."""
    problems: list[str] = []
    seen: set[str] = set()
    async for record in all_records(load_options(attach=True), ("direct", "kubernetes"), problems):
        if record.name not in seen:
            seen.add(record.name)
            yield record.name, InterLinkCluster
    for problem in problems:  # no kubeconfig, API down: nothing to list in that mode
        log.debug("%s", problem)
