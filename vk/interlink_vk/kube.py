"""The VK's Kubernetes calls: the shared plain-JSON client (``interlink_core.kube``) plus the
few requests only the VK makes."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import kr8s.asyncio

from interlink_core.errors import ConfigError
from interlink_core.kube import MERGE_PATCH, KubeJSON, now_rfc3339, status_code
from interlink_core.models import JSON

from .config import VKConfig

__all__ = ["MERGE_PATCH", "Kube", "WatchExpired", "kube_api", "now_rfc3339", "status_code"]

log = logging.getLogger("interlink.vk")


class WatchExpired(Exception):
    """A watch's resourceVersion is too old for the server (410 Gone): LIST again."""


class Kube(KubeJSON):
    """The calls the VK makes, as JSON in and JSON out."""

    async def pods_on_node(self, node: str) -> list[JSON]:
        """Every pod bound to ``node``, in all namespaces (one LIST)."""
        answer = await self.call("GET", "pods", params={"fieldSelector": f"spec.nodeName={node}"})
        return list(answer.get("items") or [])

    async def pages_of_pods_on_node(
        self, node: str, limit: int = 500
    ) -> AsyncIterator[tuple[list[JSON], str]]:
        """Every pod bound to ``node`` as pages of ``limit`` pods (one consistent LIST, read a
        page at a time so that 10,000 pods are never parsed at once), each with the LIST's
        resourceVersion, to watch from."""
        params = {"fieldSelector": f"spec.nodeName={node}", "limit": str(limit)}
        while True:
            answer = await self.call("GET", "pods", params=params)
            meta = answer.get("metadata") or {}
            yield list(answer.pop("items", None) or []), str(meta.get("resourceVersion") or "")
            if not meta.get("continue"):
                return
            params["continue"] = str(meta["continue"])

    async def watch_pods_on_node(
        self, node: str, version: str = ""
    ) -> AsyncIterator[tuple[str, JSON]]:
        """The node's pod events as ``(type, object)`` in plain JSON, from ``version`` on, with
        bookmarks, until the server ends the watch (one JSON line per event).
        :class:`WatchExpired` when the server no longer has ``version`` (a LIST must start
        again)."""
        params = {
            "fieldSelector": f"spec.nodeName={node}",
            "watch": "true",
            "allowWatchBookmarks": "true",
        }
        if version:
            params["resourceVersion"] = version
        async with self.request("GET", "pods", params=params, stream=True) as resp:
            # lines split here, not by aiohttp's readline: that one refuses a line longer than
            # its buffer (128 KiB), and one event is a whole pod
            rest = b""
            async for chunk in resp.content.iter_any():
                *lines, rest = (rest + chunk).split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _event(line)

    async def patch_pod(self, pod: JSON, patch: JSON, status: bool = False) -> JSON:
        """Merge-patch a pod (or its ``status`` subresource)."""
        meta = pod["metadata"]
        url = f"pods/{meta['name']}" + ("/status" if status else "")
        return await self.call(
            "PATCH", url, namespace=meta["namespace"], body=patch, headers=MERGE_PATCH
        )

    async def delete_pod(self, pod: JSON, grace: int | None = None) -> bool:
        """Delete this very pod (UID precondition) with ``grace`` seconds (``None``: its own
        grace period; 0: for good, as a kubelet does); ``False`` if it was gone or replaced."""
        meta = pod["metadata"]
        options: JSON = {"preconditions": {"uid": meta["uid"]}}
        if grace is not None:
            options["gracePeriodSeconds"] = grace
        return await self.delete("pods", meta["namespace"], meta["name"], options=options)

    async def event(
        self, pod: JSON, reason: str, message: str, node: str, warning: bool = False
    ) -> None:
        """Record a Kubernetes Event on a pod (best effort)."""
        meta = pod["metadata"]
        stamp = now_rfc3339()
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "kind": "Pod",
                "apiVersion": "v1",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "interlink-vk", "host": node},
            "reportingComponent": "interlink-vk",
            "reportingInstance": node,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self.call("POST", "events", namespace=meta["namespace"], body=body)
        except Exception as exc:  # events are informative: never fail the sync for one
            log.warning(
                "could not record event %s on %s/%s: %s",
                reason,
                meta["namespace"],
                meta["name"],
                exc,
            )


def _event(line: bytes) -> tuple[str, JSON]:
    """One watch event; :class:`WatchExpired` for an ``ERROR`` one (a 410 in the stream)."""
    event = json.loads(line)
    kind, obj = str(event.get("type", "")), dict(event.get("object") or {})
    if kind == "ERROR":
        raise WatchExpired(str(obj.get("message") or obj))
    return kind, obj


# A kubeconfig whose only context names no cluster: kr8s then takes the service account.
_NO_KUBECONFIG: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [],
    "users": [],
    "contexts": [{"name": "in-cluster", "context": {"cluster": "", "user": ""}}],
    "current-context": "in-cluster",
}


def kube_api_args(config: VKConfig) -> dict[str, Any]:
    """How to reach Kubernetes, as ``kr8s.asyncio.api`` arguments: the service account of
    ``service_account_dir`` alone (never ``$KUBECONFIG`` or ``~/.kube/config``), else the
    kubeconfig, else kr8s's defaults."""
    if config.service_account_dir is not None:
        sa = config.service_account_dir.expanduser()
        if not (sa / "token").is_file():
            raise ConfigError(f"service_account_dir: {sa} holds no token file")
        return {"kubeconfig": _NO_KUBECONFIG, "serviceaccount": str(sa)}
    return {"kubeconfig": str(config.kubeconfig) if config.kubeconfig else None}


async def kube_api(config: VKConfig) -> kr8s.asyncio.Api:
    """The Kubernetes client of :func:`kube_api_args`."""
    return await kr8s.asyncio.api(**kube_api_args(config))
