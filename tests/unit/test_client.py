"""The API client's retry policy and its tolerance of upstream plugins' answers (fake
transports; the real hops are covered by the integration tests)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from interlink_core.client import SESSION_HEADER, InterLinkClient, PluginClient, RemoteError, Retry
from interlink_core.errors import BackendUnavailable
from interlink_core.models import PodCreateRequests, RetrievedPodData

POD = {"metadata": {"name": "p", "namespace": "n", "uid": "u-1"}, "spec": {"containers": []}}
FAST = Retry(attempts=4, base_delay=0.001, max_delay=0.002)


def with_transport(
    client: InterLinkClient | PluginClient, handler: Callable[[httpx.Request], httpx.Response]
) -> None:
    client.wire.http = httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_5xx_and_connection_errors_are_retried_then_succeed() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers[SESSION_HEADER])
        if len(calls) == 1:
            raise httpx.ConnectError("refused")
        if len(calls) == 2:
            return httpx.Response(503, json={"error": "busy"})
        return httpx.Response(200, json={"PodUID": "u-1", "PodJID": "42"})

    client = InterLinkClient("http://edge", retry=FAST)
    with_transport(client, handler)
    answer = await client.create(PodCreateRequests(pod=POD), session="trace-1")
    assert answer.PodJID == "42"
    assert calls == ["trace-1"] * 3  # the same session id on every attempt


async def test_4xx_is_never_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(403, json={"error": "pods u-1 belong to another tenant"})

    client = InterLinkClient("http://edge", retry=FAST)
    with_transport(client, handler)
    with pytest.raises(RemoteError) as err:
        await client.delete(POD)
    assert calls == 1
    assert err.value.status_code == 403 and "another tenant" in err.value.message


async def test_gives_up_after_the_configured_attempts() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused")

    client = InterLinkClient("http://edge", retry=FAST)
    with_transport(client, handler)
    with pytest.raises(BackendUnavailable, match="cannot reach"):
        await client.status([POD])
    assert calls == FAST.attempts


async def test_upstream_plugin_quirks_are_accepted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/create":
            body = json.loads(request.content)
            assert body["container"] == [] and "jobConfig" not in body
            return httpx.Response(201, json=[{"PodUID": "u-1", "PodJID": "7"}])  # 201 + list
        if request.url.path == "/status":
            return httpx.Response(200, text="ok")  # a plain-text ping answer
        return httpx.Response(404)

    plugin = PluginClient("http://plugin", retry=FAST)
    with_transport(plugin, handler)
    created = await plugin.create(RetrievedPodData(pod=POD))
    assert created.PodJID == "7"
    assert (await plugin.ping()).status == "ok"


def test_backoff_grows_and_is_capped() -> None:
    r = Retry(attempts=10, base_delay=0.1, max_delay=1.0)
    delays = [r.delay(n) for n in range(1, 8)]
    assert all(0.05 <= d <= 1.0 for d in delays)
    assert max(delays[4:]) <= 1.0 and min(delays[4:]) >= 0.5  # capped at max_delay (± jitter)
