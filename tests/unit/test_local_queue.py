"""The local plugin's queue (``max_running``), with the runner launch replaced by a fake: which
pods start, in which order, what a queued pod's status says, and that a slot comes back when a
pod ends or is deleted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from interlink_core.models import PodStatus, RetrievedPodData
from interlink_core.store import JobRecord
from interlink_plugins.local.plugin import LocalConfig, LocalPlugin


class FakeRunners:
    """Launches that start nothing: each gets the next fake pid, alive until ``end``."""

    def __init__(self) -> None:
        self.started: list[str] = []  # pod directory names (uids), in launch order
        self.alive: set[int] = set()
        self.pids: dict[str, int] = {}

    def launch(self, pod_dir: Path) -> int:
        pid = 100_000 + len(self.started)
        self.started.append(pod_dir.name)
        self.alive.add(pid)
        self.pids[pod_dir.name] = pid
        return pid

    def is_alive(self, record: JobRecord) -> bool:
        return int(record.data.get("pid", 0)) in self.alive

    def end(self, plugin: LocalPlugin, uid: str) -> None:
        """The runner of ``uid`` finished: it wrote ``runner.done`` and exited."""
        self.alive.discard(self.pids[uid])
        (plugin.settings.pods_path / uid / "runner.done").write_text(json.dumps({"at": 1.0}))


@pytest.fixture
def runners() -> FakeRunners:
    return FakeRunners()


def make_plugin(tmp_path: Path, runners: FakeRunners, **settings: Any) -> LocalPlugin:
    plugin = LocalPlugin(LocalConfig(state_dir=tmp_path, **settings))
    plugin._launch = runners.launch  # type: ignore[method-assign]
    plugin._alive = runners.is_alive  # type: ignore[method-assign]
    return plugin


async def create(plugin: LocalPlugin, uid: str) -> str:
    """What the SDK does for a create: submit, then record; the job id."""
    pod = {
        "metadata": {"name": f"p-{uid}", "namespace": "ns", "uid": uid},
        "spec": {"containers": [{"name": "c", "image": "x", "command": ["sleep", "60"]}]},
    }
    data = RetrievedPodData.model_validate({"pod": pod, "container": [{"name": "c"}]})
    done = await plugin.submit(data)
    plugin.store.put(
        JobRecord(uid=uid, namespace="ns", name=f"p-{uid}", job_id=done.job_id, data=done.data)
    )
    return done.job_id


async def poll(plugin: LocalPlugin, *uids: str) -> dict[str, PodStatus]:
    records = [r for r in (plugin.store.get(u) for u in uids) if r is not None]
    return {s.UID: s for s in await plugin.poll(records)}


def waiting_reason(status: PodStatus) -> str | None:
    state = status.containers[0]["state"]
    return state.get("waiting", {}).get("reason")


async def test_pods_beyond_max_running_wait_queued_and_start_in_order(
    tmp_path: Path, runners: FakeRunners
) -> None:
    plugin = make_plugin(tmp_path, runners, max_running=2)
    await plugin.start()
    jobs = [await create(plugin, uid) for uid in ("a", "b", "c", "d")]
    assert runners.started == ["a", "b"]
    assert jobs[0] == "local-100000" and jobs[1] == "local-100001"
    assert jobs[2] == "local-q-c" and jobs[3] == "local-q-d"
    st = await poll(plugin, "a", "b", "c", "d")
    assert waiting_reason(st["a"]) == "ContainerCreating"
    assert waiting_reason(st["c"]) == "Queued: MaxRunning"
    assert st["c"].containers[0]["state"]["waiting"]["message"] == (
        "waiting for a free slot: this node runs max_running=2 pods at once"
    )
    assert st["c"].podIP is None
    assert st["c"].JID == "local-q-c"

    runners.end(plugin, "b")
    await poll(plugin, "a", "b", "c", "d")  # the poll that sees b end starts c, not d
    assert runners.started == ["a", "b", "c"]
    st = await poll(plugin, "c", "d")
    assert waiting_reason(st["c"]) == "ContainerCreating"
    assert st["c"].JID == "local-q-c"  # the job id a queued pod got stays its job id
    assert waiting_reason(st["d"]) == "Queued: MaxRunning"


async def test_deleting_a_queued_pod_removes_it_and_deleting_a_running_one_frees_a_slot(
    tmp_path: Path, runners: FakeRunners
) -> None:
    plugin = make_plugin(tmp_path, runners, max_running=1)
    await plugin.start()
    for uid in ("a", "b", "c"):
        await create(plugin, uid)
    record_b = plugin.store.get("b")
    assert record_b is not None
    await plugin.cancel(record_b, {"metadata": {"name": "p-b", "namespace": "ns", "uid": "b"}})
    plugin.store.remove("b")
    assert not (tmp_path / "pods" / "b").exists()
    assert runners.started == ["a"]

    record_a = plugin.store.get("a")
    assert record_a is not None
    runners.alive.discard(runners.pids["a"])  # its runner ends on SIGTERM
    await plugin.cancel(record_a, {"metadata": {"name": "p-a", "namespace": "ns", "uid": "a"}})
    assert runners.started == ["a", "c"]  # b was deleted: c is next


async def test_max_pods_bounds_the_pods_accepted_running_and_queued(
    tmp_path: Path, runners: FakeRunners
) -> None:
    plugin = make_plugin(tmp_path, runners, max_running=1, max_pods=2)
    await plugin.start()
    await create(plugin, "a")
    await create(plugin, "b")
    with pytest.raises(Exception, match="max_pods=2"):
        await create(plugin, "c")


async def test_a_restarted_plugin_keeps_its_queue(tmp_path: Path, runners: FakeRunners) -> None:
    plugin = make_plugin(tmp_path, runners, max_running=1)
    await plugin.start()
    for uid in ("a", "b", "c"):
        await create(plugin, uid)
    plugin.store.close()
    runners.end(plugin, "a")  # a ended while the plugin was down

    again = make_plugin(tmp_path, runners, max_running=1)
    await again.start()  # a's slot is free again: the oldest queued pod starts
    assert runners.started == ["a", "b"]
    st = await poll(again, "c")
    assert waiting_reason(st["c"]) == "Queued: MaxRunning"


def test_max_running_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="max_running"):
        LocalConfig(max_running=0)
