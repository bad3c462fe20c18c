"""The interLink server extension against the test world: the real control plane, a virtual
kubelet in front of the real SLURM (API server + SLURM plugin), a cluster made in a "kernel"
in Kubernetes mode, and a user who may not list nodes."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from tests.helpers.jupyter import (
    TOKEN,
    WORKER,
    Jupyter,
    Stream,
    cluster_msg,
    jupyter_server,
    kernel_cluster,
    write_dask_config,
)
from tests.helpers.k8s import K8sInfo
from tests.helpers.slurm import SlurmInfo
from tests.helpers.vk import RunningVK, slurm_vk

pytestmark = pytest.mark.integration


@pytest.fixture
async def vk(k8s: K8sInfo, slurm: SlurmInfo, tmp_path: Path) -> AsyncIterator[RunningVK]:
    async with slurm_vk(k8s, slurm, tmp_path, "vk-jupyter", heartbeat_check_seconds=1) as running:
        yield running


def kube_config(vk: RunningVK, tmp_path: Path) -> Path:
    return write_dask_config(
        tmp_path / "dask",
        {
            "kubeconfig": str(vk.k8s.kubeconfig),
            "namespace": vk.ns,
            "node": vk.node,
            "image": "none",  # SLURM runs the worker on the host (runtime: host)
            "worker-command": WORKER,
            "memory": "256MiB",
            "status-interval": 0.5,
            "death-timeout": 30,
            "heartbeat": {"interval": 1, "timeout": 8},
        },
    )


def async_http(server: Jupyter) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"token {TOKEN}"}, timeout=120
    )


def rows_of(name: str, cond: Any) -> Any:
    return lambda m: (
        m["type"] == "cluster" and m["cluster"]["name"] == name and "rows" in m and cond(m["rows"])
    )


async def test_nodes_and_a_held_job_in_the_sidebar(vk: RunningVK, tmp_path: Path) -> None:
    config = kube_config(vk, tmp_path)
    env = {"KUBECONFIG": str(vk.k8s.kubeconfig)}
    options = {
        "name": "kube-a",
        "annotations": {"slurm-job.vk.io/flags": "--hold"},
        "n_workers": 1,
    }
    with (
        jupyter_server(
            tmp_path / "server", config, env=env, extension={"refresh_interval": 0.5}
        ) as server,
    ):
        async with async_http(server) as http:

            async def node_info() -> dict[str, Any]:
                answer = (await http.get(server.api("nodes"))).json()
                (node,) = [n for n in answer["nodes"] if n["name"] == vk.node]
                return dict(node)

            node = await node_info()
            for _ in range(120):  # a new virtual node turns Ready once it reached its edge
                if node["ready"]:
                    break
                await asyncio.sleep(0.5)
                node = await node_info()
            assert node["ready"] is True
            assert node["edge"]["connected"] is True
            assert float(node["capacity"]["cpu"]) > 0
            assert {
                "key": "virtual-node.interlink/no-schedule",
                "value": "true",
                "effect": "NoSchedule",
            } in node["taints"]
            assert set(node["pods"]) == {"Pending", "Running", "Succeeded", "Failed", "Unknown"}

        holder = kernel_cluster(config, options, env=env)
        kernel = await asyncio.to_thread(holder.__enter__)  # the VK answers in this loop
        session = aiohttp.ClientSession()
        try:
            stream = Stream(await session.ws_connect(server.ws_url()))
            await stream.next_matching(cluster_msg("kube-a"))
            await stream.send({"type": "rows", "clusters": ["kube-a"]})
            held = await stream.next_matching(
                rows_of("kube-a", lambda rows: rows and rows[0]["reason"] == "JobHeldUser")
            )
            (row,) = held["rows"]
            assert row["state"] == "queued"
            assert row["node"] == vk.node
            assert row["job_id"].isdigit()
            assert held["cluster"]["counts"]["queued"] == 1
            assert (held["cluster"]["mode"], held["cluster"]["namespace"]) == ("kubernetes", vk.ns)
            nodes = await stream.current_matching(
                "nodes",
                lambda m: any(
                    n["name"] == vk.node and n["pods"]["Pending"] >= 1 for n in m["nodes"]
                ),
            )
            assert nodes["problems"] == []

            await asyncio.to_thread(
                subprocess.run, ["scontrol", "release", row["job_id"]], check=True
            )
            connected = await stream.next_matching(
                rows_of("kube-a", lambda rows: rows and rows[0]["state"] == "connected")
            )
            assert connected["cluster"]["workers"] == 1
            assert connected["rows"][0]["job_id"] == row["job_id"]
        finally:
            await session.close()
            await asyncio.to_thread(kernel.close)
            await asyncio.to_thread(holder.__exit__, None, None, None)


async def test_a_user_who_may_not_list_nodes_is_told_so(vk: RunningVK, tmp_path: Path) -> None:
    sa = "no-rights"
    made = await vk.kubectl("create", "serviceaccount", sa, "-n", vk.ns)
    assert made.returncode == 0, made.stderr
    token = await vk.kubectl("create", "token", sa, "-n", vk.ns, "--duration=1h")
    assert token.returncode == 0, token.stderr
    kubeconfig = tmp_path / "no-rights.kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "world",
                        "cluster": {
                            "server": vk.k8s.server,
                            "certificate-authority": str(vk.k8s.ca),
                        },
                    }
                ],
                "users": [{"name": sa, "user": {"token": token.stdout.strip()}}],
                "contexts": [
                    {"name": "c", "context": {"cluster": "world", "user": sa, "namespace": vk.ns}}
                ],
                "current-context": "c",
            }
        )
    )
    config = write_dask_config(tmp_path / "dask", {"image": "none"})
    with jupyter_server(tmp_path / "server", config, env={"KUBECONFIG": str(kubeconfig)}) as server:
        async with async_http(server) as http:
            answer = (await http.get(server.api("nodes"))).json()
            listed = (await http.get(server.api("clusters"))).json()
    assert answer["nodes"] == []
    (problem,) = answer["problems"]
    assert problem["source"] == "kubernetes"
    assert problem["message"].startswith("you may not list nodes: ")
    assert "forbidden" in problem["message"]
    assert "administrator" in problem["hint"]
    assert listed["clusters"] == []
    assert any("cannot list kubernetes clusters" in p["message"] for p in listed["problems"])
