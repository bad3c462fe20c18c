"""A log cut by time: a container writes ``before``, waits GAP seconds, writes ``after``; a cut
between the two lines (``SinceTime``/``SinceSeconds`` at a plugin's ``/getLogs``,
``kubectl logs --since-time``/``--since`` through the apiserver and the VK) returns ``after``
alone, on the local and on the SLURM plugin (host runtime)."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.k8s import K8sInfo
from tests.helpers.slurm import SlurmInfo
from tests.helpers.vk import RunningVK, local_vk, slurm_vk
from tests.helpers.world import plugin_client, start_plugin

pytestmark = pytest.mark.integration

GAP = 4
SCRIPT = f"echo before; sleep {GAP}; echo after"
CONTAINER = {"name": "main", "image": "none", "command": ["sh", "-c", SCRIPT]}


def stamp_time(stamp: str) -> float:
    """Seconds since the epoch of an RFC3339 time with up to nanosecond digits."""
    main, _, frac = stamp.rstrip("Z").partition(".")
    t = datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return t + float(f"0.{frac or 0}")


def rfc3339(t: float) -> str:
    """A whole-second RFC3339 time (what ``kubectl --since-time`` sends on)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def line_times(stamped: str) -> tuple[float, float]:
    """The times of the ``before`` and ``after`` lines of a timestamped log."""
    lines = [line.split(" ", 1) for line in stamped.splitlines()]
    assert [text for _, text in lines] == ["before", "after"], stamped
    before, after = (stamp_time(stamp) for stamp, _ in lines)
    assert after - before >= GAP - 0.5, stamped
    return before, after


async def cut_by_seconds(ask: Callable[[int], Awaitable[str]], before: float, after: float) -> str:
    """The answer to a ``since seconds`` request whose cut (the server's now minus the seconds;
    it shares this host's clock) falls between the two lines: asked again if the call took so
    long that its cut may have left the gap."""
    for _ in range(5):
        sent = time.time()
        seconds = round(sent - (before + after) / 2)
        text = await ask(seconds)
        if before < sent - seconds and time.time() - seconds < after:
            return text
    raise AssertionError("every call took longer than the gap between the lines")


# --- at the wire -------------------------------------------------------------------------------


@pytest.fixture(params=["local", "slurm"])
async def wire(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A plugin process of each backend, on its unix socket."""
    config: dict[str, Any] = {}
    if request.param == "slurm":
        slurm: SlurmInfo = request.getfixturevalue("slurm")
        config = {"runtime": "host", "partition": slurm.partition}
    svc = start_plugin(tmp_path, request.param, config=config)
    try:
        async with plugin_client(svc.socket) as client:
            yield client
    finally:
        svc.stop()


async def wire_logs(http: httpx.AsyncClient, pod: dict[str, Any], **opts: Any) -> str:
    meta = pod["metadata"]
    body = {
        "Namespace": meta["namespace"],
        "PodUID": meta["uid"],
        "PodName": meta["name"],
        "ContainerName": "main",
        "Opts": opts,
    }
    r = await http.request("GET", "/getLogs", json=body)
    assert r.status_code == 200, r.text
    return r.text


async def wait_terminated(http: httpx.AsyncClient, pod: dict[str, Any]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = await http.request("GET", "/status", json=[pod])
        [st] = r.json()
        if "terminated" in st["containers"][0]["state"]:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the container never ended: {r.text}")


async def test_since_time_and_since_seconds_cut_at_the_wire(wire: httpx.AsyncClient) -> None:
    uid = str(uuid.uuid4())
    pod = {
        "metadata": {"name": f"cut-{uid[:6]}", "namespace": "default", "uid": uid},
        "spec": {"containers": [CONTAINER]},
    }
    r = await wire.post("/create", json={"pod": pod, "container": [{"name": "main"}]})
    assert r.status_code == 200, r.text
    try:
        await wait_terminated(wire, pod)
        assert await wire_logs(wire, pod) == "before\nafter\n"
        stamped = await wire_logs(wire, pod, Timestamps=True)
        before, after = line_times(stamped)
        middle = rfc3339(math.floor((before + after) / 2))
        assert await wire_logs(wire, pod, SinceTime=middle) == "after\n"
        after_stamp = stamped.splitlines()[1].split(" ", 1)[0]
        assert await wire_logs(wire, pod, SinceTime=after_stamp) == "after\n"  # inclusive
        assert await wire_logs(wire, pod, SinceTime=rfc3339(before - 1)) == "before\nafter\n"
        assert await wire_logs(wire, pod, SinceTime=rfc3339(after + 1.5)) == ""

        async def ask(seconds: int) -> str:
            return await wire_logs(wire, pod, SinceSeconds=seconds)

        assert await cut_by_seconds(ask, before, after) == "after\n"
    finally:
        await wire.post("/delete", json=pod)


# --- through kubectl -----------------------------------------------------------------------------


@pytest.fixture(params=["local", "slurm"])
async def vk(
    request: pytest.FixtureRequest, k8s: K8sInfo, tmp_path: Path
) -> AsyncIterator[RunningVK]:
    """A virtual node backed by each plugin."""
    if request.param == "slurm":
        slurm: SlurmInfo = request.getfixturevalue("slurm")
        async with slurm_vk(k8s, slurm, tmp_path, "vk-since") as running:
            yield running
    else:
        async with local_vk(k8s, tmp_path, "vk-since") as (running, _):
            yield running


async def test_kubectl_logs_since_cuts_between_lines(vk: RunningVK) -> None:
    out = await vk.kubectl("apply", "-f", "-", input=vk.pod_manifest("cut", [CONTAINER]))
    assert out.returncode == 0, out.stderr
    await vk.wait_pod("cut", lambda p: p["status"].get("phase") == "Succeeded")

    async def logs(*flags: str) -> str:
        out = await vk.kubectl("logs", "cut", "-n", vk.ns, *flags)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert await logs() == "before\nafter\n"
    before, after = line_times(await logs("--timestamps"))
    middle = rfc3339(math.floor((before + after) / 2))
    assert await logs(f"--since-time={middle}") == "after\n"
    assert await logs(f"--since-time={rfc3339(after + 1.5)}") == ""

    async def ask(seconds: int) -> str:
        return await logs(f"--since={seconds}s")

    assert await cut_by_seconds(ask, before, after) == "after\n"
