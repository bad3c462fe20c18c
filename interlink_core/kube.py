"""Plain-JSON calls to the Kubernetes API (no object classes).

kr8s reads the credentials (kubeconfig, exec plugins, service account, their renewal); the
requests go through aiohttp, which takes about 0.5 ms of CPU a call against kr8s' httpx's 4 ms
(``bench/bench_kube_call.py``): the virtual kubelet makes about ten calls per pod. Used by the
virtual kubelet, Dask's Kubernetes mode and the Jupyter extensions; needs the ``kr8s`` package
(extras ``[vk]`` and ``[dask]``)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypedDict, Unpack

import aiohttp
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


def api_path(url: str, *, namespace: str | None, version: str = "v1", base: str = "") -> str:
    """The path of a request: ``/api/v1`` (core) or ``/apis/<group>/<version>`` (or ``base``
    given), the namespace's part if any, then ``url``."""
    if not base:
        base = "/api" if version == "v1" else "/apis"
    parts = [base, version, *(["namespaces", namespace] if namespace else []), url]
    return "/".join(p for p in parts if p)


class RequestOptions(TypedDict, total=False):
    """Where a request goes and what it carries: the namespace (none: cluster-scoped), the API
    ``version`` (``v1``: core; ``group/version``: ``/apis``) or ``base`` path, a JSON ``body``,
    more ``headers`` and query ``params``."""

    namespace: str | None
    version: str
    base: str
    body: Any
    headers: dict[str, str] | None
    params: dict[str, str] | None


class KubeError(ServerError):
    """An error answer of the Kubernetes API: its HTTP ``code`` and the ``Status`` it sent (a
    kr8s :class:`~kr8s.ServerError`, so that one ``except`` takes the errors of both)."""

    def __init__(self, code: int, status: JSON | str) -> None:
        message = status.get("message") if isinstance(status, dict) else None
        super().__init__(str(message or status or f"HTTP {code}"), status=None, response=None)
        self.code = code
        self.status_object = status


def status_code(exc: BaseException) -> int | None:
    """The HTTP status of a Kubernetes API error (``None`` when it is not one)."""
    if isinstance(exc, KubeError):
        return exc.code
    if isinstance(exc, ServerError) and exc.response is not None:
        return exc.response.status_code
    return None


CALL_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=15)
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=15)


class KubeJSON:
    """Requests to the Kubernetes API as JSON in and JSON out, on one connection pool; close it
    with :meth:`aclose` (or use the client as ``async with``)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._session: aiohttp.ClientSession | None = None
        self._server = ""  # the apiserver's URL, read once the credentials are loaded

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _connect(self) -> aiohttp.ClientSession:
        """The session, with kr8s' TLS settings and server (made at the first call).

        The server is kept here, not read from kr8s at each request: every
        ``kr8s.asyncio.api()`` call for the same arguments re-authenticates the one shared
        ``Api``, which empties its ``server`` for a moment."""
        session = self._session
        if session is None or session.closed:
            ssl = await self.api.auth.ssl_context()  # type: ignore[no-untyped-call]
            if self._session is None or self._session.closed:  # the first calls all waited
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=ssl, limit=64), raise_for_status=False
                )
            session = self._session
        self._server = self._server or self.api.auth.server
        if not self._server:
            await self.api.auth.reauthenticate()  # another caller is loading the credentials
            self._server = self.api.auth.server
        return session

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "interlink", **extra}
        if self.api.auth.token:  # read at each call: kr8s renews it
            headers["Authorization"] = f"Bearer {self.api.auth.token}"
        return headers

    @asynccontextmanager
    async def request(
        self, method: str, url: str, *, stream: bool = False, **options: Unpack[RequestOptions]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request, its answer open while the block runs; :class:`KubeError` for an error
        answer. A 401 (a service-account token rotated) has kr8s read the credentials again
        and the request made once more."""
        namespace, body = options.get("namespace"), options.get("body")
        version, base = options.get("version", "v1"), options.get("base", "")
        headers, params = options.get("headers"), options.get("params")
        path = api_path(url, namespace=namespace, version=version, base=base)
        extra = dict(headers or {})
        kwargs: dict[str, Any] = {
            "params": params,
            "timeout": STREAM_TIMEOUT if stream else CALL_TIMEOUT,
            "proxy": self.api.auth.proxy,
            "server_hostname": self.api.auth.tls_server_name,
        }
        if body is not None:
            kwargs["data"] = json.dumps(body)
            extra = {"Content-Type": "application/json", **extra}
        for attempt in (1, 2):
            session = await self._connect()
            resp = await session.request(
                method, self._server + path, headers=self._headers(extra), **kwargs
            )
            try:
                if resp.status == 401 and attempt == 1:
                    await self.api.auth.reauthenticate()
                    continue
                if resp.status >= 400:
                    raise KubeError(resp.status, _status_of(await resp.read()))
                yield resp
                return
            finally:
                resp.release()

    async def call(self, method: str, url: str, **options: Unpack[RequestOptions]) -> JSON:
        """One request; the answer's JSON (``{}`` if none)."""
        async with self.request(method, url, **options) as resp:
            raw = await resp.read()
        return dict(json.loads(raw)) if raw.strip() else {}

    async def get(
        self, kind: str, namespace: str | None, name: str, *, version: str = "v1", base: str = ""
    ) -> JSON | None:
        """One object, or ``None`` if it does not exist."""
        try:
            return await self.call(
                "GET", f"{kind}/{name}", namespace=namespace, version=version, base=base
            )
        except KubeError as exc:
            if exc.code == 404:
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
        except KubeError as exc:
            if exc.code in (404, 409):
                return False
            raise
        return True


def _status_of(raw: bytes) -> JSON | str:
    """The ``Status`` object of an error answer (its text when it is not JSON)."""
    try:
        answer = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace").strip()
    return dict(answer) if isinstance(answer, dict) else str(answer)
