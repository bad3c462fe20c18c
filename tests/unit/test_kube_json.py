"""The plain-JSON Kubernetes client (aiohttp, credentials from kr8s) against a small HTTP
server standing in for the apiserver."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from interlink_core import kube as kube_module
from interlink_core.kube import KubeError, status_code
from interlink_vk.kube import Kube, WatchExpired

POD = {"metadata": {"name": "p", "namespace": "n", "uid": "u"}}


class Auth:
    """kr8s' credentials as the client reads them; ``reauthenticate`` reads a new token."""

    def __init__(self, server: str) -> None:
        self.server, self.token, self.proxy, self.tls_server_name = server, "old", None, None
        self.renewed = 0

    async def ssl_context(self) -> bool:
        await asyncio.sleep(0.01)  # kr8s takes a lock here: the first calls all wait
        return True

    async def reauthenticate(self) -> None:
        self.renewed += 1
        self.token = "new"


@pytest.fixture
async def apiserver() -> AsyncIterator[tuple[Kube, list[str]]]:
    seen: list[str] = []  # the Authorization headers, in order

    async def pod(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != "Bearer new":
            return web.json_response({"kind": "Status", "message": "Unauthorized"}, status=401)
        return web.json_response(POD)

    async def missing(request: web.Request) -> web.Response:
        message = 'pods "gone" not found'
        return web.json_response({"kind": "Status", "message": message}, status=404)

    async def watch(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        lines = b"".join(
            json.dumps(e).encode() + b"\n"
            for e in (
                {"type": "ADDED", "object": POD},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
                {"type": "ERROR", "object": {"message": "too old resource version: 1 (5)"}},
            )
        )
        for i in range(0, len(lines), 7):  # lines cut across chunks
            await resp.write(lines[i : i + 7])
            await asyncio.sleep(0)
        return resp

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/n/pods/p", pod)
    app.router.add_get("/api/v1/namespaces/n/pods/gone", missing)
    app.router.add_get("/api/v1/pods", watch)
    async with TestServer(app) as server:
        auth = Auth(str(server.make_url("")).rstrip("/"))
        async with Kube(SimpleNamespace(auth=auth)) as kube:  # type: ignore[arg-type]
            await auth.reauthenticate()
            yield kube, seen


async def test_the_first_calls_at_once_share_one_connection_pool(
    apiserver: tuple[Kube, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    kube, _ = apiserver
    made: list[aiohttp.ClientSession] = []

    real = aiohttp.ClientSession

    def counted(*args: Any, **kwargs: Any) -> aiohttp.ClientSession:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(kube_module.aiohttp, "ClientSession", counted)
    answers = await asyncio.gather(*(kube.call("GET", "pods/p", namespace="n") for _ in range(16)))
    assert answers == [POD] * 16
    assert len(made) == 1


async def test_an_error_answer_names_its_code_and_the_apiservers_message(
    apiserver: tuple[Kube, list[str]],
) -> None:
    kube, _ = apiserver
    with pytest.raises(KubeError) as error:
        await kube.call("GET", "pods/gone", namespace="n")
    assert status_code(error.value) == 404
    assert str(error.value) == 'pods "gone" not found'
    assert await kube.get("pods", "n", "gone") is None


async def test_a_401_reads_the_credentials_again_and_tries_once_more(
    apiserver: tuple[Kube, list[str]],
) -> None:
    kube, seen = apiserver
    kube.api.auth.token = "old"  # the service-account token rotated under the client
    assert await kube.call("GET", "pods/p", namespace="n") == POD
    assert seen == ["Bearer old", "Bearer new"]
    assert kube.api.auth.renewed == 2  # the fixture's and this one


async def test_watch_events_cut_across_chunks_arrive_whole_and_an_error_ends_the_watch(
    apiserver: tuple[Kube, list[str]],
) -> None:
    kube, _ = apiserver
    events = []
    with pytest.raises(WatchExpired, match="too old resource version"):
        async for kind, obj in kube.watch_pods_on_node("vn", "1"):
            events.append((kind, obj))
    assert events == [("ADDED", POD), ("BOOKMARK", {"metadata": {"resourceVersion": "9"}})]


async def test_a_call_during_another_callers_reauthentication_reaches_the_server(
    apiserver: tuple[Kube, list[str]],
) -> None:
    """Every ``kr8s.asyncio.api()`` call re-authenticates the one shared ``Api``, which empties
    its ``server`` for a moment: a request made then still goes to the apiserver."""
    kube, _ = apiserver
    assert await kube.call("GET", "pods/p", namespace="n") == POD
    server, kube.api.auth.server = kube.api.auth.server, ""  # mid re-authentication
    try:
        assert await kube.call("GET", "pods/p", namespace="n") == POD
    finally:
        kube.api.auth.server = server
