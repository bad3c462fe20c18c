"""Fast status for pods that are not Running yet, on the real control plane with a real edge:
with a 30 s full status cycle, a pod that starts remotely shows Running within about a second,
through one batched status call per fast cycle for just the pending pods; once nothing is
pending, the VK goes back to the slow cycle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from interlink_vk.pods import job_id
from interlink_vk.podstatus import kube_status
from tests.helpers.k8s import K8sInfo
from tests.helpers.vk import RunningVK, local_vk

pytestmark = pytest.mark.integration

SLOW = 30.0
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
    for name in names:
        await vk.wait_pod(name, lambda p: phase(p) == "Running", timeout=SLOW / 2)
    took = time.monotonic() - t0
    # the init container's 2 s, a fast cycle and the kubectl polling (about 3 s on a quiet
    # machine); with only the slow cycle it would be up to 30 s
    assert took < SLOW / 3, took
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

    async def counting(pods: list[dict[str, Any]], *a: Any, **kw: Any) -> Any:
        sent.append(len(pods))
        return await real(pods, *a, **kw)

    edge.status = counting  # type: ignore[method-assign]  # observe the real calls
    try:
        await asyncio.sleep(10 * FAST)
    finally:
        del edge.status
    # about one call per fast cycle, each with exactly the 5 pending pods (not the running
    # one); at most one full cycle (all 6) if the window reached the slow interval
    assert 3 <= sent.count(5) <= 12, sent
    assert set(sent) <= {5, 6} and sent.count(6) <= 1, sent


async def test_a_fresh_pod_shows_running_right_after_the_plugin_says_so(
    k8s: K8sInfo, tmp_path: Path
) -> None:
    """A pod submitted a moment ago is polled every ``fresh_status_interval_seconds``: with a
    5 s pending interval (and a 30 s full one), its Running still appears in the pod within a
    fraction of a second of the plugin first reporting it (the pending interval alone would
    leave it up to 5 s)."""
    async with local_vk(
        k8s,
        tmp_path,
        "vk-fresh",
        status_interval_seconds=SLOW,
        pending_status_interval_seconds=5.0,
        fresh_status_interval_seconds=0.1,
        fresh_status_seconds=4.0,
    ) as (vk, _):
        spec = vk.pod_manifest(
            "fresh",
            [{"name": "main", "image": "x", "command": ["sleep", "600"]}],
            initContainers=[{"name": "init", "image": "x", "command": ["sleep", "1.5"]}],
        )
        assert (await vk.kubectl("apply", "-f", "-", input=spec)).returncode == 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        reported = shown = 0.0
        while not shown and loop.time() < deadline:
            await asyncio.sleep(0.02)
            pod = next((p for p in vk.pods.snapshot() if p["metadata"]["name"] == "fresh"), None)
            if pod is None or not job_id(pod):
                continue
            if phase(pod) == "Running":
                shown = loop.time()
            elif not reported:  # the plugin's own view, asked directly every 20 ms
                answer = (await vk.pods.edge.status([pod]))[0]
                if kube_status(pod, answer)["phase"] == "Running":
                    reported = loop.time()
        assert reported and shown, (reported, shown)
        assert shown - reported < 0.3, shown - reported
        print(f"Running in the pod {shown - reported:.3f} s after the plugin reported it")


async def test_unchanged_pods_are_not_patched(k8s: K8sInfo, tmp_path: Path) -> None:
    """The apiserver stores a status slightly differently (``lastState: {}`` added, empty lists
    dropped): a steady pod must still not be patched every cycle."""
    async with local_vk(k8s, tmp_path, "vk-steady") as (vk, _):
        spec = vk.pod_manifest("steady", [{"name": "w", "image": "x", "command": ["sleep", "600"]}])
        assert (await vk.kubectl("apply", "-f", "-", input=spec)).returncode == 0
        await vk.wait_pod("steady", lambda p: phase(p) == "Running")
        await asyncio.sleep(1)
        before = (await vk.pod("steady") or {})["metadata"]["resourceVersion"]
        cycles = full_cycles(vk)
        await asyncio.sleep(3)  # about six full status cycles
        assert full_cycles(vk) > cycles
        assert (await vk.pod("steady") or {})["metadata"]["resourceVersion"] == before
