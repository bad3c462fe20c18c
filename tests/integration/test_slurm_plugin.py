"""The SLURM plugin against the real SLURM of the test world (host runtime: no container
engine exists here): the plugin runs as its own process, tests use its HTTP routes on its unix
socket and look only at what SLURM's tools, the disk and the SLURM commands it ran show."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interlink_core.config import build_config
from interlink_core.models import RetrievedPodData
from interlink_plugins.slurm.plugin import SlurmPluginConfig
from interlink_plugins.slurm.scratch import split_records
from interlink_plugins.slurm.script import build_job
from tests.helpers.slurm import SlurmInfo
from tests.helpers.slurm_edge import (
    Edge,
    held_job_reports_reason_then_cancels,
    job_state,
    make_pod,
    slurm_edge,
    state,
)
from tests.helpers.world import start_plugin

pytestmark = pytest.mark.integration


@pytest.fixture
async def edge(slurm: SlurmInfo, tmp_path: Path) -> AsyncIterator[Edge]:
    config = {"work_dir": str(tmp_path / "jobs"), "runtime": "host"}
    async with slurm_edge(slurm, tmp_path, config) as running:
        yield running


async def test_pod_with_init_and_two_containers_runs_as_one_job(edge: Edge) -> None:
    pod = make_pod(
        [
            {"name": "a", "image": "none", "command": ["sh", "-c", "echo from-a; sleep 1"]},
            {
                "name": "b",
                "image": "none",
                "command": ["sh", "-c", "echo from-b $GREETING"],
                "env": [{"name": "GREETING", "value": "hello world"}],
            },
        ],
        init=[{"name": "setup", "image": "none", "command": ["sh", "-c", "echo init-done"]}],
    )
    job = await edge.create(pod)
    assert job.isdigit()
    assert edge.count("sbatch") == (1,)  # one job for the whole pod
    running = await edge.wait(pod, lambda s: "running" in state(s))
    assert running["JID"] == job
    assert state(running, kind="initContainers")["terminated"]["exitCode"] == 0
    done = await edge.wait(pod, lambda s: all("terminated" in c["state"] for c in s["containers"]))
    assert [c["state"]["terminated"]["exitCode"] for c in done["containers"]] == [0, 0]
    assert await edge.logs(pod, "setup") == "init-done\n"
    assert await edge.logs(pod, "a") == "from-a\n"
    assert await edge.logs(pod, "b") == "from-b hello world\n"
    stamped = await edge.logs(pod, "b", Timestamps=True)
    assert stamped.endswith("Z from-b hello world\n") and stamped.startswith("20")
    await edge.delete(pod)
    assert await edge.status(pod) == []


async def test_failures_map_to_exit_codes_and_init_failure_stops_the_pod(edge: Edge) -> None:
    failing = make_pod([{"name": "main", "image": "none", "command": ["sh", "-c", "exit 7"]}])
    bad_init = make_pod(
        [{"name": "main", "image": "none", "command": ["echo", "never"]}],
        init=[{"name": "setup", "image": "none", "command": ["false"]}],
    )
    await edge.create(failing)
    job = await edge.create(bad_init)
    s = await edge.wait(failing, lambda s: "terminated" in state(s))
    assert state(s)["terminated"]["exitCode"] == 7
    assert state(s)["terminated"]["reason"] == "Error"
    # once SLURM says the job ended, the container that never started says why
    s = await edge.ended(bad_init, job, lambda s: "not started" in str(state(s)))
    assert state(s, kind="initContainers")["terminated"]["exitCode"] == 1
    assert state(s)["waiting"] == {
        "reason": "PodInitializing",
        "message": "not started: init container 'setup' failed with exit code 1",
    }
    assert await edge.logs(bad_init, "main") == ""


async def test_held_job_is_queued_with_slurm_reason_then_cancelled(edge: Edge) -> None:
    await held_job_reports_reason_then_cancels(edge)


async def test_delete_cancels_a_running_job(edge: Edge) -> None:
    pod = make_pod([{"name": "main", "image": "none", "command": ["sleep", "300"]}])
    job = await edge.create(pod)
    await edge.wait(pod, lambda s: "running" in state(s))
    assert [p.name for p in edge.work_dir.iterdir()] == [pod["metadata"]["uid"]]
    assert (edge.pod_dir(pod) / "job.sh").is_file()
    await edge.delete(pod)
    assert edge.calls("scancel") == [[job]]
    assert job_state(job) == "CANCELLED"
    assert list(edge.work_dir.iterdir()) == []  # cleaned up (keep_work_dirs is off)


# the squeue wrapper hides jobs that ended, as slurmctld does once MinJobAge (300 s here) has
# passed: their end states must then come from sacct
ENDED = "COMPLETED|FAILED|CANCELLED|TIMEOUT|OUT_OF_MEMORY|NODE_FAIL|BOOT_FAIL|PREEMPTED|DEADLINE"
PURGED = {"squeue": f"grep -v -E '^[0-9]+[|]({ENDED})[|]'"}


def end_times(jobs: list[str]) -> dict[str, int]:
    """Each job's End (unix seconds) as accounting records it."""
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobIDRaw,End", "-j", ",".join(jobs)],
        capture_output=True,
        text=True,
        env={**os.environ, "SLURM_TIME_FORMAT": "%s"},
    ).stdout
    rows = [line.split("|") for line in out.splitlines()]
    return {r[0]: int(r[1]) for r in rows if len(r) == 2 and r[1].isdigit()}


async def test_one_squeue_per_cycle_and_sacct_only_for_jobs_that_ended(
    slurm: SlurmInfo, tmp_path: Path
) -> None:
    config = {"work_dir": str(tmp_path / "jobs"), "runtime": "host"}
    async with slurm_edge(slurm, tmp_path, config, filters=PURGED) as edge:
        pods = [
            make_pod([{"name": "main", "image": "none", "command": ["sh", "-c", f"sleep {i % 3}"]}])
            for i in range(12)
        ]
        jobs = [await edge.create(p) for p in pods]
        for _ in range(200):
            statuses, _ = await edge.cycle(*pods)
            if all("terminated" in c["state"] for s in statuses for c in s["containers"]):
                break
            await asyncio.sleep(0.3)
        assert sorted(s["JID"] for s in statuses) == sorted(jobs)
        assert all(s["containers"][0]["state"]["terminated"]["exitCode"] == 0 for s in statuses)
        # once SLURM has let the jobs go, their statuses come from cache: no SLURM call at all
        for _ in range(100):
            statuses, made = await edge.cycle(*pods)
            assert len(statuses) == 12
            if made == 0:
                break
            await asyncio.sleep(0.3)
        else:
            raise AssertionError(f"SLURM still asked every cycle: {edge.calls('sacct')[-3:]}")
        # sacct asked only about jobs that had ended by then, and about each of ours
        asked = [(at, args[-1].split(",")) for at, args in edge.calls_at("sacct")]  # -j ids
        ended = end_times(jobs)
        assert sorted(ended) == sorted(jobs)
        assert {j for _, ids in asked for j in ids} == set(jobs)
        early = [(at, j, ended[j]) for at, ids in asked for j in ids if ended[j] > at]
        assert early == [], "sacct asked about jobs before they ended"


async def test_bad_annotation_is_a_400_naming_it(edge: Edge) -> None:
    pod = make_pod(
        [{"name": "main", "image": "none", "command": ["true"]}],
        annotations={"slurm-job.vk.io/flags": "--uid=0"},
    )
    r = await edge.http.post("/create", json={"pod": pod, "container": []})
    assert r.status_code == 400
    assert "slurm-job.vk.io/flags" in r.json()["error"] and "--uid" in r.json()["error"]
    assert edge.count("sbatch") == (0,)
    assert list(edge.work_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("announce", "cpus"),
    # the world's partition: 64 CPUs, OverSubscribe=FORCE:4 (tests/world/slurm-up)
    [({}, "256"), ({"announce_cpu": 5000}, "5000")],
    ids=["runnable-at-once", "announce_cpu"],
)
def test_plugin_command_answers_ping_with_sinfo_capacity(
    slurm: SlurmInfo, tmp_path: Path, announce: dict[str, int], cpus: str
) -> None:
    config = {"runtime": "host", "partition": slurm.partition, **announce}
    svc = start_plugin(tmp_path, "slurm", config=config)
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(svc.socket))) as http:
            answer = http.request("GET", "http://p/status", json=[]).json()
        assert answer["status"] == "ok"
        assert answer["resources"]["cpu"] == cpus
        assert answer["resources"]["memory"] == "16000Mi"
    finally:
        svc.stop()


# --- hostile input: the generated script runs exactly the intended argv ------------------------

hostile = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"),
    max_size=40,
)


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "scratch"])
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(args=st.lists(hostile, min_size=1, max_size=4), value=hostile, name=hostile)
def test_hostile_strings_reach_the_process_unchanged(
    tmp_path_factory: pytest.TempPathFactory, shared: bool, args: list[str], value: str, name: str
) -> None:
    root = tmp_path_factory.mktemp("hostile")
    pod_dir = root / "pod"
    pod_dir.mkdir()
    pod = make_pod(
        [
            {
                "name": "main",
                "image": "none",
                "command": [
                    "python3",
                    "-c",
                    "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ.get('V')]))",
                ],
                "args": args,
                "env": [{"name": "V", "value": value}],
            }
        ],
        annotations={"note": name},
    )
    options: dict[str, object] = {"state_dir": str(root / "st"), "runtime": "host"}
    if not shared:  # the job unpacks into <root>/scratch/<fresh dir> and removes it at the end
        options |= {"shared_filesystem": False, "scratch_dir": str(root / "scratch")}
    config = build_config(SlurmPluginConfig, options)
    plan, _ = build_job(RetrievedPodData(pod=pod), config, pod_dir)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    # run the job script exactly as sbatch would, in the pod's directory
    job = subprocess.run(
        ["bash", "-c", plan.script],
        cwd=pod_dir,
        check=True,
        timeout=30,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
    )
    if shared:
        log = (pod_dir / "containers/main/0.log").read_bytes()
    else:  # the log records the job writes to its --output
        log = split_records(job.stdout, {})["main"]
    lines = [line.split(" ", 3)[3] for line in log.decode().splitlines()]
    # lines of the one JSON document, as the job printed it (newlines in values are escaped)
    assert json.loads(lines[0]) == [args, value]
    created = {p.relative_to(root) for p in root.rglob("*")} - set(before)
    allowed = ("pod",) if shared else ("scratch",)
    assert all(str(p).startswith(allowed) for p in created), created
    if not shared:
        assert list((root / "scratch").iterdir()) == []  # the job's directory is gone


async def test_plugin_killed_while_100_jobs_run_loses_none(
    slurm: SlurmInfo, tmp_path: Path
) -> None:
    import signal

    namespace = f"restart-{uuid.uuid4().hex[:8]}"
    config = {"runtime": "host", "partition": slurm.partition, "work_dir": str(tmp_path / "jobs")}
    svc = start_plugin(tmp_path, "slurm", config=config)
    pods = []
    for i in range(100):
        p = make_pod(
            [
                {
                    "name": "main",
                    "image": "none",
                    "command": ["sh", "-c", f"echo start-{i}; sleep 4; echo end-{i}"],
                }
            ]
        )
        p["metadata"]["namespace"] = namespace
        p["metadata"]["name"] = f"w{i}"
        pods.append(p)

    def client() -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(svc.socket)), base_url="http://p", timeout=120
        )

    try:
        with client() as http:
            jids = [
                http.post("/create", json={"pod": p, "container": []}).json()["PodJID"]
                for p in pods
            ]
        assert len(set(jids)) == 100
        svc.stop(signal.SIGKILL)
        svc = start_plugin(tmp_path, "slurm", config=config)
        with client() as http:
            # a VK re-sending its creates after the crash gets the same jobs back
            again = [
                http.post("/create", json={"pod": p, "container": []}).json()["PodJID"]
                for p in pods
            ]
            assert again == jids
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 120
            while loop.time() < deadline:
                statuses = http.request("GET", "/status", json=pods).json()
                done = [s for s in statuses if "terminated" in s["containers"][0]["state"]]
                if len(done) == 100:
                    break
                await asyncio.sleep(1)
            assert sorted(s["JID"] for s in statuses) == sorted(jids)
            assert all(s["containers"][0]["state"]["terminated"]["exitCode"] == 0 for s in statuses)
            m = pods[7]["metadata"]
            log = http.request(
                "GET",
                "/getLogs",
                json={
                    "Namespace": namespace,
                    "PodUID": m["uid"],
                    "PodName": m["name"],
                    "ContainerName": "main",
                },
            ).text
            assert log == "start-7\nend-7\n"
        names = subprocess.run(
            ["squeue", "-h", "-t", "all", "-o", "%j"], capture_output=True, text=True
        ).stdout.split()
        assert sum(n.startswith(namespace) for n in names) == 100  # nothing submitted twice
    finally:
        with client() as http:
            for p in pods:
                http.post("/delete", json=p)
        svc.stop()


def test_follow_streams_a_running_jobs_log(slurm: SlurmInfo, tmp_path: Path) -> None:
    import time

    svc = start_plugin(tmp_path, "slurm", config={"runtime": "host", "partition": slurm.partition})
    pod = make_pod(
        [
            {
                "name": "main",
                "image": "none",
                "command": ["sh", "-c", "for i in 1 2 3 4; do echo tick$i; sleep 0.5; done"],
            }
        ]
    )
    m = pod["metadata"]
    try:
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(svc.socket)), base_url="http://p", timeout=60
        ) as http:
            assert http.post("/create", json={"pod": pod, "container": []}).status_code == 200
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # wait until the container runs
                [s] = http.request("GET", "/status", json=[pod]).json()
                if "running" in s["containers"][0]["state"]:
                    break
                time.sleep(0.1)
            chunks: list[tuple[float, bytes]] = []
            body = {
                "Namespace": m["namespace"],
                "PodUID": m["uid"],
                "PodName": m["name"],
                "ContainerName": "main",
                "Opts": {"Follow": True},
            }
            with http.stream("GET", "/getLogs", json=body) as resp:
                assert resp.status_code == 200
                for chunk in resp.iter_bytes():
                    chunks.append((time.monotonic(), chunk))
            assert b"".join(c for _, c in chunks) == b"tick1\ntick2\ntick3\ntick4\n"
            assert len(chunks) >= 2 and chunks[-1][0] - chunks[0][0] > 0.4  # streamed
            http.post("/delete", json=pod)
    finally:
        svc.stop()
