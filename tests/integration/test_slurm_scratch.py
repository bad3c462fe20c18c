"""The SLURM plugin with ``shared_filesystem: false`` against the real SLURM of the test world:
volume files travel in the batch script and are unpacked under ``scratch_dir``, container
states come back through the job's Comment (squeue ``%k``, sacct ``Comment``), logs through the
job's output file in ``log_dir``."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from interlink_core.client import InterLinkClient, RemoteError, static_token
from interlink_core.models import PodCreateRequests
from interlink_plugins.slurm.scratch import decode_comment
from tests.helpers.slurm import SlurmInfo, squeue_field
from tests.helpers.slurm_edge import (
    Edge,
    held_job_reports_reason_then_cancels,
    job_state,
    make_pod,
    slurm_edge,
    state,
)
from tests.helpers.world import start_api, start_plugin

pytestmark = pytest.mark.integration
TOKEN = "scratch-dev-token-0123"


@pytest.fixture
async def edge(slurm: SlurmInfo, tmp_path: Path) -> AsyncIterator[Edge]:
    config = {
        "runtime": "host",
        "work_dir": str(tmp_path / "jobs"),
        "shared_filesystem": False,
        "scratch_dir": str(tmp_path / "scratch"),
        "log_dir": str(tmp_path / "logs"),
    }
    async with slurm_edge(slurm, tmp_path, config) as running:
        yield running


def scratch_dirs(root: Path, pod: dict[str, Any]) -> list[Path]:
    return list(root.glob(f"interlink-{pod['metadata']['uid']}.*")) if root.exists() else []


def accounted_comment(job: str) -> str:
    """The job's Comment as accounting stored it ('' until it has)."""
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "Comment", "-j", job], capture_output=True, text=True
    )
    return out.stdout.strip()


async def test_volumes_travel_states_and_logs_come_back(edge: Edge, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    reader = (
        "pwd; realpath /etc/cfg/greeting; cat /etc/cfg/greeting; echo; "
        "stat -c %a /etc/secret/token; cat /etc/secret/token; cat /data/marker; echo done"
    )
    pod = make_pod(
        [
            {
                "name": "reader",
                "image": "none",
                "command": ["sh", "-c", reader],
                "volumeMounts": [
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                    {"name": "secret", "mountPath": "/etc/secret", "readOnly": True},
                    {"name": "data", "mountPath": "/data"},
                ],
            },
            {
                "name": "failer",
                "image": "none",
                "command": ["sh", "-c", "sleep 1; echo first; printf 'no newline'; exit 3"],
            },
        ],
        init=[
            {
                "name": "setup",
                "image": "none",
                "command": ["sh", "-c", "echo init-ok; echo from-init > /data/marker"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }
        ],
    )
    pod["spec"]["volumes"] = [
        {"name": "cfg", "configMap": {"name": "settings"}},
        {"name": "secret", "secret": {"secretName": "creds", "defaultMode": 0o400}},
        {"name": "data", "emptyDir": {}},
    ]
    job = await edge.create(
        pod,
        configMaps=[{"metadata": {"name": "settings"}, "data": {"greeting": "hello 'world'"}}],
        secrets=[
            {"metadata": {"name": "creds"}, "data": {"token": base64.b64encode(b"t0k").decode()}}
        ],
    )
    done = await edge.ended(
        pod, job, lambda s: all("terminated" in c["state"] for c in s["containers"])
    )
    by_name = {c["name"]: c["state"] for c in done["containers"]}
    assert by_name["reader"]["terminated"]["exitCode"] == 0
    assert by_name["reader"]["terminated"]["reason"] == "Completed"
    assert by_name["failer"]["terminated"]["exitCode"] == 3
    assert by_name["failer"]["terminated"]["reason"] == "Error"
    assert state(done, kind="initContainers")["terminated"]["exitCode"] == 0
    # the states came through SLURM: the job's own Comment, in squeue and in accounting
    comment = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", job, "-o", "%k"], capture_output=True, text=True
    ).stdout.strip()
    reports = decode_comment(comment, ["setup", "reader", "failer"])
    assert [reports[n].exit_code for n in ("setup", "reader", "failer")] == [0, 0, 3]
    for _ in range(100):  # accounting may lag a little behind slurmctld
        if accounted_comment(job):
            break
        await asyncio.sleep(0.2)
    assert accounted_comment(job) == comment  # AccountingStoreFlags=job_comment

    lines = (await edge.logs(pod, "reader")).splitlines()
    workdir, greeting_path = Path(lines[0]), Path(lines[1])
    # the container ran in a fresh directory under scratch_dir, not in the plugin's work dir
    [job_dir] = [p for p in workdir.parents if p.parent == scratch]
    assert job_dir.name.startswith(f"interlink-{pod['metadata']['uid']}.")
    assert greeting_path == job_dir / "volumes/cfg/greeting"
    assert lines[2:] == ["hello 'world'", "400", "t0kfrom-init", "done"]
    assert await edge.logs(pod, "setup") == "init-ok\n"
    assert await edge.logs(pod, "failer") == "first\nno newline"  # exactly as printed
    assert await edge.logs(pod, "reader", Tail=1) == "done\n"
    stamped = await edge.logs(pod, "failer", Timestamps=True)
    assert stamped.startswith("20") and stamped.endswith("Z no newline")

    pod_dir = edge.pod_dir(pod)
    assert [p.name for p in edge.work_dir.iterdir()] == [pod["metadata"]["uid"]]
    # no volumes; kube-events holds the Events of fields the host runtime does not enforce
    assert sorted(p.name for p in pod_dir.iterdir()) == ["containers", "job.sh", "kube-events"]
    assert "FieldNotEnforced" in (pod_dir / "kube-events").read_text()
    assert scratch_dirs(scratch, pod) == []  # the job removed its directory
    output = tmp_path / "logs" / f"{pod['metadata']['uid']}.out"
    assert output.read_text().startswith("@il:")
    await edge.delete(pod)
    assert list(edge.work_dir.iterdir()) == [] and list(output.parent.iterdir()) == []
    assert await edge.status(pod) == []


async def test_one_squeue_per_cycle_answers_every_container(edge: Edge) -> None:
    pods = [
        make_pod(
            [
                {"name": "a", "image": "none", "command": ["sh", "-c", f"sleep {i % 3}"]},
                {"name": "b", "image": "none", "command": ["sh", "-c", f"exit {i}"]},
            ]
        )
        for i in range(8)
    ]
    for p in pods:
        await edge.create(p)
    for _ in range(200):
        statuses, _ = await edge.cycle(*pods)
        if all("terminated" in c["state"] for s in statuses for c in s["containers"]):
            break
        await asyncio.sleep(0.3)
    by_uid = {s["UID"]: s for s in statuses}
    for i, p in enumerate(pods):
        codes = [
            c["state"]["terminated"]["exitCode"] for c in by_uid[p["metadata"]["uid"]]["containers"]
        ]
        assert codes == [0, i]


async def test_init_failure_stops_the_pod(edge: Edge) -> None:
    pod = make_pod(
        [{"name": "main", "image": "none", "command": ["echo", "never"]}],
        init=[{"name": "setup", "image": "none", "command": ["sh", "-c", "echo bad; exit 4"]}],
    )
    job = await edge.create(pod)
    # once SLURM says the job ended, the container that never started says why
    s = await edge.ended(pod, job, lambda s: "not started" in str(state(s)))
    assert state(s, kind="initContainers")["terminated"]["exitCode"] == 4
    assert state(s)["waiting"] == {
        "reason": "PodInitializing",
        "message": "not started: init container 'setup' failed with exit code 4",
    }
    assert await edge.logs(pod, "setup") == "bad\n"
    assert await edge.logs(pod, "main") == ""


async def test_held_job_reports_slurm_reason_and_delete_cancels(edge: Edge) -> None:
    await held_job_reports_reason_then_cancels(edge)


async def test_running_job_is_cancelled_and_leaves_no_scratch(
    slurm: SlurmInfo, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    config = {
        "runtime": "host",
        "shared_filesystem": False,
        # expanded by the job's shell: the variable is unset in the job, so the default counts
        "scratch_dir": "${IL_TEST_UNSET_SCRATCH:-" + str(scratch) + "}",
        "log_dir": str(tmp_path / "logs"),
    }
    async with slurm_edge(slurm, tmp_path, config) as edge:
        script = "echo up; while :; do sleep 0.2; done"
        pod = make_pod([{"name": "main", "image": "none", "command": ["sh", "-c", script]}])
        job = await edge.create(pod)
        s = await edge.wait(pod, lambda s: "running" in state(s))  # from the Comment
        assert s["containers"][0]["started"] is True
        assert len(scratch_dirs(scratch, pod)) == 1
        for _ in range(50):  # the output file is written as the container prints
            if await edge.logs(pod, "main") == "up\n":
                break
            await asyncio.sleep(0.2)
        assert await edge.logs(pod, "main") == "up\n"
        await edge.delete(pod)
        assert edge.calls("scancel") == [[job]]
        assert job_state(job) == "CANCELLED"
        for _ in range(50):  # the job's EXIT trap removes its directory when it is cancelled
            if not scratch_dirs(scratch, pod):
                break
            await asyncio.sleep(0.2)
        assert scratch_dirs(scratch, pod) == []
        assert list((tmp_path / "logs").iterdir()) == []


async def test_follow_ends_when_the_container_ends(edge: Edge) -> None:
    script = "for i in 1 2 3; do echo tick$i; sleep 0.3; done"
    pod = make_pod(
        [
            {"name": "ticker", "image": "none", "command": ["sh", "-c", script]},
            {"name": "other", "image": "none", "command": ["sleep", "300"]},
        ]
    )
    job = await edge.create(pod)
    await edge.wait(pod, lambda s: "running" in state(s))

    async def poll() -> None:  # the VK keeps asking for statuses meanwhile
        while True:
            await edge.status(pod)
            await asyncio.sleep(0.3)

    poller = asyncio.create_task(poll())
    try:
        body = await asyncio.wait_for(edge.logs(pod, "ticker", Follow=True), 60)
    finally:
        poller.cancel()
    assert body == "tick1\ntick2\ntick3\n"
    # it ended with the container, not with the job: the other container still runs
    [s] = await edge.status(pod)
    assert state(s, 0)["terminated"]["exitCode"] == 0 and "running" in state(s, 1)
    assert squeue_field(job, "%T") == "RUNNING"
    await edge.delete(pod)


async def test_oversize_volume_payload_is_refused(edge: Edge) -> None:
    pod = make_pod(
        [
            {
                "name": "main",
                "image": "none",
                "command": ["true"],
                "volumeMounts": [{"name": "blob", "mountPath": "/blob"}],
            }
        ]
    )
    pod["spec"]["volumes"] = [{"name": "blob", "secret": {"secretName": "big"}}]
    big = base64.b64encode(os.urandom(5 * 2**20)).decode()  # incompressible, > 4 MB
    r = await edge.http.post(
        "/create",
        json={
            "pod": pod,
            "container": [
                {"name": "main", "secrets": [{"metadata": {"name": "big"}, "data": {"k": big}}]}
            ],
        },
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert "spec.volumes" in error and "max_script_bytes" in error and "'blob'" in error
    assert edge.count("sbatch") == (0,)
    assert list(edge.work_dir.iterdir()) == []
    assert await edge.status(pod) == []


async def test_update_volumes_through_the_api_server_is_a_501(
    slurm: SlurmInfo, tmp_path: Path
) -> None:
    """What a VK sees when it refreshes tokens of a pod in this mode: the plugin's 501 reaches
    it as a 501 (not a 502 it would retry for ever)."""
    config = {
        "runtime": "host",
        "partition": slurm.partition,
        "shared_filesystem": False,
        "scratch_dir": str(tmp_path / "scratch"),
        "log_dir": str(tmp_path / "logs"),
    }
    plugin = start_plugin(tmp_path / "plugin", "slurm", config)
    api = start_api(
        tmp_path / "api", {"plugin": {"url": plugin.url}, "auth": {"insecure_dev_token": TOKEN}}
    )
    try:
        async with InterLinkClient(api.url, token=static_token(TOKEN)) as vk:
            pod = make_pod([{"name": "main", "image": "none", "command": ["sleep", "60"]}])
            await vk.create(PodCreateRequests(pod=pod))
            with pytest.raises(RemoteError) as err:
                await vk.update_volumes(PodCreateRequests(pod=pod))
            assert err.value.status_code == 501
            assert "shared_filesystem: false" in err.value.message
            await vk.delete(pod)
    finally:
        api.stop()
        plugin.stop()
