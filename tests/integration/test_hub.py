"""JupyterHub on interLink virtual nodes, all real: ``jupyterhub`` with
``configurable-http-proxy`` and ``InterLinkSpawner`` (KubeSpawner) on the test world's control
plane, the live profile list, two virtual nodes (``local`` plugin, and SLURM with the host
runtime) whose pods run ``jupyterhub-singleuser`` as host processes, and
``jupyterhub-idle-culler``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import websocket

from interlink_core.names import JOB_ID_ANNOTATION
from tests.helpers.hub import Hub, VirtualNode, wait_for
from tests.helpers.slurm import squeue_field

pytestmark = pytest.mark.integration


def messages(events: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("message", "")) for e in events]


def job_of(message_list: list[str], prefix: str) -> str:
    for m in message_list:
        found = re.fullmatch(re.escape(prefix) + r" \(job (\d+)\)", m)
        if found:
            return found.group(1)
    raise AssertionError(f"no {prefix!r} message in {message_list}")


def pod_of(hub: Hub, user: str, server: str = "") -> dict[str, Any] | None:
    for pod in hub.pods():
        labels = pod["metadata"].get("labels") or {}
        annotations = pod["metadata"].get("annotations") or {}
        if annotations.get("hub.jupyter.org/username") == user and (
            annotations.get("hub.jupyter.org/servername", "") == server
        ):
            return pod
        if labels.get("hub.jupyter.org/username") == user and not server:
            return pod
    return None


def job_gone(job: str) -> bool:
    return squeue_field(job, "%T") in ("", "CANCELLED", "COMPLETED", "COMPLETING")


def run_code(hub: Hub, prefix: str, code: str) -> str:
    """Start a kernel through the proxy and run ``code``; the ``text/plain`` result."""
    kernel = hub.http.post(f"{prefix}/api/kernels", json={"name": "python3"})
    assert kernel.status_code == 201, kernel.text
    kid = kernel.json()["id"]
    ws = websocket.create_connection(
        hub.url.replace("http", "ws", 1) + f"{prefix}/api/kernels/{kid}/channels",
        header=[f"Authorization: token {hub.token}"],
        timeout=60,
    )
    try:
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "username": "test",
                        "session": uuid.uuid4().hex,
                        "msg_type": "execute_request",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "content": {"code": code, "silent": False, "store_history": False},
                    "buffers": [],
                }
            )
        )
        while True:
            reply = json.loads(ws.recv())
            if (reply.get("parent_header") or {}).get("msg_id") != msg_id:
                continue
            if reply["msg_type"] == "execute_result":
                return str(reply["content"]["data"]["text/plain"])
            if reply["msg_type"] == "error":
                raise AssertionError(reply["content"])
    finally:
        ws.close()
        hub.http.delete(f"{prefix}/api/kernels/{kid}")


def test_slurm_profile_serves_a_notebook_through_the_proxy(hub: Hub) -> None:
    resp = hub.spawn("alice", {"profile": "slurm", "walltime": "01:00:00"})
    assert resp.status_code == 202, resp.text
    events = hub.progress("alice")
    said = messages(events)
    assert events[-1].get("ready") is True, said
    job = job_of(said, "Queued: BeginTime")
    assert job_of(said, "Running") == job
    assert any(f"submitted to the edge as job {job}" in m for m in said), said
    pod = pod_of(hub, "alice")
    assert pod is not None
    assert pod["metadata"]["annotations"][JOB_ID_ANNOTATION] == job
    assert pod["spec"]["nodeName"].startswith("hub-slurm-")
    # the allow-listed choices reached sbatch: the job's time limit is the chosen walltime
    assert squeue_field(job, "%l") == "1:00:00"
    assert squeue_field(job, "%T") == "RUNNING"

    status = hub.http.get("/user/alice/api/status")
    assert status.status_code == 200, status.text
    assert run_code(hub, "/user/alice", "1+1") == "2"

    hub.stop_server("alice")
    wait_for(lambda: pod_of(hub, "alice") is None, 60, "alice's pod to be deleted")
    wait_for(lambda: job_gone(job), 30, f"job {job} to leave the queue")


def test_named_servers_one_on_the_local_node_one_on_slurm(
    hub: Hub, nodes: dict[str, VirtualNode]
) -> None:
    assert hub.spawn("carol", {"profile": "local"}, "onlocal").status_code == 202
    assert hub.spawn("carol", {"profile": "slurm"}, "onslurm").status_code == 202
    assert hub.progress("carol", "onlocal")[-1].get("ready") is True
    assert hub.progress("carol", "onslurm")[-1].get("ready") is True
    for server, node in (("onlocal", nodes["local"].node), ("onslurm", nodes["slurm"].node)):
        pod = pod_of(hub, "carol", server)
        assert pod is not None and pod["spec"]["nodeName"] == node
        status = hub.http.get(f"/user/carol/{server}/api/status")
        assert status.status_code == 200, status.text
    slurm_pod = pod_of(hub, "carol", "onslurm")
    assert slurm_pod is not None
    job = slurm_pod["metadata"]["annotations"][JOB_ID_ANNOTATION]
    # default walltime: the first allowed one
    assert squeue_field(job, "%l") == "30:00"
    hub.stop_server("carol", "onlocal")
    hub.stop_server("carol", "onslurm")
    wait_for(lambda: not [p for p in hub.pods() if "carol" in p["metadata"]["name"]], 60, "pods")
    wait_for(lambda: job_gone(job), 30, f"job {job} to leave the queue")


def test_held_job_shows_its_reason_and_the_timeout_cancels_it(hub: Hub) -> None:
    t0 = time.monotonic()
    assert hub.spawn("bob", {"profile": "slurm-held"}).status_code == 202
    events = hub.progress("bob", timeout=120)
    said = messages(events)
    job = job_of(said, "Queued: JobHeldUser")
    assert events[-1].get("failed") is True, said
    assert said[-1] == (
        "Spawn failed: the server did not start within 20 seconds "
        f"(Queued: JobHeldUser (job {job})); its pod and batch job are deleted"
    )
    assert 17 < time.monotonic() - t0 < 40  # the profile's timeout, not the hub's 300 s
    wait_for(lambda: pod_of(hub, "bob") is None, 60, "bob's pod to be deleted")
    wait_for(lambda: job_gone(job), 30, f"held job {job} to be cancelled")


def test_walltime_outside_the_allow_list_is_refused_on_the_form(hub: Hub) -> None:
    with closing(hub.login("eve")) as browser:
        form = browser.get("/hub/spawn")
        assert form.status_code == 200
        assert "HPC via SLURM" in form.text
        xsrf = browser.cookies.get("_xsrf", "")
        answer = browser.post(
            "/hub/spawn",
            data={
                "_xsrf": xsrf,
                "profile": "slurm",
                "profile-option-slurm--walltime": "99:00:00",
            },
        )
    assert (
        "walltime: &#39;99:00:00&#39; is not allowed for profile &#39;slurm&#39;; "
        "choose one of: 00:30:00, 01:00:00"
    ) in answer.text
    assert hub.server_state("eve") is None
    assert pod_of(hub, "eve") is None
    # the same choice through the REST API: the spawn fails before any pod exists
    assert hub.spawn("eve", {"profile": "slurm", "walltime": "99:00:00"}).status_code == 202
    events = hub.progress("eve")
    assert events[-1].get("failed") is True
    assert events[-1]["message"] == (
        "Spawn failed: walltime: '99:00:00' is not allowed for profile 'slurm'; "
        "choose one of: 00:30:00, 01:00:00"
    )
    assert pod_of(hub, "eve") is None


def test_live_list_leaves_out_a_node_whose_edge_is_down(
    hub: Hub, nodes: dict[str, VirtualNode]
) -> None:
    local = nodes["local"]
    with closing(hub.login("frank")) as browser:

        def offered() -> str:
            page = browser.get("/hub/spawn")
            assert page.status_code == 200, page.text[:2000]
            return page.text

        page = offered()
        assert "Local node" in page and "HPC via SLURM" in page
        assert re.search(rf"{local.node} free: [\d.]+ CPU", page), page
        local.stop_edge()
        try:
            wait_for(lambda: not local.usable(), 60, "the local node to lose its edge")
            page = offered()
            assert "Local node" not in page
            assert "HPC via SLURM" in page
        finally:
            local.start_edge()
        wait_for(local.usable, 60, "the local node to reach its edge again")
        assert "Local node" in offered()


def test_idle_culler_stops_an_idle_server(hub: Hub) -> None:
    assert hub.spawn("dave", {"profile": "local"}).status_code == 202
    assert hub.progress("dave")[-1].get("ready") is True
    assert pod_of(hub, "dave") is not None
    culler = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--url={hub.url}/hub/api",
            "--timeout=10",
            "--cull-every=3",
        ],
        env={"JUPYTERHUB_API_TOKEN": hub.token, "PATH": "/usr/bin:/bin"},
        stdout=(Path(hub.log).parent / "culler.log").open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: hub.server_state("dave") is None, 90, "the culler to stop dave's server")
        wait_for(lambda: pod_of(hub, "dave") is None, 60, "dave's pod to be deleted")
    finally:
        culler.terminate()
        culler.wait(10)
