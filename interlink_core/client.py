"""Async clients for the interLink wire contract.

:class:`InterLinkClient` talks to an interLink API server (used by the VK and by Dask's direct
mode); :class:`PluginClient` talks to a plugin (used by the API server). Both go over HTTPS, HTTP
or a unix socket (``unix:///path/to.sock``), retry with backoff on connection errors and 5xx
answers (never on 4xx), and carry the ``InterLink-Http-Session`` header.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import ssl
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from .errors import BackendUnavailable, InterLinkError, Unsupported, is_final
from .models import (
    JSON,
    POD_STATUS_LIST,
    CreateStruct,
    LogStruct,
    PingAnswer,
    PodCreateRequests,
    PodStatus,
    RetrievedPodData,
    dump,
)

SESSION_HEADER = "InterLink-Http-Session"
TokenSource = Callable[[], Awaitable[str | None]]
log = logging.getLogger("interlink.client")


@dataclass(frozen=True)
class Retry:
    """Retry policy: ``attempts`` tries in all, exponential backoff with jitter."""

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        d: float = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return d * (0.5 + random.random() / 2)  # noqa: S311


_NO_ROUTE = {"not found", "404 page not found"}  # FastAPI / Starlette and Go's net/http
_UNREACHABLE = (aiohttp.ClientError, TimeoutError, OSError)
"""What failing to reach the remote (or losing it mid-answer) raises."""


class RemoteError(InterLinkError):
    """A non-200 answer, with the remote's status and message."""


@dataclass(frozen=True)
class Answer:
    """A whole HTTP answer."""

    status_code: int
    content: bytes
    reason: str = ""

    def json(self) -> Any:
        """The body as JSON (:class:`ValueError` when it is not)."""
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    @classmethod
    async def read(cls, resp: aiohttp.ClientResponse) -> Answer:
        """Read the whole of an aiohttp answer."""
        return cls(resp.status, await resp.read(), resp.reason or "")


def _message(resp: Answer) -> str:
    try:
        body = resp.json()
        if isinstance(body, dict) and "error" in body:
            return str(body["error"])
        if isinstance(body, dict) and "detail" in body:
            return str(body["detail"])
    except ValueError:
        pass
    return resp.text.strip() or resp.reason


@dataclass(frozen=True)
class Endpoint:
    """Where a client connects: a base URL, and a unix socket or the TLS settings."""

    base: str
    socket: str | None = None
    ssl: ssl.SSLContext | bool = True
    """``True`` verifies against the system CAs."""

    @classmethod
    def parse(
        cls,
        url: str,
        *,
        ca_file: Path | None = None,
        client_cert: tuple[Path, Path] | None = None,
    ) -> Endpoint:
        """``unix:///path`` selects a unix socket; ``https://`` may name a CA file and a client
        certificate (mTLS)."""
        if url.startswith("unix://"):
            return cls("http://localhost", socket=url.removeprefix("unix://"))
        ctx: ssl.SSLContext | bool = True
        if url.startswith("https://") and (ca_file or client_cert):
            ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if client_cert:
                ctx.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
        return cls(url.rstrip("/"), ssl=ctx)

    def session(self, timeout: float) -> aiohttp.ClientSession:
        """A connection pool to this endpoint (to be made inside the running event loop)."""
        connector: aiohttp.BaseConnector
        if self.socket is not None:
            connector = aiohttp.UnixConnector(path=self.socket, limit=64)
        else:
            connector = aiohttp.TCPConnector(ssl=self.ssl, limit=64)
        return aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
        )


_STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30.0, sock_read=None)
"""Followed logs: connecting is bounded, reading is not."""


class _Wire:
    """Requests with retries, session header and error mapping (aiohttp: its C HTTP parser
    makes a hop through the API server about 1 ms cheaper than httpx, bench/RESULTS.md)."""

    def __init__(
        self,
        endpoint: Endpoint,
        retry: Retry,
        timeout: float,
        token: TokenSource | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.base = endpoint.base
        self.retry = retry
        self.timeout = timeout
        self.token = token
        self.extra_headers = extra_headers or {}
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        """The connection pool, made at first use (aiohttp wants a running loop)."""
        if self._http is None:
            self._http = self.endpoint.session(self.timeout)
        return self._http

    async def aclose(self) -> None:
        """Close the connections."""
        if self._http is not None:
            await self._http.close()

    async def headers(
        self, session: str | None, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        h = {SESSION_HEADER: session or uuid.uuid4().hex, **self.extra_headers, **(extra or {})}
        if self.token is not None:
            tok = await self.token()
            if tok:
                h["Authorization"] = f"Bearer {tok}"
        return h

    async def call(
        self,
        method: str,
        path: str,
        body: Any,
        *,
        session: str | None = None,
        ok: tuple[int, ...] = (200,),
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        sent: asyncio.Event | None = None,
    ) -> Answer:
        """Send ``body`` as JSON (or ``content``, JSON already encoded); retry connection errors
        and 5xx; raise on other non-OK answers.

        ``sent`` is set once the whole body has been handed to the connection (or an attempt
        failed, or the call ended), so a caller may use the wait for the answer to do other
        work."""
        if content is None:
            content = json.dumps(body).encode()
        last: Exception | None = None
        try:
            for attempt in range(1, self.retry.attempts + 1):
                out = await self.headers(session, headers)
                out["Content-Type"] = "application/json"
                payload: bytes | AsyncIterator[bytes] = content
                if sent is not None:
                    out["Content-Length"] = str(len(content))
                    payload = _then_set(content, sent)
                try:
                    async with self.http.request(
                        method, self.base + path, data=payload, headers=out
                    ) as r:
                        resp = await Answer.read(r)
                except _UNREACHABLE as exc:
                    last = BackendUnavailable(f"cannot reach {self.base}{path}: {exc!r}")
                else:
                    if resp.status_code in ok:
                        return resp
                    err = RemoteError(_message(resp), resp.status_code)
                    if is_final(resp.status_code):
                        raise err
                    last = err
                if attempt < self.retry.attempts:
                    if sent is not None:
                        sent.set()  # the caller need not wait through the retries
                    await asyncio.sleep(self.retry.delay(attempt))
        finally:
            if sent is not None:
                sent.set()
        assert last is not None
        raise last

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        body: Any,
        *,
        session: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """A streamed answer's chunks (for followed logs); only connecting is retried."""
        content = json.dumps(body).encode()
        for attempt in range(1, self.retry.attempts + 1):
            out = await self.headers(session, headers)
            out["Content-Type"] = "application/json"
            try:
                resp = await self.http.request(
                    method, self.base + path, data=content, headers=out, timeout=_STREAM_TIMEOUT
                )
            except _UNREACHABLE as exc:
                if attempt == self.retry.attempts:
                    raise BackendUnavailable(f"cannot reach {self.base}{path}: {exc!r}") from None
                await asyncio.sleep(self.retry.delay(attempt))
                continue
            try:
                if resp.status != 200:
                    answer = await Answer.read(resp)
                    if resp.status >= 500 and attempt < self.retry.attempts:
                        await asyncio.sleep(self.retry.delay(attempt))
                        continue
                    raise RemoteError(_message(answer), resp.status)
                yield resp.content.iter_any()
                return
            finally:
                resp.release()


def _created(resp: Answer) -> CreateStruct:
    """A create answer; upstream plugins may wrap it in a list (and answer 201)."""
    data = resp.json()
    if isinstance(data, list):
        data = data[0] if data else {}
    return CreateStruct.model_validate(data)


async def _then_set(content: bytes, sent: asyncio.Event) -> AsyncIterator[bytes]:
    """``content`` as a request body that sets ``sent`` once it has been written."""
    yield content
    sent.set()


class _ClientBase:
    def __init__(
        self,
        url: str,
        *,
        token: TokenSource | None = None,
        ca_file: Path | None = None,
        client_cert: tuple[Path, Path] | None = None,
        timeout: float = 30.0,
        retry: Retry | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        endpoint = Endpoint.parse(url, ca_file=ca_file, client_cert=client_cert)
        self.url = url
        self.wire = _Wire(endpoint, retry or Retry(), timeout, token, headers)

    async def aclose(self) -> None:
        """Close connections."""
        await self.wire.aclose()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def status_json(
        self,
        pods: list[JSON] | bytes,
        session: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> list[JSON]:
        """Statuses of these pods in one call, as the JSON the remote sent (``pods`` may be
        given as their JSON array, already encoded)."""
        encoded = pods if isinstance(pods, bytes) else None
        resp = await self.wire.call(
            "GET", "/status", pods, session=session, headers=headers, content=encoded
        )
        body = resp.json()
        if body is None:  # upstream's API server answers a Go nil slice for no statuses
            return []
        if not isinstance(body, list):
            raise RemoteError(f"/status answered {type(body).__name__}, not a list", 502)
        return body

    async def status(
        self,
        pods: list[JSON] | bytes,
        session: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> list[PodStatus]:
        """Statuses of these pods, in one call (``pods`` as in :meth:`status_json`)."""
        return POD_STATUS_LIST.validate_python(await self.status_json(pods, session, headers))

    async def logs(
        self, request: LogStruct, session: str | None = None, headers: dict[str, str] | None = None
    ) -> bytes:
        """A container's log (not followed)."""
        body = dump(request)
        resp = await self.wire.call("GET", "/getLogs", body, session=session, headers=headers)
        return resp.content

    async def stream_logs(
        self,
        request: LogStruct,
        session: str | None = None,
        headers: dict[str, str] | None = None,
        follow: bool = False,
    ) -> AsyncGenerator[bytes, None]:
        """A container's log as a stream of chunks as they arrive (``follow``: ``Opts.Follow``
        is set for you)."""
        body = dump(request)
        if follow:
            body["Opts"]["Follow"] = True
        async with self.wire.stream(
            "GET", "/getLogs", body, session=session, headers=headers
        ) as chunks:
            async for chunk in chunks:
                yield chunk

    async def follow_logs(
        self, request: LogStruct, session: str | None = None, headers: dict[str, str] | None = None
    ) -> AsyncGenerator[bytes, None]:
        """A container's log as a stream (``Opts.Follow`` is set for you)."""
        async for chunk in self.stream_logs(request, session, headers, follow=True):
            yield chunk

    async def open_log_stream(
        self,
        request: LogStruct,
        session: str | None = None,
        headers: dict[str, str] | None = None,
        follow: bool = True,
    ) -> AsyncIterator[bytes]:
        """A log stream (followed unless ``follow=False``) whose connection is made and first
        chunk read now, so that a refusal raises here (and can be answered with its status)
        instead of inside an already-started streamed answer."""
        stream = self.stream_logs(request, session, headers, follow=follow)
        try:
            first = await anext(stream, b"")
        except BaseException:
            await stream.aclose()
            raise

        async def relay() -> AsyncIterator[bytes]:
            try:
                if first:
                    yield first
                async for chunk in stream:
                    yield chunk
            finally:
                await stream.aclose()

        return relay()


class InterLinkClient(_ClientBase):
    """Client of an interLink API server (the VK side of the wire contract)."""

    async def create(
        self,
        request: PodCreateRequests,
        session: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> CreateStruct:
        """Create a pod remotely. Safe to retry: the edge creates at most one job per pod UID."""
        resp = await self.wire.call(
            "POST", "/create", dump(request), session=session, ok=(200, 201), headers=headers
        )
        return _created(resp)

    async def delete(
        self, pod: JSON, session: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        """Delete a pod remotely; returns when the edge confirmed it."""
        await self.wire.call("DELETE", "/delete", pod, session=session, headers=headers)

    async def update_volumes(
        self,
        request: PodCreateRequests,
        session: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Rewrite the volume files of a running pod (e.g. refreshed service-account tokens)
        from the objects in ``request``; :class:`RemoteError` 501 when the edge cannot."""
        await self.wire.call(
            "POST", "/updateVolumes", dump(request), session=session, headers=headers
        )

    async def ping(
        self, session: str | None = None, headers: dict[str, str] | None = None
    ) -> PingAnswer:
        """Health and capacity of the edge."""
        resp = await self.wire.call("POST", "/pinglink", None, session=session, headers=headers)
        return PingAnswer.from_body(resp.content)


class PluginClient(_ClientBase):
    """Client of a plugin (the API server side of the wire contract)."""

    async def create(
        self,
        data: RetrievedPodData,
        session: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> CreateStruct:
        """Hand one pod to the plugin; a 201 is accepted as success (upstream quirk)."""
        resp = await self.wire.call(
            "POST", "/create", dump(data), session=session, ok=(200, 201), headers=headers
        )
        return _created(resp)

    async def delete(
        self, pod: JSON, session: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        """Delete a pod on the plugin."""
        await self.wire.call("POST", "/delete", pod, session=session, headers=headers)

    async def update_volumes(
        self,
        data: RetrievedPodData,
        session: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Rewrite the volume files of a running pod on the plugin (``POST /updateVolumes``);
        :class:`Unsupported` when the plugin cannot or has no such route (upstream plugins)."""
        try:
            await self.wire.call(
                "POST", "/updateVolumes", dump(data), session=session, headers=headers
            )
        except RemoteError as exc:
            # a router's own "no such route" (not the plugin saying the pod is unknown)
            no_route = exc.status_code == 405 or (
                exc.status_code == 404 and exc.message.strip().lower() in _NO_ROUTE
            )
            if no_route:
                raise Unsupported(
                    "the plugin has no /updateVolumes route (an upstream plugin?): volumes of "
                    "running pods cannot be updated"
                ) from None
            raise

    async def ping(
        self, session: str | None = None, headers: dict[str, str] | None = None
    ) -> PingAnswer:
        """The plugin's ping: ``GET /status`` with ``[]``."""
        resp = await self.wire.call("GET", "/status", [], session=session, headers=headers)
        return PingAnswer.from_body(resp.content)


# --- tokens -------------------------------------------------------------------------------------


def static_token(token: str) -> TokenSource:
    """A token that never changes."""

    async def get() -> str | None:
        return token

    return get


def token_file(path: Path) -> TokenSource:
    """A token read from a file at each call (for tokens rotated on disk)."""

    async def get() -> str | None:
        return (await asyncio.to_thread(path.read_text)).strip()

    return get


class ClientCredentials:
    """OAuth2 client-credentials grant against an OIDC issuer, cached until shortly before it
    expires. Usable as a :data:`TokenSource`."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        *,
        audience: str | None = None,
        scope: str | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.audience = audience
        self.scope = scope
        self._issuer = Endpoint.parse(self.issuer, ca_file=ca_file)
        self._token: str | None = None
        self._expires = 0.0
        self._margin = 60.0
        self._lock = asyncio.Lock()

    async def __call__(self) -> str | None:
        async with self._lock:
            now = time.time()
            if self._token and now < self._expires - self._margin:
                return self._token
            try:
                return await self._fetch()
            except (BackendUnavailable, RemoteError) as exc:
                if self._token and time.time() < self._expires - 1:  # still valid: use it
                    log.warning("cannot renew the token (%s); the current one is used", exc)
                    return self._token
                raise

    async def _fetch(self) -> str:
        """A new token from the issuer (remembered with its lifetime)."""
        form = {"grant_type": "client_credentials"}
        if self.audience:
            form["audience"] = self.audience
        if self.scope:
            form["scope"] = self.scope
        try:  # a connection of its own: tokens are fetched about once an hour
            async with self._issuer.session(15.0) as http:
                async with http.get(self.issuer + "/.well-known/openid-configuration") as r:
                    disc = await r.json(content_type=None)
                async with http.post(
                    disc["token_endpoint"],
                    data=form,
                    headers={"Authorization": self._basic_auth()},
                ) as r:
                    resp = await Answer.read(r)
        except _UNREACHABLE as exc:
            raise BackendUnavailable(f"cannot reach the issuer {self.issuer}: {exc!r}") from None
        if resp.status_code != 200:
            raise RemoteError(
                f"the issuer refused the client-credentials grant: {_message(resp)}",
                resp.status_code,
            )
        body = resp.json()
        lifetime = float(body.get("expires_in", 300))
        self._token = str(body["access_token"])
        self._expires = time.time() + lifetime
        # renewed a minute before it expires, or at 4/5 of a shorter lifetime
        self._margin = min(60.0, lifetime / 5)
        return self._token

    def _basic_auth(self) -> str:
        pair = f"{self.client_id}:{self.client_secret}".encode()
        return "Basic " + base64.b64encode(pair).decode()
