"""The API client's retry policy and its tolerance of upstream plugins' answers (a scripted
HTTP server on loopback; the real hops are covered by the integration tests)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from aiohttp.test_utils import RawTestServer

from interlink_core.client import SESSION_HEADER, InterLinkClient, PluginClient, RemoteError, Retry
from interlink_core.errors import BackendUnavailable
from interlink_core.models import PodCreateRequests, RetrievedPodData

POD = {"metadata": {"name": "p", "namespace": "n", "uid": "u-1"}, "spec": {"containers": []}}
FAST = Retry(attempts=4, base_delay=0.001, max_delay=0.002)
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """A loopback HTTP server answering with ``handler``; yields its URL."""
    server = RawTestServer(handler)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def drop(request: web.BaseRequest) -> web.Response:
    """Close the connection without an answer (a crashed or restarting remote)."""
    assert request.transport is not None
    request.transport.abort()
    return web.Response()


async def test_5xx_and_connection_errors_are_retried_then_succeed() -> None:
    calls: list[str] = []

    async def handler(request: web.BaseRequest) -> web.Response:
        calls.append(request.headers[SESSION_HEADER])
        if len(calls) == 1:
            return drop(request)
        if len(calls) == 2:
            return web.json_response({"error": "busy"}, status=503)
        return web.json_response({"PodUID": "u-1", "PodJID": "42"})

    async with serving(handler) as url, InterLinkClient(url, retry=FAST) as client:
        answer = await client.create(PodCreateRequests(pod=POD), session="trace-1")
    assert answer.PodJID == "42"
    assert calls == ["trace-1"] * 3  # the same session id on every attempt


async def test_4xx_is_never_retried() -> None:
    calls = 0

    async def handler(request: web.BaseRequest) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response({"error": "pods u-1 belong to another tenant"}, status=403)

    async with serving(handler) as url, InterLinkClient(url, retry=FAST) as client:
        with pytest.raises(RemoteError) as err:
            await client.delete(POD)
    assert calls == 1
    assert err.value.status_code == 403 and "another tenant" in err.value.message


async def test_gives_up_after_the_configured_attempts() -> None:
    calls = 0

    async def handler(request: web.BaseRequest) -> web.Response:
        nonlocal calls
        calls += 1
        return drop(request)

    async with serving(handler) as url, InterLinkClient(url, retry=FAST) as client:
        with pytest.raises(BackendUnavailable, match="cannot reach"):
            await client.create(PodCreateRequests(pod=POD))
    assert calls == FAST.attempts  # (aiohttp itself resends an idempotent GET once)


async def test_nobody_listening_is_backend_unavailable() -> None:
    async with serving(drop) as url:
        pass  # the port is free again
    async with InterLinkClient(url, retry=FAST) as client:
        with pytest.raises(BackendUnavailable, match="cannot reach"):
            await client.ping()


async def test_upstream_plugin_quirks_are_accepted() -> None:
    async def handler(request: web.BaseRequest) -> web.Response:
        if request.path == "/create":
            body = json.loads(await request.read())
            assert body["container"] == [] and "jobConfig" not in body
            return web.json_response([{"PodUID": "u-1", "PodJID": "7"}], status=201)  # 201 + list
        if request.path == "/status":
            return web.Response(text="ok")  # a plain-text ping answer
        return web.Response(status=404)

    async with serving(handler) as url, PluginClient(url, retry=FAST) as plugin:
        created = await plugin.create(RetrievedPodData(pod=POD))
        assert created.PodJID == "7"
        assert (await plugin.ping()).status == "ok"


async def test_upstream_null_status_answer_is_an_empty_list() -> None:
    # upstream's API server answers a Go nil slice as ``null`` when it has no statuses
    async def handler(request: web.BaseRequest) -> web.Response:
        return web.Response(text="null", content_type="application/json")

    async with serving(handler) as url, InterLinkClient(url, retry=FAST) as client:
        assert await client.status([POD]) == []


async def test_sent_is_set_once_the_body_reached_the_remote() -> None:
    """The API server checks a /status body while the plugin already works on it."""
    got = asyncio.Event()
    release = asyncio.Event()

    async def handler(request: web.BaseRequest) -> web.Response:
        body = await request.read()
        got.set()
        await release.wait()
        return web.Response(body=body, content_type="application/json")

    async with serving(handler) as url, PluginClient(url, retry=FAST) as plugin:
        sent = asyncio.Event()
        content = json.dumps([POD] * 2000).encode()  # more than one socket buffer
        call = asyncio.ensure_future(
            plugin.wire.call("GET", "/status", None, content=content, sent=sent)
        )
        await asyncio.wait_for(sent.wait(), 10)
        await asyncio.wait_for(got.wait(), 10)  # the remote has the whole body ...
        assert not call.done()  # ... while the answer is still to come
        release.set()
        assert (await call).content == content


def test_backoff_grows_and_is_capped() -> None:
    r = Retry(attempts=10, base_delay=0.1, max_delay=1.0)
    delays = [r.delay(n) for n in range(1, 8)]
    assert all(0.05 <= d <= 1.0 for d in delays)
    assert max(delays[4:]) <= 1.0 and min(delays[4:]) >= 0.5  # capped at max_delay (± jitter)
