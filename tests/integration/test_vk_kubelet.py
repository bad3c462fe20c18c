"""`kubectl logs` through the real apiserver to the VK's kubelet API, which answers from the
edge; the serving certificate comes from a kubelet-serving CSR that the admin approves; anonymous
and unauthorized callers are refused like a kubelet refuses them."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.k8s import K8sInfo, kubectl
from tests.helpers.vk import RunningVK, local_vk

pytestmark = pytest.mark.integration


@pytest.fixture
async def vk(k8s: K8sInfo, tmp_path: Path) -> AsyncIterator[RunningVK]:
    async with local_vk(k8s, tmp_path, "vk-logs") as (running, _):
        yield running


def pod(vk: RunningVK, name: str, containers: list[dict[str, Any]]) -> str:
    return vk.pod_manifest(name, containers)


async def wait_phase(
    vk: RunningVK, name: str, phases: tuple[str, ...], timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = await vk.kubectl("get", "pod", name, "-n", vk.ns, "-o", "jsonpath={.status.phase}")
        if out.stdout in phases:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"pod {name} never reached {phases}")


async def test_kubectl_logs_through_the_apiserver(vk: RunningVK) -> None:
    spec = pod(
        vk,
        "talker",
        [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", "echo one; echo two; echo three"],
            },
            {"name": "side", "image": "busybox", "command": ["sh", "-c", "echo from-side"]},
        ],
    )
    out = await asyncio.to_thread(kubectl, vk.k8s, "apply", "-f", "-", input=spec)
    assert out.returncode == 0, out.stderr
    await wait_phase(vk, "talker", ("Succeeded",))
    logs = await vk.kubectl("logs", "talker", "-n", vk.ns, "-c", "main")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "one\ntwo\nthree\n"
    assert (
        await vk.kubectl("logs", "talker", "-n", vk.ns, "-c", "main", "--tail=1")
    ).stdout == "three\n"
    stamped = (
        await vk.kubectl("logs", "talker", "-n", vk.ns, "-c", "main", "--timestamps")
    ).stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["one", "two", "three"]
    assert stamped[0].startswith("20") and "T" in stamped[0].split(" ", 1)[0]
    assert (await vk.kubectl("logs", "talker", "-n", vk.ns, "-c", "side")).stdout == "from-side\n"
    assert (
        await vk.kubectl("logs", "talker", "-n", vk.ns, "-c", "main", "--since=1h")
    ).stdout == "one\ntwo\nthree\n"
    assert (
        await vk.kubectl("logs", "talker", "-n", vk.ns, "-c", "main", "--limit-bytes=6")
    ).stdout == "one\ntw"


async def test_kubectl_logs_follow_streams(vk: RunningVK) -> None:
    spec = pod(
        vk,
        "ticker",
        [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", "for i in 1 2 3 4; do echo tick$i; sleep 0.5; done"],
            }
        ],
    )
    await asyncio.to_thread(kubectl, vk.k8s, "apply", "-f", "-", input=spec)
    await wait_phase(vk, "ticker", ("Running", "Succeeded"))
    t0 = time.monotonic()
    out = await vk.kubectl("logs", "-f", "ticker", "-n", vk.ns)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "tick1\ntick2\ntick3\ntick4\n"
    assert time.monotonic() - t0 > 0.5  # it waited for the lines to be written


async def test_anonymous_and_unauthorized_callers_are_refused(vk: RunningVK) -> None:
    url = f"https://{vk.ip}:{vk.port}/containerLogs/{vk.ns}/nope/main"
    ctx = ssl.create_default_context(cafile=str(vk.k8s.ca))
    async with httpx.AsyncClient(verify=ctx) as http:
        for _ in range(100):  # the server starts once its certificate is issued
            try:
                anonymous = await http.get(url)
                break
            except httpx.ConnectError:
                await asyncio.sleep(0.3)
        assert anonymous.status_code == 401
        await vk.kubectl("create", "serviceaccount", "nobody", "-n", vk.ns)
        token = (await vk.kubectl("create", "token", "nobody", "-n", vk.ns)).stdout.strip()
        denied = await http.get(url, headers={"Authorization": f"Bearer {token}"})
        assert denied.status_code == 403
        assert "nodes" in denied.json()["error"] and "proxy" in denied.json()["error"]
        garbage = await http.get(url, headers={"Authorization": "Bearer not-a-token"})
        assert garbage.status_code == 401
        admin = await http.get(url, headers={"Authorization": f"Bearer {vk.k8s.admin_token}"})
        assert admin.status_code == 404  # allowed, and the pod does not exist
