"""How the VK's pod loop holds and picks up the node's pods, as an informer: one LIST (in pages)
at the start, then the watch alone; a new LIST only when the watch cannot be resumed (fakes for
Kubernetes and the edge)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import interlink_vk.pods as pods_module
from interlink_core.errors import BackendUnavailable
from interlink_core.models import CreateStruct, PodCreateRequests
from interlink_vk.config import VKConfig
from interlink_vk.held import Held, batches, encoded
from interlink_vk.kube import WatchExpired
from interlink_vk.metrics import VKMetrics
from interlink_vk.pods import PodController

JSON = dict[str, Any]
END = ("END", {})  # the fake server ends the watch
EXPIRED = ("EXPIRED", {})  # the fake server answers 410 Gone


def pod(uid: str, rv: str = "1", **meta: Any) -> JSON:
    return {
        "metadata": {
            "name": f"p-{uid}",
            "namespace": "n",
            "uid": uid,
            "resourceVersion": rv,
            **meta,
        },
        "spec": {"nodeName": "vn", "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Pending"},
    }


class FakeKube:
    """The node's pods, listed in pages of two; a watch fed by the test; what was asked."""

    def __init__(self) -> None:
        self.pods: dict[str, JSON] = {}
        self.lists = 0
        self.pages = 0
        self.watched_from: list[str] = []
        self.events: asyncio.Queue[tuple[str, JSON]] = asyncio.Queue()
        self.deleted_at_edge: list[str] = []

    async def pages_of_pods_on_node(self, node: str) -> AsyncIterator[tuple[list[JSON], str]]:
        self.lists += 1
        items = [json.loads(json.dumps(p)) for p in self.pods.values()]
        for i in range(0, max(len(items), 1), 2):
            self.pages += 1
            yield items[i : i + 2], f"list-{self.lists}"

    async def watch_pods_on_node(self, node: str, version: str) -> AsyncIterator[tuple[str, JSON]]:
        self.watched_from.append(version)
        while True:
            event = await self.events.get()
            if event is END:
                return
            if event is EXPIRED:
                raise WatchExpired("too old resource version")
            if event[0] == "RAISE":
                raise event[1]["error"]
            yield event

    async def patch_pod(self, p: JSON, patch: JSON, status: bool = False) -> JSON:
        stored = self.pods[p["metadata"]["uid"]]
        stored["metadata"] = {
            **stored["metadata"],
            "annotations": patch.get("metadata", {}).get("annotations", {}),
            "resourceVersion": str(int(stored["metadata"]["resourceVersion"]) + 1),
        }
        return json.loads(json.dumps(stored))

    async def event(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def get(self, kind: str, ns: str, name: str) -> JSON | None:
        return None

    async def list_owed(self, *args: Any) -> list[JSON]:
        return []


class FakeEdge:
    def __init__(self) -> None:
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.down = False

    async def create(self, request: PodCreateRequests) -> CreateStruct:
        uid = request.pod["metadata"]["uid"]
        self.created.append(uid)
        if self.down:
            raise BackendUnavailable("edge down")
        return CreateStruct(PodUID=uid, PodJID=f"job-{uid}")

    async def delete(self, p: JSON) -> None:
        self.deleted.append(p["metadata"]["uid"])

    async def status(self, pods: bytes) -> list[Any]:
        return []


async def until(cond: Any, what: str) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def running(
    kube: FakeKube, edge: FakeEdge, **settings: Any
) -> tuple[PodController, asyncio.Task[None]]:
    config = VKConfig(node_name="vn", edge={"url": "http://edge", "token": "t"}, **settings)
    vk = PodController(kube, config, edge, VKMetrics())  # type: ignore[arg-type]
    vk.owed.load = vk.owed.save = _nothing  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(vk.run(stop))
    await until(lambda: vk.listed.is_set(), "the first LIST")
    return vk, task


async def _nothing() -> None:
    pass


async def test_the_first_list_is_read_in_pages_and_the_watch_starts_from_it() -> None:
    kube, edge = FakeKube(), FakeEdge()
    for uid in "abcde":
        kube.pods[uid] = pod(uid)
    _vk, task = await running(kube, edge)
    try:
        await until(lambda: sorted(edge.created) == list("abcde"), "the five creates")
        assert kube.pages == 3  # 2 + 2 + 1
        assert kube.watched_from == ["list-1"]
    finally:
        task.cancel()


async def test_a_new_pod_is_submitted_from_its_watch_event_without_a_list() -> None:
    kube, edge = FakeKube(), FakeEdge()
    vk, task = await running(kube, edge)
    try:
        kube.pods["a"] = pod("a")
        await kube.events.put(("ADDED", pod("a")))
        await until(lambda: edge.created == ["a"], "the create of pod a")
        await until(lambda: "a" not in vk._creating, "the create to finish")
        assert kube.lists == 1  # only the first one
        assert vk._pods["a"].job == "job-a"
    finally:
        task.cancel()


async def test_a_change_to_a_known_pod_is_taken_from_the_watch_without_a_list() -> None:
    kube, edge = FakeKube(), FakeEdge()
    kube.pods["a"] = pod("a")
    vk, task = await running(kube, edge)
    try:
        await until(lambda: "a" in edge.created and "a" not in vk._creating, "pod a created")
        changed = pod("a", rv="9", annotations={"interlink.eu/job-id": "job-a"})
        changed["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
        kube.pods["a"] = changed
        await kube.events.put(("MODIFIED", changed))
        await until(lambda: edge.deleted == ["a"], "the delete at the edge")
        assert kube.lists == 1
    finally:
        task.cancel()


async def test_a_watch_event_older_than_our_patch_does_not_replace_it() -> None:
    kube, edge = FakeKube(), FakeEdge()
    kube.pods["a"] = pod("a", rv="5")
    vk, task = await running(kube, edge)
    try:
        await until(lambda: "a" in edge.created and "a" not in vk._creating, "pod a created")
        assert vk._pods["a"].version == "6"  # the answer of the job-id patch
        await kube.events.put(("MODIFIED", pod("a", rv="5")))  # left before the patch
        await kube.events.put(("MODIFIED", pod("a", rv="6")))  # the patch's echo
        await until(lambda: kube.events.empty(), "the events taken")
        await asyncio.sleep(0.05)
        assert vk._pods["a"].job == "job-a"
        assert edge.created == ["a"]  # not submitted again
    finally:
        task.cancel()


async def test_a_pod_deleted_before_the_loop_took_it_is_not_submitted() -> None:
    kube, edge = FakeKube(), FakeEdge()
    _vk, task = await running(kube, edge)
    try:
        # both events are taken before the loop runs again
        kube.events.put_nowait(("ADDED", pod("a")))
        kube.events.put_nowait(("DELETED", pod("a")))
        kube.pods["c"] = pod("c")
        kube.events.put_nowait(("ADDED", pod("c")))
        await until(lambda: "c" in edge.created, "pod c created")
        assert "a" not in edge.created
    finally:
        task.cancel()


async def test_the_watch_resumes_from_the_last_version_and_lists_only_when_expired() -> None:
    kube, edge = FakeKube(), FakeEdge()
    kube.pods["a"] = pod("a")
    kube.pods["b"] = pod("b")
    vk, task = await running(kube, edge)
    try:
        await until(lambda: len(edge.created) == 2 and not vk._creating, "a and b created")
        await kube.events.put(("BOOKMARK", {"metadata": {"resourceVersion": "77"}}))
        await kube.events.put(END)
        await until(lambda: kube.watched_from == ["list-1", "77"], "the watch resumed at 77")
        assert kube.lists == 1
        # b went while nobody watched; the server cannot resume: LIST, and b is owed a delete
        del kube.pods["b"]
        await kube.events.put(EXPIRED)
        await until(lambda: kube.lists == 2, "a new LIST")
        assert set(vk._pods) == {"a"}
        await until(lambda: edge.deleted == ["b"], "the delete owed to b")
    finally:
        task.cancel()


async def test_a_create_the_edge_could_not_take_waits_for_the_full_cycle() -> None:
    kube, edge = FakeKube(), FakeEdge()
    edge.down = True
    vk, task = await running(kube, edge, status_interval_seconds=0.5)
    try:
        kube.pods["a"] = pod("a")
        await kube.events.put(("ADDED", pod("a")))
        await until(lambda: edge.created == ["a"], "the first try")
        for i in range(5):  # wake the loop: no new try of a before the full cycle
            kube.pods[f"x{i}"] = pod(f"x{i}")
            await kube.events.put(("ADDED", pod(f"x{i}")))
        await until(lambda: len(edge.created) == 6, "the other pods tried")
        assert edge.created.count("a") == 1
        edge.down = False
        await until(lambda: vk._pods["a"].job == "job-a", "a submitted at the full cycle")
    finally:
        task.cancel()


def test_held_pods_drop_managed_fields_and_are_sent_as_they_are_when_full() -> None:
    p = pod("a", managedFields=[{"manager": "kubectl"}])
    held = Held.of(p)
    assert "managedFields" not in held.pod()["metadata"]
    assert json.loads(encoded([held, Held.of(pod("b"))], full=True)) == [pod("a"), pod("b")]


def test_a_status_call_sends_slim_pods_by_default() -> None:
    last_applied = {"kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * 2000 + "}"}
    p = pod(
        "a", annotations={"interlink.eu/job-id": "7", **last_applied}, labels={"app": "x" * 500}
    )
    p["spec"]["initContainers"] = [{"name": "init", "image": "alpine", "command": ["true"]}]
    p["spec"]["volumes"] = [{"name": "v", "emptyDir": {}}]
    p["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    assert json.loads(encoded([Held.of(p)])) == [
        {
            "metadata": {
                "name": "p-a",
                "namespace": "n",
                "uid": "a",
                "resourceVersion": "1",
                "annotations": {"interlink.eu/job-id": "7"},
            },
            "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending"},
        }
    ]


def test_the_pending_cycle_leaves_long_queued_pods_to_the_full_cycle() -> None:
    config = VKConfig(node_name="vn", edge={"url": "http://edge", "token": "t"})
    assert config.pending_status_seconds == 120
    vk = PodController(FakeKube(), config, FakeEdge(), VKMetrics())  # type: ignore[arg-type]
    for uid, created in (("new", "2999-01-01T00:00:00Z"), ("queued", "2026-01-01T00:00:00Z")):
        p = pod(uid, creationTimestamp=created, annotations={"interlink.eu/job-id": f"job-{uid}"})
        vk._pods[uid] = Held.of(p)
    assert [h.uid for h in vk.pending()] == ["new"]
    assert {h.uid for h in vk.tracked()} == {"new", "queued"}


def held_of_size(uid: str, size: int) -> Held:
    raw = b"x" * size
    return Held(uid, "n", uid, "1", "Running", f"job-{uid}", False, 0.0, "", raw, raw)


def test_status_batches_are_the_fewest_under_the_byte_limit() -> None:
    a, b, c = (held_of_size(u, 99) for u in "abc")
    # [a,b] is 1 + 99 + 1 + 99 + 1 = 201 bytes; [a] 101
    assert batches([a, b, c], 203) == [[a, b], [c]]
    assert batches([a, b, c], 200) == [[a], [b], [c]]
    assert batches([held_of_size("big", 500), a], 200) == [[held_of_size("big", 500)], [a]]
    assert len(encoded([a, b])) == 201


async def test_a_status_cycle_past_the_byte_limit_takes_more_calls_not_fewer_pods() -> None:
    sent: list[list[str]] = []

    class CountingEdge(FakeEdge):
        async def status(self, pods: bytes) -> list[Any]:
            sent.append([p["metadata"]["uid"] for p in json.loads(pods)])
            return []

    config = VKConfig(
        node_name="vn", edge={"url": "http://edge", "token": "t"}, status_call_max_bytes=65536
    )
    vk = PodController(FakeKube(), config, CountingEdge(), VKMetrics())  # type: ignore[arg-type]
    pods = [Held.of(pod(f"{i:03d}", annotations={"pad": "x" * 1000})) for i in range(100)]
    await vk.sync_status(pods, "full")
    assert len(sent) == 2  # ~110 KB of pods, 64 KB at most a call
    assert [u for call in sent for u in call] == [f"{i:03d}" for i in range(100)]


async def test_ten_thousand_typical_pods_are_one_status_call() -> None:
    """The issue's bar: one /status call per cycle at 10,000 pods (a bench pod's spec: a
    token volume, resources, env), under the default 8 MiB."""
    sent: list[int] = []

    class CountingEdge(FakeEdge):
        async def status(self, pods: bytes) -> list[Any]:
            sent.append(len(json.loads(pods)))
            return []

    config = VKConfig(node_name="vn", edge={"url": "http://edge", "token": "t"})
    vk = PodController(FakeKube(), config, CountingEdge(), VKMetrics())  # type: ignore[arg-type]
    pods = []
    for i in range(10_000):
        p = pod(f"{i:05d}-0000-4000-8000-000000000000", annotations={"interlink.eu/job-id": "1"})
        p["metadata"]["name"] = f"bench-{i:05d}"
        p["spec"]["containers"][0].update(
            resources={"requests": {"cpu": "1", "memory": "64Mi"}},
            env=[{"name": f"E{k}", "value": "v" * 40} for k in range(10)],
            volumeMounts=[{"name": "kube-api-access", "mountPath": "/var/run/secrets/x"}],
        )
        pods.append(Held.of(p))
    assert sum(len(h.raw) for h in pods) > 8 * 1024 * 1024  # whole pods would not fit
    await vk.sync_status(pods, "full")
    assert sent == [10_000]


async def test_a_pod_gone_while_its_delete_fails_at_the_edge_is_owed_not_lost() -> None:
    """An ended pod is deleted: the watch brings its deletionTimestamp (the VK starts the edge
    delete) and its DELETED a moment later, while the edge is down."""
    gate = asyncio.Event()

    class DownEdge(FakeEdge):
        async def delete(self, p: JSON) -> None:
            self.deleted.append(p["metadata"]["uid"])
            await gate.wait()
            raise BackendUnavailable("edge down")

    kube, edge = FakeKube(), DownEdge()
    done = pod("a", rv="5", annotations={"interlink.eu/job-id": "job-a"})
    done["status"]["phase"] = "Succeeded"
    kube.pods["a"] = done
    vk, task = await running(kube, edge)
    try:
        going = json.loads(json.dumps(done))
        going["metadata"].update(resourceVersion="6", deletionTimestamp="2026-12-01T00:00:00Z")
        await kube.events.put(("MODIFIED", going))
        await until(lambda: edge.deleted == ["a"], "the edge delete started")
        await kube.events.put(("DELETED", going))
        await until(lambda: "a" not in vk._pods, "the pod gone")
        gate.set()
        await until(lambda: [o.uid for o in vk.owed.owed.values()] == ["a"], "the delete owed")
    finally:
        task.cancel()


async def test_a_watch_that_keeps_failing_is_replaced_by_a_new_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pods_module, "WATCH_RETRY_SECONDS", 0.01)
    kube, edge = FakeKube(), FakeEdge()
    broken = RuntimeError("connection reset")
    _vk, task = await running(kube, edge)
    try:
        for _ in range(2):
            await kube.events.put(("RAISE", {"error": broken}))
        await until(lambda: len(kube.watched_from) == 3, "two failed watches resumed")
        assert kube.lists == 1 and kube.watched_from == ["list-1"] * 3
        await kube.events.put(("RAISE", {"error": broken}))  # the third in a row
        await until(lambda: kube.lists == 2, "a new LIST")
    finally:
        task.cancel()
