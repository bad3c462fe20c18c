"""Plain-JSON calls to the Kubernetes API through kr8s (one client library, no object classes)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from kr8s import ServerError
from kr8s.asyncio import Api

from interlink_core.models import JSON

log = logging.getLogger("interlink.vk")
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


def now_rfc3339(micro: bool = False) -> str:
    """The current UTC time, as Kubernetes writes it (``MicroTime`` when ``micro``)."""
    t = datetime.now(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def status_code(exc: BaseException) -> int | None:
    """The HTTP status of a Kubernetes API error (``None`` when it is not one)."""
    if isinstance(exc, ServerError) and exc.response is not None:
        return exc.response.status_code
    return None


class Kube:
    """The few calls the VK makes, as JSON in and JSON out."""

    def __init__(self, api: Api) -> None:
        self.api = api

    async def call(
        self,
        method: str,
        url: str,
        *,
        namespace: str | None = None,
        version: str = "v1",
        base: str = "",
        body: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> JSON:
        """One request; the answer's JSON (``{}`` if none)."""
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["content"] = json.dumps(body)
            kwargs["headers"] = {"Content-Type": "application/json", **(headers or {})}
        if params:
            kwargs["params"] = params
        async with self.api.call_api(
            method, version=version, base=base, namespace=namespace, url=url, **kwargs
        ) as resp:
            text = resp.text
        return dict(json.loads(text)) if text.strip() else {}

    async def pods_on_node(self, node: str) -> list[JSON]:
        """Every pod bound to ``node``, in all namespaces (one LIST)."""
        answer = await self.call("GET", "pods", params={"fieldSelector": f"spec.nodeName={node}"})
        return list(answer.get("items") or [])

    async def get(self, kind: str, namespace: str, name: str) -> JSON | None:
        """A namespaced core object, or ``None`` if it does not exist."""
        try:
            return await self.call("GET", f"{kind}/{name}", namespace=namespace)
        except ServerError as exc:
            if status_code(exc) == 404:
                return None
            raise

    async def patch_pod(self, pod: JSON, patch: JSON, status: bool = False) -> JSON:
        """Merge-patch a pod (or its ``status`` subresource)."""
        meta = pod["metadata"]
        url = f"pods/{meta['name']}" + ("/status" if status else "")
        return await self.call(
            "PATCH", url, namespace=meta["namespace"], body=patch, headers=MERGE_PATCH
        )

    async def delete_pod_now(self, pod: JSON) -> None:
        """Remove a pod for good (grace period 0, only this very pod: UID precondition)."""
        meta = pod["metadata"]
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        try:
            await self.call(
                "DELETE", f"pods/{meta['name']}", namespace=meta["namespace"], body=body
            )
        except ServerError as exc:
            if status_code(exc) not in (404, 409):
                raise

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
