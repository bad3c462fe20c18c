"""Bounded, streamed logs through the real API server and local plugin (issue 14): a large log's
``Tail`` is its last lines, an answer is capped at the plugin's ``max_log_bytes`` and at
``LimitBytes``, and a followed log's first lines reach the caller while the container runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.world import Service, log_body, shell_pod, start_api, start_plugin, until

pytestmark = pytest.mark.integration
TOKEN = "dev-token-for-log-tests"
CAP = 1024 * 1024
LINES = 100_000  # 'line <i> ' + 90 x: about 10 MB of log


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    plugin = start_plugin(tmp_path / "plugin", config={"max_log_bytes": CAP})
    server: Service | None = None
    try:
        server = start_api(
            tmp_path / "api", {"plugin": {"url": plugin.url}, "auth": {"insecure_dev_token": TOKEN}}
        )
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as c:
            yield c
    finally:
        if server:
            server.stop()
        plugin.stop()


async def state(api: httpx.AsyncClient, pod: dict[str, Any]) -> dict[str, Any]:
    answer = (await api.request("GET", "/status", json=[pod])).json()
    containers = answer[0].get("containers") or [{}] if answer else [{}]
    return dict(containers[0].get("state") or {})


async def test_a_large_logs_tail_and_caps(api: httpx.AsyncClient) -> None:
    script = (
        'python3 -c "import sys; sys.stdout.writelines('
        f"'line %d %s\\n' % (i, 'x' * 90) for i in range({LINES}))\""
    )
    pod = shell_pod("logs", script)
    assert (await api.post("/create", json={"pod": pod})).status_code == 200
    try:

        async def ended() -> bool:
            return "terminated" in await state(api, pod)

        await until(ended, timeout=180, what="the pod writing 10 MB of log ended")
        x90 = b"x" * 90
        tail = await api.request("GET", "/getLogs", json=log_body(pod, Tail=2))
        assert tail.status_code == 200, tail.text
        assert tail.content == b"line 99998 " + x90 + b"\nline 99999 " + x90 + b"\n"
        whole = await api.request("GET", "/getLogs", json=log_body(pod))
        assert len(whole.content) == CAP  # max_log_bytes of the plugin, of ~10 MB
        assert whole.content.startswith(b"line 0 " + x90 + b"\nline 1 ")
        cut = await api.request("GET", "/getLogs", json=log_body(pod, LimitBytes=10))
        assert cut.content == b"line 0 xxx"
    finally:
        await api.request("DELETE", "/delete", json=pod)


async def test_a_followed_logs_first_lines_arrive_while_the_container_runs(
    api: httpx.AsyncClient,
) -> None:
    pod = shell_pod("logs", "echo first; sleep 120; echo second")
    assert (await api.post("/create", json={"pod": pod})).status_code == 200
    try:
        request = log_body(pod, Follow=True)
        async with api.stream("GET", "/getLogs", json=request) as resp:
            assert resp.status_code == 200
            first = await anext(resp.aiter_bytes())
            assert first == b"first\n"
            # the container still runs: the plugin has not finished this answer
            assert "running" in await state(api, pod)
    finally:
        await api.request("DELETE", "/delete", json=pod)
