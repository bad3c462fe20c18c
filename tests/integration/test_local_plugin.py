"""The ``local`` plugin served for real (``interlink plugin local`` as a subprocess on a unix
socket), driven over HTTP: lifecycle, logs, deletion, restart safety, pod IPs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from interlink_plugins.local.plugin import find_pod_processes
from interlink_plugins.local.runner import ORPHAN_CHECK
from tests.helpers.world import plugin_client, start_plugin, stop

JSONd = dict[str, Any]


@dataclass
class Plugin:
    client: httpx.AsyncClient
    tmp: Path
    state: Path
    proc: Any

    @property
    def pods_dir(self) -> Path:
        return self.state / "pods"


def _kill_leftovers(pods_dir: Path) -> None:
    """Kill every runner and container process the plugin started under ``pods_dir``."""
    if not pods_dir.exists():
        return
    dirs = {str(d) for d in pods_dir.iterdir()}
    for d in dirs:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((Path(d) / "runner.pid").read_text()), signal.SIGKILL)
    for pid in find_pod_processes(dirs):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
async def make_plugin(tmp_path: Path) -> AsyncIterator[Callable[..., Plugin]]:
    started: list[Plugin] = []

    def make(config: JSONd | None = None) -> Plugin:
        svc = start_plugin(tmp_path, "local", config=config)
        p = Plugin(plugin_client(svc.socket), tmp_path, tmp_path / "state", svc.proc)
        started.append(p)
        return p

    yield make
    for p in started:
        await p.client.aclose()
        stop(p.proc)
    _kill_leftovers(tmp_path / "state" / "pods")


@pytest.fixture
async def plugin(make_plugin: Callable[..., Plugin]) -> Plugin:
    return make_plugin()


def make_pod(
    uid: str,
    containers: list[JSONd],
    init: list[JSONd] | None = None,
    volumes: list[JSONd] | None = None,
    grace: int | None = None,
) -> JSONd:
    spec: JSONd = {"containers": containers, "volumes": volumes or []}
    if init:
        spec["initContainers"] = init
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"metadata": {"name": f"pod-{uid}", "namespace": "default", "uid": uid}, "spec": spec}


def sh(name: str, script: str, **extra: Any) -> JSONd:
    return {"name": name, "image": "none", "command": ["sh", "-c", script], **extra}


def wait_file(path: Path) -> str:
    """Shell that waits until ``path`` exists (exit 3 after 30 s): a container that goes on
    only when the test says so."""
    return f"i=0; while [ ! -e {path} ]; do i=$((i+1)); [ $i -gt 600 ] && exit 3; sleep 0.05; done"


async def create(p: Plugin, pod: JSONd, **extra: Any) -> JSONd:
    entries = [
        {"name": c["name"], **extra}
        for c in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]
    ]
    r = await p.client.post("/create", json={"pod": pod, "container": entries})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def status(p: Plugin, pod: JSONd) -> JSONd:
    r = await p.client.request("GET", "/status", json=[pod])
    assert r.status_code == 200, r.text
    [st] = r.json()
    return dict(st)


def state_of(st: JSONd, name: str, kind: str = "containers") -> JSONd:
    [c] = [c for c in st[kind] if c["name"] == name]
    return dict(c["state"])


async def wait_for(
    p: Plugin, pod: JSONd, check: Callable[[JSONd], bool], timeout: float = 8.0
) -> JSONd:
    deadline = time.monotonic() + timeout
    while True:
        st = await status(p, pod)
        if check(st):
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached; last status: {json.dumps(st)}")
        await asyncio.sleep(0.05)


def terminated(name: str, kind: str = "containers") -> Callable[[JSONd], bool]:
    return lambda st: "terminated" in state_of(st, name, kind)


def running(name: str) -> Callable[[JSONd], bool]:
    return lambda st: "running" in state_of(st, name)


async def logs(p: Plugin, pod: JSONd, container: str, **opts: Any) -> httpx.Response:
    meta = pod["metadata"]
    body = {
        "Namespace": meta["namespace"],
        "PodUID": meta["uid"],
        "PodName": meta["name"],
        "ContainerName": container,
        "Opts": opts,
    }
    return await p.client.request("GET", "/getLogs", json=body)


async def delete(p: Plugin, pod: JSONd) -> float:
    t0 = time.monotonic()
    r = await p.client.post("/delete", json=pod)
    assert r.status_code == 200, r.text
    return time.monotonic() - t0


# --- tests ------------------------------------------------------------------------------------


async def test_lifecycle_pending_running_succeeded(plugin: Plugin) -> None:
    pod = make_pod("life-1", [sh("main", "echo start; sleep 0.8; echo end")])
    answer = await create(plugin, pod)
    assert answer["PodUID"] == "life-1"
    assert answer["PodJID"].startswith("local-")
    first = await status(plugin, pod)
    assert first["JID"] == answer["PodJID"]
    assert list(state_of(first, "main")) in (["waiting"], ["running"])
    st = await wait_for(plugin, pod, running("main"))
    c = st["containers"][0]
    assert c["ready"] and c["started"] and c["restartCount"] == 0 and c["image"] == "none"
    st = await wait_for(plugin, pod, terminated("main"))
    term = state_of(st, "main")["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert term["startedAt"] <= term["finishedAt"]
    assert (await logs(plugin, pod, "main")).text == "start\nend\n"
    await delete(plugin, pod)
    assert not (plugin.pods_dir / "life-1").exists()
    r = await plugin.client.request("GET", "/status", json=[pod])
    assert r.json() == []


async def test_failing_container_exit_code(plugin: Plugin) -> None:
    pod = make_pod("fail-1", [sh("main", "echo oops >&2; exit 3")])
    await create(plugin, pod)
    st = await wait_for(plugin, pod, terminated("main"))
    term = state_of(st, "main")["terminated"]
    assert (term["exitCode"], term["reason"]) == (3, "Error")
    assert (await logs(plugin, pod, "main")).text == "oops\n"


async def test_missing_executable_is_a_start_error(plugin: Plugin) -> None:
    pod = make_pod("nocmd-1", [{"name": "main", "command": ["/no/such/binary"]}])
    await create(plugin, pod)
    st = await wait_for(plugin, pod, terminated("main"))
    term = state_of(st, "main")["terminated"]
    assert (term["exitCode"], term["reason"]) == (128, "StartError")
    assert "/no/such/binary" in term["message"]


async def test_init_containers_run_in_order_before_containers(plugin: Plugin) -> None:
    mount = [{"name": "work", "mountPath": "/work"}]
    pod = make_pod(
        "init-1",
        [sh("main", "cat /work/order", volumeMounts=mount)],
        init=[
            sh("first", "sleep 0.3; echo 1 >> /work/order", volumeMounts=mount),
            sh("second", "echo 2 >> /work/order", volumeMounts=mount),
        ],
        volumes=[{"name": "work", "emptyDir": {}}],
    )
    await create(plugin, pod)
    early = await status(plugin, pod)
    assert state_of(early, "main") == {"waiting": {"reason": "PodInitializing"}}
    st = await wait_for(plugin, pod, terminated("main"))
    assert [c["name"] for c in st["initContainers"]] == ["first", "second"]
    for name in ("first", "second"):
        assert state_of(st, name, "initContainers")["terminated"]["exitCode"] == 0
    assert (await logs(plugin, pod, "main")).text == "1\n2\n"
    assert (await logs(plugin, pod, "first")).text == ""


async def test_failing_init_container_stops_the_pod(plugin: Plugin) -> None:
    pod = make_pod(
        "init-2",
        [sh("main", "echo should not run")],
        init=[sh("bad", "echo broken; exit 2"), sh("never", "echo never")],
    )
    await create(plugin, pod)
    await wait_for(plugin, pod, terminated("bad", "initContainers"))
    await runner_ended(plugin.pods_dir / "init-2")  # nothing can start any more
    st = await status(plugin, pod)
    assert state_of(st, "bad", "initContainers")["terminated"]["exitCode"] == 2
    assert "waiting" in state_of(st, "never", "initContainers")
    waiting = state_of(st, "main")["waiting"]
    assert waiting["reason"] == "PodInitializing"
    assert "'bad' failed with exit code 2" in waiting["message"]
    assert not (plugin.pods_dir / "init-2" / "containers" / "never").exists()
    assert (await logs(plugin, pod, "main")).text == ""


async def test_containers_run_in_parallel(plugin: Plugin) -> None:
    pod = make_pod("par-1", [sh("a", "sleep 1; echo a"), sh("b", "sleep 1; echo b")])
    await create(plugin, pod)
    # both are running at the same moment: they were started together, not one after the other
    await wait_for(plugin, pod, lambda st: all("running" in c["state"] for c in st["containers"]))
    await wait_for(
        plugin, pod, lambda st: all("terminated" in c["state"] for c in st["containers"])
    )
    assert (await logs(plugin, pod, "a")).text == "a\n"
    assert (await logs(plugin, pod, "b")).text == "b\n"


async def test_env_and_volumes_are_visible_to_the_process(plugin: Plugin) -> None:
    cm = {"metadata": {"name": "cfg"}, "data": {"key": "from-configmap"}}
    secret = {"metadata": {"name": "sec"}, "data": {"password": "aHVudGVyMg=="}}
    container = sh(
        "main",
        "cat /etc/cfg/key; echo; cat /etc/sec/pw; echo; echo $FOO; echo $CFG_FILE; "
        'echo "$POD_IP"; test -d "$INTERLINK_POD_DIR" && echo poddir; pwd',
        env=[
            {"name": "FOO", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
            {"name": "CFG_FILE", "value": "/etc/cfg/key"},
        ],
        volumeMounts=[
            {"name": "cfg", "mountPath": "/etc/cfg"},
            {"name": "sec", "mountPath": "/etc/sec", "readOnly": True},
        ],
        workingDir="/etc/cfg",
    )
    pod = make_pod(
        "env-1",
        [container],
        volumes=[
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {
                "name": "sec",
                "secret": {"secretName": "sec", "items": [{"key": "password", "path": "pw"}]},
            },
        ],
    )
    await create(plugin, pod, configMaps=[cm], secrets=[secret])
    st = await wait_for(plugin, pod, terminated("main"))
    assert state_of(st, "main")["terminated"]["exitCode"] == 0
    lines = (await logs(plugin, pod, "main")).text.splitlines()
    pod_dir = plugin.pods_dir / "env-1"
    assert lines == [
        "from-configmap",
        "hunter2",
        "hunter2",
        str(pod_dir / "volumes" / "cfg" / "key"),
        st["podIP"],
        "poddir",
        str(pod_dir / "volumes" / "cfg"),
    ]


async def test_log_options(plugin: Plugin) -> None:
    pod = make_pod(
        "logs-1", [sh("main", "echo 1; echo 2; echo 3; echo err >&2; sleep 0.3; echo late")]
    )
    await create(plugin, pod)
    await wait_for(plugin, pod, terminated("main"))
    assert (await logs(plugin, pod, "main")).text == "1\n2\n3\nerr\nlate\n"
    assert (await logs(plugin, pod, "main", Tail=2)).text == "err\nlate\n"
    assert (await logs(plugin, pod, "main", LimitBytes=4)).text == "1\n2\n"
    stamped = (await logs(plugin, pod, "main", Timestamps=True)).text.splitlines()
    assert len(stamped) == 5
    stamp, _, text = stamped[-1].partition(" ")
    assert text == "late" and stamp.endswith("Z") and stamp[4] == "-" and "T" in stamp
    since = (await logs(plugin, pod, "main", SinceTime=stamp)).text
    assert since == "late\n"
    assert (await logs(plugin, pod, "main", SinceSeconds=3600)).text == "1\n2\n3\nerr\nlate\n"
    r = await logs(plugin, pod, "nope")
    assert r.status_code == 404 and "nope" in r.json()["error"]
    r = await logs(plugin, pod, "main", Previous=True)
    assert r.status_code == 400 and "previous" in r.json()["error"]


async def test_follow_streams_until_the_container_ends(plugin: Plugin) -> None:
    """Each line reaches the follower while the container waits for the follower to have seen
    it (so it cannot have come at the end); the stream ends when the container does."""
    go = plugin.tmp / "follow-go"
    go.mkdir()
    script = f"echo one; {wait_file(go / '1')}; echo two; {wait_file(go / '2')}; echo three"
    pod = make_pod("follow-1", [sh("main", script)])
    await create(plugin, pod)
    await wait_for(plugin, pod, running("main"))
    meta = pod["metadata"]
    body = {
        "Namespace": "default",
        "PodUID": meta["uid"],
        "PodName": meta["name"],
        "ContainerName": "main",
        "Opts": {"Follow": True},
    }
    text = ""
    async with plugin.client.stream("GET", "/getLogs", json=body) as r:
        assert r.status_code == 200
        async for chunk in r.aiter_text():
            text += chunk
            for n, line in ((1, "one\n"), (2, "one\ntwo\n")):
                if text.startswith(line):
                    (go / str(n)).touch(exist_ok=True)
    assert text == "one\ntwo\nthree\n"
    st = await status(plugin, pod)
    assert state_of(st, "main")["terminated"]["exitCode"] == 0


async def runner_ended(pod_dir: Path, timeout: float = 30) -> None:
    """Wait until the pod's runner process is gone."""
    pid = int((pod_dir / "runner.pid").read_text())
    deadline = time.monotonic() + timeout
    while _alive(pid):
        assert time.monotonic() < deadline, f"runner {pid} still runs"
        await asyncio.sleep(0.05)


async def log_has(p: Plugin, pod: JSONd, line: str, timeout: float = 15) -> None:
    """Wait until the container's log has this line (e.g. a shell saying its trap is set)."""
    deadline = time.monotonic() + timeout
    while line not in (await logs(p, pod, "main")).text.splitlines():
        assert time.monotonic() < deadline, f"no line {line!r} in the log"
        await asyncio.sleep(0.05)


async def test_delete_sends_sigterm(make_plugin: Callable[..., Plugin]) -> None:
    p = make_plugin({"keep_pod_dirs": True})
    script = 'trap "echo got TERM; exit 0" TERM; echo ready; while true; do sleep 0.1; done'
    # a grace period far beyond the client's 30 s timeout: delete returns once the shell
    # ended on SIGTERM, not when the grace period is over
    pod = make_pod("term-1", [sh("main", script)], grace=600)
    await create(p, pod)
    await log_has(p, pod, "ready")  # the trap is set
    await delete(p, pod)
    cdir = p.pods_dir / "term-1" / "containers" / "main"
    assert json.loads((cdir / "exit").read_text())["exitCode"] == 0
    assert "got TERM" in (cdir / "0.log").read_text()
    assert find_pod_processes({str(p.pods_dir / "term-1")}) == []


async def test_delete_escalates_to_sigkill(make_plugin: Callable[..., Plugin]) -> None:
    p = make_plugin({"keep_pod_dirs": True})
    script = 'trap "echo got TERM" TERM; echo ready; while true; do sleep 0.1; done'
    pod = make_pod("kill-1", [sh("main", script)], grace=1)
    await create(p, pod)
    await log_has(p, pod, "ready")  # the trap is set
    await delete(p, pod)
    cdir = p.pods_dir / "kill-1" / "containers" / "main"
    info = json.loads((cdir / "exit").read_text())
    assert (info["exitCode"], info["reason"], info["signal"]) == (137, "Killed", 9)
    # SIGTERM first (the shell logged it and went on), SIGKILL once the grace period was over
    stamped = [line.split(" ", 3) for line in (cdir / "0.log").read_text().splitlines()]
    [term] = [stamp for stamp, _, _, text in stamped if text == "got TERM"]
    assert info["finishedAt"] - cri_time(term) >= 1 - 0.1  # 0.1: the shell's sleep
    assert find_pod_processes({str(p.pods_dir / "kill-1")}) == []


async def test_max_grace_seconds_caps_the_grace_period(make_plugin: Callable[..., Plugin]) -> None:
    p = make_plugin({"max_grace_seconds": 0.5, "keep_pod_dirs": True})
    script = 'trap "" TERM; echo ready; while true; do sleep 0.1; done'
    # 600 s asked for: the delete returns within the client's 30 s timeout only if capped
    pod = make_pod("cap-1", [sh("main", script)], grace=600)
    await create(p, pod)
    await log_has(p, pod, "ready")
    await delete(p, pod)
    info = json.loads((p.pods_dir / "cap-1" / "containers" / "main" / "exit").read_text())
    assert (info["exitCode"], info["signal"]) == (137, 9)


async def test_host_paths_outside_the_sites_prefixes_are_refused(
    make_plugin: Callable[..., Plugin], tmp_path: Path
) -> None:
    """Without host_path_prefixes no hostPath is mounted; with one, only paths below it."""
    shared = tmp_path / "shared"
    for config, path, allowed in (
        (None, str(shared), "none"),
        ({"host_path_prefixes": [str(shared)]}, "/etc", str(shared)),
    ):
        p = make_plugin(config)
        pod = make_pod("host-1", [sh("main", "cat /host/passwd")])
        pod["spec"]["volumes"] = [{"name": "h", "hostPath": {"path": path}}]
        pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "h", "mountPath": "/host"}]
        r = await p.client.post("/create", json={"pod": pod, "container": [{"name": "main"}]})
        assert r.status_code == 400, r.text
        assert r.json()["error"] == (
            f"spec.volumes[0].hostPath.path: {path!r} is not a host path this site shares with "
            f"pods (allowed prefixes: {allowed}); the site admin may add a prefix to "
            "host_path_prefixes"
        )
        assert not (p.pods_dir / "host-1").exists()
        await p.client.aclose()
        stop(p.proc)


async def test_create_is_idempotent(make_plugin: Callable[..., Plugin], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    plugin = make_plugin({"host_path_prefixes": [str(out)]})  # the hostPath below is allowed
    pod = make_pod(
        "idem-1",
        [
            sh(
                "main",
                "echo started >> /out/count; sleep 2",
                volumeMounts=[{"name": "o", "mountPath": "/out"}],
            )
        ],
        volumes=[{"name": "o", "hostPath": {"path": str(out)}}],
    )
    a, b = await asyncio.gather(create(plugin, pod), create(plugin, pod))
    c = await create(plugin, pod)
    assert a == b == c
    # a create starts its pod's runner before it answers: all there will ever be run now
    assert len(runners(plugin.pods_dir / "idem-1")) == 1
    await wait_for(plugin, pod, running("main"))
    assert (out / "count").read_text() == "started\n"
    assert [d.name for d in plugin.pods_dir.iterdir()] == ["idem-1"]


async def test_pods_survive_a_plugin_kill(make_plugin: Callable[..., Plugin]) -> None:
    p = make_plugin()
    go = p.tmp / "rs-go"  # the long pod goes on only when the test says so
    short = make_pod("rs-short", [sh("main", "echo quick")])
    long = make_pod("rs-long", [sh("main", f"echo a; {wait_file(go)}; echo b; exit 4")])
    sleeper = make_pod("rs-sleep", [sh("main", "echo zz; exec sleep 30")], grace=1)
    for pod in (short, long, sleeper):
        await create(p, pod)
    await wait_for(p, short, terminated("main"))
    await wait_for(p, long, running("main"))
    await wait_for(p, sleeper, running("main"))
    before = {pod["metadata"]["uid"]: await status(p, pod) for pod in (short, long, sleeper)}
    os.kill(p.proc.pid, signal.SIGKILL)
    p.proc.wait()
    await p.client.aclose()

    q = make_plugin()
    for pod in (short, long, sleeper):
        st = await status(q, pod)
        assert st["JID"] == before[pod["metadata"]["uid"]]["JID"]
        assert st["podIP"] == before[pod["metadata"]["uid"]]["podIP"]
    assert state_of(await status(q, short), "main")["terminated"]["exitCode"] == 0
    assert "running" in state_of(await status(q, long), "main")
    assert (await logs(q, long, "main")).text == "a\n"
    go.touch()
    st = await wait_for(q, long, terminated("main"))
    assert state_of(st, "main")["terminated"]["exitCode"] == 4
    assert (await logs(q, long, "main")).text == "a\nb\n"
    assert (await logs(q, short, "main")).text == "quick\n"
    await delete(q, sleeper)  # grace 1 s: within the client's timeout
    assert not (q.pods_dir / "rs-sleep").exists()
    assert find_pod_processes({str(q.pods_dir / "rs-sleep")}) == []


async def test_lost_runner_is_reported_and_cleaned_up(plugin: Plugin) -> None:
    pod = make_pod("lost-1", [sh("main", "exec sleep 30")])
    await create(plugin, pod)
    await wait_for(plugin, pod, running("main"))
    pod_dir = plugin.pods_dir / "lost-1"
    os.kill(int((pod_dir / "runner.pid").read_text()), signal.SIGKILL)
    st = await wait_for(plugin, pod, terminated("main"))
    term = state_of(st, "main")["terminated"]
    assert (term["exitCode"], term["reason"]) == (255, "Lost")
    assert find_pod_processes({str(pod_dir)}) != []  # the orphaned sleep
    await delete(plugin, pod)
    assert find_pod_processes({str(pod_dir)}) == []


async def test_each_pod_has_its_own_ip(plugin: Plugin) -> None:
    probe = (
        "import os, socket; s = socket.socket(); s.bind((os.environ['POD_IP'], 0)); "
        "print(os.environ['POD_IP'], s.getsockname()[0])"
    )
    pods = [
        make_pod(f"ip-{i}", [{"name": "main", "command": [sys.executable, "-c", probe]}])
        for i in range(3)
    ]
    for pod in pods:
        await create(plugin, pod)
    ips = []
    for pod in pods:
        st = await wait_for(plugin, pod, terminated("main"))
        assert state_of(st, "main")["terminated"]["exitCode"] == 0
        ip = st["podIP"]
        assert ip.startswith("127.1.")
        assert (await logs(plugin, pod, "main")).text == f"{ip} {ip}\n"
        ips.append(ip)
    assert len(set(ips)) == 3
    await delete(plugin, pods[0])
    again = make_pod("ip-new", [sh("main", "true")])
    await create(plugin, again)
    assert (await status(plugin, again))["podIP"] not in ips[1:]


async def test_bad_pods_are_refused_with_the_field(plugin: Plugin) -> None:
    cases = [
        (make_pod("bad-1", [{"name": "main", "image": "busybox"}]), "spec.containers[0].command"),
        (make_pod("bad/2", [sh("main", "true")]), "pod.metadata.uid"),
        (make_pod("bad-3", [sh("Main_X", "true")]), "spec.containers[0].name"),
        (make_pod("bad-4", [sh("a", "true"), sh("a", "true")]), "spec.containers[1].name"),
        (
            make_pod(
                "bad-5",
                [
                    sh(
                        "a",
                        "true",
                        volumeMounts=[{"name": "v", "mountPath": "/v", "subPath": "../x"}],
                    )
                ],
                volumes=[{"name": "v", "emptyDir": {}}],
            ),
            "spec.containers[0].volumeMounts[0].subPath",
        ),
        (
            make_pod("bad-6", [sh("a", "true", workingDir="/no/such/dir")]),
            "spec.containers[0].workingDir",
        ),
    ]
    for pod, field in cases:
        r = await plugin.client.post("/create", json={"pod": pod, "container": []})
        assert r.status_code == 400, r.text
        assert field in r.json()["error"]
    assert list(plugin.pods_dir.iterdir()) == []


async def test_ping_reports_capacity(make_plugin: Callable[..., Plugin]) -> None:
    p = make_plugin({"max_pods": 7})
    r = await p.client.request("GET", "/status", json=[])
    res = r.json()["resources"]
    assert res["pods"] == "7"
    assert int(res["cpu"]) == os.cpu_count()
    assert res["memory"].endswith(("Gi", "Mi"))


async def test_pod_whose_directory_is_wiped_is_stopped(plugin: Plugin) -> None:
    pod = make_pod("wiped-1", [sh("main", "echo ready; sleep 60")], grace=1)
    await create(plugin, pod)
    await wait_for(plugin, pod, running("main"))
    pod_dir = plugin.pods_dir / "wiped-1"
    runner = int((pod_dir / "runner.pid").read_text())
    shutil.rmtree(pod_dir)  # e.g. the plugin's state_dir removed while pods run
    deadline = time.monotonic() + ORPHAN_CHECK + 10
    while find_pod_processes({str(pod_dir)}) or _alive(runner):
        assert time.monotonic() < deadline, "the orphaned pod still runs"
        await asyncio.sleep(0.1)


def runners(pod_dir: Path) -> list[int]:
    """Pids of the runner processes of this pod directory (what ``ps`` shows)."""
    wanted = ["-m", "interlink_plugins.local.runner", str(pod_dir)]
    found = []
    for entry in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode().split("\0")[:-1]
        except (OSError, UnicodeDecodeError):
            continue
        if argv[-3:] == wanted and _alive(int(entry)):
            found.append(int(entry))
    return found


def cri_time(stamp: str) -> float:
    """Seconds since the epoch of a CRI log line's RFC3339 time."""
    main, _, frac = stamp.rstrip("Z").partition(".")
    t = datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return t + float(f"0.{frac or 0}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.split(")")[1].split()[0] != "Z"  # a zombie has ended


def queued(name: str) -> Callable[[JSONd], bool]:
    return lambda st: state_of(st, name).get("waiting", {}).get("reason") == "Queued: MaxRunning"


async def test_pods_beyond_max_running_wait_queued_and_start_when_one_ends(
    make_plugin: Callable[..., Plugin],
) -> None:
    p = make_plugin({"max_running": 1, "max_pods": 3})
    go = p.tmp / "q-go"
    first = make_pod("q-first", [sh("main", f"echo first; {wait_file(go)}")])
    gone = make_pod("q-gone", [sh("main", "echo never")])
    second = make_pod("q-second", [sh("main", "echo second")])
    for pod in (first, gone, second):
        await create(p, pod)
    await wait_for(p, first, running("main"))
    for pod in (gone, second):
        st = await status(p, pod)
        assert queued("main")(st), st
        assert st["JID"].startswith("local-q-")
        assert st.get("podIP") is None
    refused = await p.client.post("/create", json={"pod": make_pod("q-4", [sh("main", "true")])})
    assert refused.status_code == 503
    assert "max_pods=3" in refused.json()["error"]

    await delete(p, gone)  # a queued pod is deleted: it never runs
    assert not (p.pods_dir / "q-gone").exists()
    assert queued("main")(await status(p, second))
    go.touch()
    await wait_for(p, first, terminated("main"), timeout=30)
    st = await wait_for(p, second, terminated("main"), timeout=30)
    assert state_of(st, "main")["terminated"]["exitCode"] == 0
    assert (await logs(p, second, "main")).text == "second\n"
