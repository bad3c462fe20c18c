"""The ``dask_cluster_discovery`` entry point (used by dask-ctl and friends): the running
InterLinkClusters, found in both modes with the options of the dask config."""

from __future__ import annotations

from collections.abc import AsyncIterator

from .backend import log
from .cluster import InterLinkCluster, list_records
from .config import load_options


async def discover() -> AsyncIterator[tuple[str, type[InterLinkCluster]]]:
    """Yield ``(name, InterLinkCluster)`` for every live cluster; reconnect to one with
    ``InterLinkCluster.from_name(name)``."""
    opts = load_options(attach=True)
    seen: set[str] = set()
    for mode in ("direct", "kubernetes"):
        try:
            records = await list_records(opts, mode)
        except Exception as exc:  # no kubeconfig, API down: nothing to list in that mode
            log.debug("cannot list %s clusters: %s", mode, exc)
            continue
        for record in records:
            if record.name not in seen:
                seen.add(record.name)
                yield record.name, InterLinkCluster
