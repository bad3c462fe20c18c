"""Reading the interLink virtual nodes and what runs on them (for the live profile list)."""

from __future__ import annotations

import asyncio
from typing import Any

from interlink_core.kube import KubeJSON, status_code
from interlink_core.names import VK_NODE_SELECTOR

JSON = dict[str, Any]
ACTIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"


async def list_virtual_nodes(api: Any) -> tuple[list[JSON], dict[str, list[JSON] | None]]:
    """The virtual nodes (label selector of every VK) and, per node, its pods that still hold
    resources (``None`` for a node whose pods the caller may not list: capacity only)."""
    async with KubeJSON(api) as kube:
        return await _nodes_and_pods(kube)


async def _nodes_and_pods(kube: KubeJSON) -> tuple[list[JSON], dict[str, list[JSON] | None]]:
    answer = await kube.call("GET", "nodes", params={"labelSelector": VK_NODE_SELECTOR})
    nodes: list[JSON] = list(answer.get("items") or [])

    async def pods_on(name: str) -> list[JSON] | None:
        selector = f"spec.nodeName={name},{ACTIVE_PODS}"
        try:
            listed = await kube.call("GET", "pods", params={"fieldSelector": selector})
        except Exception as exc:
            if status_code(exc) in (401, 403):
                return None
            raise
        return list(listed.get("items") or [])

    names = [n["metadata"]["name"] for n in nodes]
    pods = await asyncio.gather(*(pods_on(n) for n in names))
    return nodes, dict(zip(names, pods, strict=True))
