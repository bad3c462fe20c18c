"""``interlink vk --config vk.yaml --remove-node``: take a virtual node out of the cluster for
good (what the Helm chart's pre-delete hook runs while the VK still serves the node).

1. cordon the node, so no new pod (e.g. a controller's replacement) is bound to it;
2. delete every pod on it and wait until they are gone: the running VK cancels their jobs at
   the edge, then removes them;
3. with ``--stop-deployment NAMESPACE/NAME``: delete the VK's Deployment and wait until it is
   gone (a VK still running would register the node again);
4. delete the node (its Lease goes with it: the node owns it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from interlink_core.errors import InterLinkError

from .config import VKConfig
from .kube import MERGE_PATCH, Kube, kube_api

log = logging.getLogger("interlink.vk.remove")


async def _until(what: str, done: Callable[[], Awaitable[bool]], deadline: float) -> None:
    """Poll the coroutine function ``done`` every half second until it says True."""
    while not await done():
        if time.monotonic() > deadline:
            raise InterLinkError(f"gave up waiting: {what}")
        await asyncio.sleep(0.5)


async def remove_node(config: VKConfig, deployment: str | None, seconds: float) -> None:
    """Cordon, drain (through the running VK), stop the VK, delete the node."""
    async with Kube(await kube_api(config)) as kube:
        await _remove(kube, config, deployment, seconds)


async def _remove(kube: Kube, config: VKConfig, deployment: str | None, seconds: float) -> None:
    node = config.node_name
    deadline = time.monotonic() + seconds
    if await kube.get("nodes", None, node) is not None:
        await kube.call(
            "PATCH", f"nodes/{node}", body={"spec": {"unschedulable": True}}, headers=MERGE_PATCH
        )
        pods = await kube.pods_on_node(node)
        log.info("node %s cordoned; deleting its %d pods", node, len(pods))
        for pod in pods:
            await kube.delete_pod(pod)

        async def drained() -> bool:
            return not await kube.pods_on_node(node)

        await _until(f"the pods of node {node} to be deleted", drained, deadline)
    if deployment:
        namespace, _, name = deployment.rpartition("/")
        log.info("stopping the VK: deleting deployment %s/%s", namespace, name)
        await kube.delete(
            "deployments",
            namespace or None,
            name,
            version="apps/v1",
            options={"propagationPolicy": "Foreground"},
        )

        async def stopped() -> bool:
            gone = await kube.get("deployments", namespace or None, name, version="apps/v1")
            return gone is None

        await _until(f"deployment {deployment} to be gone", stopped, deadline)
    await kube.delete("nodes", None, node)
    log.info("node %s deleted", node)
