"""Fast status for pods that are not Running yet, on the real control plane with a real edge:
with a 10 min full status cycle, a pod that starts remotely shows Running within the test's
wait (only a fast cycle can have brought it), through one batched status call per fast cycle
for just the pending pods; once nothing is pending, the VK goes back to the slow cycle."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.k8s import K8sInfo
from tests.helpers.vk import RunningVK, local_vk

pytestmark = pytest.mark.integration

SLOW = 600.0
FAST = 0.5
INIT_SECONDS = 2.0


@pytest.fixture
async def vk(k8s: K8sInfo, tmp_path: Path) -> AsyncIterator[RunningVK]:
    async with local_vk(
        k8s,
        tmp_path,
        "vk-fast",
        status_interval_seconds=SLOW,
        pending_status_interval_seconds=FAST,
    ) as (running, _):
        yield running


def sample(vk: RunningVK, name: str, **labels: str) -> float:
    return vk.metrics.registry.get_sample_value(name, labels) or 0.0


def status_calls(vk: RunningVK) -> float:
    return sample(vk, "interlink_vk_edge_calls_total", operation="status", outcome="ok")


def full_cycles(vk: RunningVK) -> float:
    return sample(vk, "interlink_vk_status_cycle_seconds_count", kind="full")


def phase(p: dict[str, Any]) -> str:
    return str((p.get("status") or {}).get("phase", ""))


async def test_running_shows_well_within_the_slow_interval(vk: RunningVK) -> None:
    names = [f"slow-start-{i}" for i in range(3)]
    for name in names:
        # Pending remotely (its init container runs) for 2 s, then Running
        spec = vk.pod_manifest(
            name,
            [{"name": "main", "image": "x", "command": ["sleep", "600"]}],
            initContainers=[
                {"name": "init", "image": "x", "command": ["sleep", str(INIT_SECONDS)]}
            ],
        )
        out = await vk.kubectl("apply", "-f", "-", input=spec)
        assert out.returncode == 0, out.stderr
    t0 = time.monotonic()
    pending = await vk.wait_pod(names[0], lambda p: bool(p["status"].get("initContainerStatuses")))
    assert phase(pending) == "Pending"
    cycles = full_cycles(vk)
    for name in names:  # within SLOW / 10: the next full cycle is SLOW away
        await vk.wait_pod(name, lambda p: phase(p) == "Running", timeout=SLOW / 10)
    assert full_cycles(vk) == cycles  # no full cycle brought it
    took = time.monotonic() - t0
    print(f"3 pods Running {took:.2f} s after their first status (init {INIT_SECONDS} s)")

    # nothing pending any more: no status call but those of the full cycle
    await asyncio.sleep(FAST)
    before = status_calls(vk) - full_cycles(vk)
    await asyncio.sleep(4 * FAST + 1)
    assert status_calls(vk) - full_cycles(vk) == before
    assert vk.pods.pending() == [] and len(vk.pods.tracked()) == 3


async def test_one_status_call_per_fast_cycle_for_the_pending_pods_only(vk: RunningVK) -> None:
    running = vk.pod_manifest(
        "already-running", [{"name": "main", "image": "x", "command": ["sleep", "600"]}]
    )
    assert (await vk.kubectl("apply", "-f", "-", input=running)).returncode == 0
    await vk.wait_pod("already-running", lambda p: phase(p) == "Running", timeout=SLOW / 2)
    for i in range(5):
        spec = vk.pod_manifest(
            f"queued-{i}",
            [{"name": "main", "image": "x", "command": ["sleep", "600"]}],
            initContainers=[{"name": "init", "image": "x", "command": ["sleep", "600"]}],
        )
        assert (await vk.kubectl("apply", "-f", "-", input=spec)).returncode == 0
    for i in range(5):
        await vk.wait_pod(f"queued-{i}", lambda p: bool(p["status"].get("initContainerStatuses")))
    await asyncio.sleep(vk.pods.config.fresh_status_seconds)  # past their fresh polling
    sent: list[int] = []
    edge = vk.pods.edge
    real = edge.status

    at: list[float] = []

    async def counting(pods: bytes, *a: Any, **kw: Any) -> Any:
        sent.append(len(json.loads(pods)))  # the VK sends the pods' JSON as it holds it
        at.append(asyncio.get_running_loop().time())
        return await real(pods, *a, **kw)

    edge.status = counting  # type: ignore[method-assign]  # observe the real calls
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len(sent) < 6 and loop.time() < deadline:
            await asyncio.sleep(FAST / 5)
    finally:
        del edge.status
    # one call per fast cycle, each with exactly the 5 pending pods (not the running one),
    # never two cycles' calls back to back; no full cycle (all 6) this side of SLOW
    assert sent[:6] == [5] * 6, sent
    gaps = [b - a for a, b in itertools.pairwise(at[:6])]
    assert min(gaps) > FAST / 2, gaps


async def test_a_fresh_pod_shows_running_by_its_fresh_polling(k8s: K8sInfo, tmp_path: Path) -> None:
    """A pod submitted a moment ago is polled every ``fresh_status_interval_seconds``: with
    10 min full and pending intervals, its Running (1.5 s after submission) still appears
    within the wait, which only the fresh polling can bring."""
    async with local_vk(
        k8s,
        tmp_path,
        "vk-fresh",
        status_interval_seconds=SLOW,
        pending_status_interval_seconds=SLOW,
        fresh_status_interval_seconds=0.1,
        fresh_status_seconds=SLOW / 10,
    ) as (vk, _):
        spec = vk.pod_manifest(
            "fresh",
            [{"name": "main", "image": "x", "command": ["sleep", "600"]}],
            initContainers=[{"name": "init", "image": "x", "command": ["sleep", "1.5"]}],
        )
        assert (await vk.kubectl("apply", "-f", "-", input=spec)).returncode == 0
        cycles = full_cycles(vk)
        await vk.wait_pod("fresh", lambda p: phase(p) == "Running", timeout=SLOW / 10)
        assert full_cycles(vk) == cycles


async def test_unchanged_pods_are_not_patched(k8s: K8sInfo, tmp_path: Path) -> None:
    """The apiserver stores a status slightly differently (``lastState: {}`` added, empty lists
    dropped): a steady pod must still not be patched every cycle."""
    async with local_vk(k8s, tmp_path, "vk-steady") as (vk, _):
        spec = vk.pod_manifest("steady", [{"name": "w", "image": "x", "command": ["sleep", "600"]}])
        assert (await vk.kubectl("apply", "-f", "-", input=spec)).returncode == 0
        await vk.wait_pod("steady", lambda p: phase(p) == "Running")
        await cycles_after(vk, full_cycles(vk), 2)  # its Running status written and seen
        before = (await vk.pod("steady") or {})["metadata"]["resourceVersion"]
        await cycles_after(vk, full_cycles(vk), 6)
        assert (await vk.pod("steady") or {})["metadata"]["resourceVersion"] == before


async def cycles_after(vk: RunningVK, start: float, n: int, timeout: float = 60) -> None:
    """Wait until ``n`` full status cycles ran after the count ``start``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while full_cycles(vk) < start + n:
        assert loop.time() < deadline, f"only {full_cycles(vk) - start} full cycles ran"
        await asyncio.sleep(0.1)
