"""Plain-JSON calls to the Kubernetes API through kr8s (one client library, no object classes).

Used by the virtual kubelet and by Dask's Kubernetes mode; needs the ``kr8s`` package (extras
``[vk]`` and ``[dask]``)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from kr8s import ServerError
from kr8s.asyncio import Api

from .jobfiles import rfc3339
from .models import JSON
from .names import JOB_ID_ANNOTATION, UPSTREAM_JOB_ID_ANNOTATION

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
LEASES_API = "coordination.k8s.io/v1"


def now_rfc3339(micro: bool = False) -> str:
    """The current UTC time, as Kubernetes writes it (``MicroTime`` when ``micro``)."""
    if micro:
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return rfc3339(time.time())


def parse_time(stamp: str) -> datetime:
    """A Kubernetes ``Time`` or ``MicroTime`` (RFC 3339, ``Z``) as an aware datetime."""
    t = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def lease_expiry(lease: JSON) -> datetime | None:
    """When a Lease expires: ``renewTime`` (``creationTimestamp`` if never renewed) plus
    ``leaseDurationSeconds``; ``None`` if it has no duration (it never expires). The one rule
    the VK's heartbeat reaper and the Lease's holders (Dask clusters) share."""
    spec = lease.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    since = spec.get("renewTime") or (lease.get("metadata") or {}).get("creationTimestamp")
    if duration is None or not since:
        return None
    return parse_time(str(since)) + timedelta(seconds=float(duration))


def lease_expired(lease: JSON, now: datetime | None = None) -> bool:
    """Whether the holder stopped renewing ``lease`` (by :func:`lease_expiry`)."""
    ends = lease_expiry(lease)
    return ends is not None and ends < (now or datetime.now(UTC))


def job_id(pod: JSON) -> str:
    """The remote job id the virtual kubelet wrote on the pod (ours, or upstream's annotation)."""
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    return str(ann.get(JOB_ID_ANNOTATION) or ann.get(UPSTREAM_JOB_ID_ANNOTATION) or "")


def status_code(exc: BaseException) -> int | None:
    """The HTTP status of a Kubernetes API error (``None`` when it is not one)."""
    if isinstance(exc, ServerError) and exc.response is not None:
        return exc.response.status_code
    return None


class KubeJSON:
    """Requests to the Kubernetes API as JSON in and JSON out."""

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

    async def get(
        self, kind: str, namespace: str | None, name: str, *, version: str = "v1", base: str = ""
    ) -> JSON | None:
        """One object, or ``None`` if it does not exist."""
        try:
            return await self.call(
                "GET", f"{kind}/{name}", namespace=namespace, version=version, base=base
            )
        except ServerError as exc:
            if status_code(exc) == 404:
                return None
            raise

    async def delete(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        version: str = "v1",
        base: str = "",
        options: JSON | None = None,
    ) -> bool:
        """Delete one object with these ``DeleteOptions`` (``preconditions``,
        ``gracePeriodSeconds``...); ``False`` if it is gone (404) or no longer the object the
        preconditions name (409)."""
        try:
            await self.call(
                "DELETE",
                f"{kind}/{name}",
                namespace=namespace,
                version=version,
                base=base,
                body=options,
            )
        except ServerError as exc:
            if status_code(exc) in (404, 409):
                return False
            raise
        return True
