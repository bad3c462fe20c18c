"""How the VK's pod loop picks up pods: a pod new to the node is submitted from its watch event,
without waiting for a LIST; other changes still cause one (fakes for Kubernetes and the edge)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from interlink_core.models import CreateStruct, PodCreateRequests
from interlink_vk.config import VKConfig
from interlink_vk.metrics import VKMetrics
from interlink_vk.pods import PodController

JSON = dict[str, Any]


def pod(uid: str, rv: str = "1") -> JSON:
    return {
        "metadata": {"name": f"p-{uid}", "namespace": "n", "uid": uid, "resourceVersion": rv},
        "spec": {"nodeName": "vn", "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Pending"},
    }


class FakeKube:
    """The node's pods, a watch fed by the test, and a count of LISTs."""

    def __init__(self) -> None:
        self.pods: dict[str, JSON] = {}
        self.lists = 0
        self.events: asyncio.Queue[tuple[str, JSON]] = asyncio.Queue()

    async def pods_on_node(self, node: str) -> list[JSON]:
        self.lists += 1
        return [dict(p) for p in self.pods.values()]

    async def watch_pods_on_node(self, node: str) -> AsyncIterator[tuple[str, JSON]]:
        while True:
            yield await self.events.get()

    async def patch_pod(self, p: JSON, patch: JSON, status: bool = False) -> JSON:
        stored = self.pods[p["metadata"]["uid"]]
        stored["metadata"] = {
            **stored["metadata"],
            **{k: v for k, v in patch.get("metadata", {}).items() if k != "annotations"},
            "annotations": patch.get("metadata", {}).get("annotations", {}),
            "resourceVersion": str(int(stored["metadata"]["resourceVersion"]) + 1),
        }
        return dict(stored)

    async def event(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def get(self, kind: str, ns: str, name: str) -> JSON | None:
        return None

    async def list_owed(self, *args: Any) -> list[JSON]:
        return []


class FakeEdge:
    def __init__(self) -> None:
        self.created: list[str] = []

    async def create(self, request: PodCreateRequests) -> CreateStruct:
        uid = request.pod["metadata"]["uid"]
        self.created.append(uid)
        return CreateStruct(PodUID=uid, PodJID=f"job-{uid}")

    async def status(self, pods: list[JSON]) -> list[Any]:
        return []


async def until(cond: Any, what: str) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def running(kube: FakeKube, edge: FakeEdge) -> tuple[PodController, asyncio.Task[None]]:
    config = VKConfig(node_name="vn", edge={"url": "http://edge", "token": "t"})
    vk = PodController(kube, config, edge, VKMetrics())  # type: ignore[arg-type]
    vk.owed.load = vk.owed.save = _nothing  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(vk.run(stop))
    await until(lambda: kube.lists == 1, "the first LIST")
    return vk, task


async def _nothing() -> None:
    pass


async def test_a_new_pod_is_submitted_from_its_watch_event_without_a_list() -> None:
    kube, edge = FakeKube(), FakeEdge()
    vk, task = await running(kube, edge)
    try:
        kube.pods["a"] = pod("a")
        await kube.events.put(("ADDED", pod("a")))
        await until(lambda: edge.created == ["a"], "the create of pod a")
        await until(lambda: "a" not in vk._creating, "the create to finish")
        assert kube.lists == 1  # only the first one
        assert vk._pods["a"]["metadata"]["annotations"] == {"interlink.eu/job-id": "job-a"}
    finally:
        task.cancel()


async def test_a_change_to_a_known_pod_still_lists() -> None:
    kube, edge = FakeKube(), FakeEdge()
    kube.pods["a"] = pod("a")
    vk, task = await running(kube, edge)
    try:
        await until(lambda: "a" in edge.created and "a" not in vk._creating, "pod a created")
        lists = kube.lists
        changed = dict(
            kube.pods["a"], metadata={**kube.pods["a"]["metadata"], "resourceVersion": "9"}
        )
        kube.pods["a"] = changed
        await kube.events.put(("MODIFIED", changed))
        await until(lambda: kube.lists == lists + 1, "a LIST after the change")
    finally:
        task.cancel()


async def test_the_echo_of_our_own_patch_causes_no_list() -> None:
    kube, edge = FakeKube(), FakeEdge()
    kube.pods["a"] = pod("a")
    vk, task = await running(kube, edge)
    try:
        await until(lambda: "a" in edge.created and "a" not in vk._creating, "pod a created")
        lists = kube.lists
        await kube.events.put(("MODIFIED", dict(kube.pods["a"])))  # what we patched
        kube.pods["b"] = pod("b")
        await kube.events.put(("ADDED", pod("b")))  # then something that wakes the loop
        await until(lambda: "b" in edge.created and "b" not in vk._creating, "pod b created")
        assert kube.lists == lists
    finally:
        task.cancel()


async def test_a_pod_deleted_before_the_loop_took_it_is_not_submitted() -> None:
    kube, edge = FakeKube(), FakeEdge()
    vk, task = await running(kube, edge)
    try:
        vk._list_spacing = 0.3  # hold the loop in its spacing wait while both events arrive
        vk._listed_at = asyncio.get_running_loop().time()
        await kube.events.put(("ADDED", pod("a")))
        await kube.events.put(("DELETED", pod("a")))
        kube.pods["c"] = pod("c")
        await kube.events.put(("ADDED", pod("c")))
        await until(lambda: "c" in edge.created, "pod c created")
        assert "a" not in edge.created
    finally:
        task.cancel()


def test_the_pending_cycle_leaves_long_queued_pods_to_the_full_cycle() -> None:
    config = VKConfig(node_name="vn", edge={"url": "http://edge", "token": "t"})
    assert config.pending_status_seconds == 120
    vk = PodController(FakeKube(), config, FakeEdge(), VKMetrics())  # type: ignore[arg-type]
    for uid, created in (("new", "2999-01-01T00:00:00Z"), ("queued", "2026-01-01T00:00:00Z")):
        p = pod(uid)
        p["metadata"]["creationTimestamp"] = created
        p["metadata"]["annotations"] = {"interlink.eu/job-id": f"job-{uid}"}
        vk._pods[uid] = p
    assert [p["metadata"]["uid"] for p in vk.pending()] == ["new"]
    assert {p["metadata"]["uid"] for p in vk.tracked()} == {"new", "queued"}
