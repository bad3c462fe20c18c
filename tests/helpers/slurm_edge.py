"""The SLURM plugin app in the test process, on the real SLURM of the test world, driven through
its HTTP routes (so tests can count SLURM calls and look at the plugin's state)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from interlink_core.config import build_config
from interlink_core.sdk import make_plugin_app
from interlink_plugins.slurm.plugin import SlurmPlugin, SlurmPluginConfig
from tests.helpers.slurm import SlurmInfo


def make_pod(
    containers: list[dict[str, Any]],
    init: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "job",
            "namespace": "default",
            "uid": str(uuid.uuid4()),
            "annotations": annotations or {},
        },
        "spec": {"containers": containers, "initContainers": init or []},
    }


class Edge:
    """The plugin app in this process (so tests can count SLURM calls) on real SLURM."""

    def __init__(self, plugin: SlurmPlugin, http: httpx.AsyncClient) -> None:
        self.plugin = plugin
        self.http = http

    async def create(self, pod: dict[str, Any]) -> str:
        r = await self.http.post("/create", json={"pod": pod, "container": []})
        assert r.status_code == 200, r.text
        return str(r.json()["PodJID"])

    async def status(self, *pods: dict[str, Any]) -> list[dict[str, Any]]:
        r = await self.http.request("GET", "/status", json=list(pods))
        assert r.status_code == 200, r.text
        return list(r.json())

    async def logs(self, pod: dict[str, Any], container: str, **opts: Any) -> str:
        m = pod["metadata"]
        r = await self.http.request(
            "GET",
            "/getLogs",
            json={
                "Namespace": m["namespace"],
                "PodUID": m["uid"],
                "PodName": m["name"],
                "ContainerName": container,
                "Opts": opts,
            },
        )
        assert r.status_code == 200, r.text
        return r.text

    async def delete(self, pod: dict[str, Any]) -> None:
        r = await self.http.post("/delete", json=pod)
        assert r.status_code == 200, r.text

    async def wait(self, pod: dict[str, Any], done: Any, timeout: float = 60) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: list[dict[str, Any]] = []
        while loop.time() < deadline:
            last = await self.status(pod)
            if last and done(last[0]):
                return last[0]
            await asyncio.sleep(0.2)
        raise AssertionError(f"condition never met: {json.dumps(last)[:2000]}")


def state(status: dict[str, Any], i: int = 0, kind: str = "containers") -> dict[str, Any]:
    return dict(status[kind][i]["state"])


@asynccontextmanager
async def slurm_edge(
    slurm: SlurmInfo, tmp_path: Path, settings: dict[str, Any]
) -> AsyncIterator[Edge]:
    """A started plugin with these settings (state in ``tmp_path/state``, the cluster's
    partition); every job it still tracks is cancelled at the end."""
    config = build_config(
        SlurmPluginConfig,
        {"state_dir": str(tmp_path / "state"), "partition": slurm.partition, **settings},
    )
    plugin = SlurmPlugin(config)
    app = make_plugin_app(plugin)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://p", timeout=120) as h:
            try:
                yield Edge(plugin, h)
            finally:
                for rec in plugin.store.all():  # never leave jobs behind
                    subprocess.run(["scancel", rec.job_id], check=False)


async def held_job_reports_reason_then_cancels(edge: Edge) -> None:
    """A job SLURM holds reports SLURM's reason while pending; deleting the pod cancels it."""
    pod = make_pod(
        [{"name": "main", "image": "none", "command": ["sleep", "300"]}],
        annotations={"slurm-job.vk.io/flags": "--hold --time=00:05:00"},
    )
    job = await edge.create(pod)
    s = await edge.wait(pod, lambda s: "waiting" in state(s))
    waiting = state(s)["waiting"]
    assert waiting["reason"] == "Queued: JobHeldUser", waiting
    assert f"SLURM job {job} is PENDING" in waiting["message"]
    await edge.delete(pod)
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True)
    assert out.stdout.strip() in ("", "CANCELLED")
