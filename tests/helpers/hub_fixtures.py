"""Fixtures of a real hub with two virtual nodes (local plugin, SLURM host runtime), shared by
the hub's API tests and its browser test (loaded by tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.hub import Hub, VirtualNode, start_hub
from tests.helpers.k8s import K8sInfo, kubectl
from tests.helpers.slurm import SlurmInfo

WALLTIMES = ["00:30:00", "01:00:00"]


@pytest.fixture(scope="module")
def nodes(
    k8s: K8sInfo, slurm: SlurmInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, VirtualNode]]:
    tag = uuid.uuid4().hex[:5]
    root = tmp_path_factory.mktemp("hub-nodes")
    local = VirtualNode(k8s, f"hub-local-{tag}", root / "local", "local", {})
    on_slurm = VirtualNode(
        k8s,
        f"hub-slurm-{tag}",
        root / "slurm",
        "slurm",
        {"runtime": "host", "partition": slurm.partition},
    )
    try:
        yield {"local": local.start(), "slurm": on_slurm.start()}
    finally:
        local.stop()
        on_slurm.stop()


def profiles(nodes: dict[str, VirtualNode], partition: str) -> dict[str, Any]:
    slurm = {
        "node": nodes["slurm"].node,
        "resources": [{"cpu": 1, "memory": "1GiB"}],
        "partitions": [partition],
        "walltimes": WALLTIMES,
        # no connect_host: the SLURM plugin reports the batch host's NodeAddr (127.0.0.1
        # here) as the pod IP, which the hub's proxy dials
    }
    return {
        "profiles": [
            {
                "slug": "local",
                "display_name": "Local node",
                "node": nodes["local"].node,
                "resources": [{"cpu": 0.5, "memory": "512MiB"}],
                "start_timeout": 120,
            },
            {
                **slurm,
                "slug": "slurm",
                "display_name": "HPC via SLURM",
                # starts the job 3 s after submission: its queued state is always seen
                "batch_flags": ["--begin=now+3"],
                "start_timeout": 180,
            },
            {
                **slurm,
                "slug": "slurm-held",
                "display_name": "HPC held (test only)",
                "batch_flags": ["--hold"],
                "start_timeout": 20,
            },
        ]
    }


@pytest.fixture(scope="module")
def hub(
    k8s: K8sInfo,
    slurm: SlurmInfo,
    nodes: dict[str, VirtualNode],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Hub]:
    running = start_hub(tmp_path_factory.mktemp("hub"), k8s, profiles(nodes, slurm.partition))
    try:
        yield running
    finally:
        running.close()
        kubectl(k8s, "delete", "namespace", running.namespace, "--wait=false")
