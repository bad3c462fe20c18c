"""InterLinkCluster's pure parts: options, the worker pod, worker states, scaling order."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import dask.config
import pytest
import yaml

import interlink_dask
from interlink_core.errors import ConfigError
from interlink_core.models import pod_state
from interlink_core.names import HEARTBEAT_ANNOTATION, VK_TAINT_KEY, VK_TYPE_LABEL, VK_TYPE_VALUE
from interlink_dask.config import load_options
from interlink_dask.pods import worker_pod
from interlink_dask.scaling import hold_scale_up, pods_to_drop
from interlink_dask.states import (
    WorkerRow,
    WorkerState,
    counts,
    view_of_kube_pod,
    view_of_wire_status,
)

Q, S, R, C, F = (
    WorkerState.QUEUED,
    WorkerState.STARTING,
    WorkerState.RUNNING,
    WorkerState.CONNECTED,
    WorkerState.FINISHED,
)


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"name": "worker", "state": {"waiting": {"reason": reason, "message": message}}}


# -- options -----------------------------------------------------------------------------------


def test_dask_config_then_keyword_arguments() -> None:
    with dask.config.set(
        {
            "interlink": {
                "image": "img:1",
                "node": "hpc",
                "worker-command": ["w"],
                "heartbeat": {"timeout": 30},
            }
        }
    ):
        opts = load_options(node="other", heartbeat={"interval": 2})
    assert (opts.image, opts.node, opts.worker_command) == ("img:1", "other", ["w"])
    assert (opts.heartbeat.interval, opts.heartbeat.timeout) == (2, 30)
    assert opts.cluster_name.startswith("interlink-dask-")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "image: a worker image is required"),
        ({"image": "x", "procesess": 2}, "procesess: unknown key"),
        ({"image": "x", "memory": "lots"}, "memory: .*'lots' is not a size"),
        ({"image": "x", "processes": 4}, "processes: 4 worker processes need cpu >= 4"),
        ({"image": "x", "name": "Bad_Name"}, "name: "),
        ({"mode": "direct"}, "direct.url: direct mode needs"),
        ({"image": "x", "env": {"1BAD": "v"}}, "env: .*'1BAD' is not a valid"),
    ],
)
def test_bad_options_name_the_key(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_options(**kwargs)


# -- the pod -----------------------------------------------------------------------------------


def test_worker_pod_targets_the_virtual_node_and_carries_the_heartbeat() -> None:
    opts = load_options(
        name="c1",
        image="ghcr.io/dask/dask:latest",
        node="hpc",
        processes=2,
        cpu=4,
        memory="8GiB",
        gpus=1,
        env={"A": "1"},
        annotations={"slurm-job.vk.io/flags": "--time=01:00:00"},
        death_timeout=30,
    )
    lease = {"metadata": {"name": "c1", "uid": "u-1"}}
    pod = worker_pod(opts, "c1-worker-0", "tcp://10.0.0.1:8786", namespace="ns", owner=lease)
    spec, meta = pod["spec"], pod["metadata"]
    assert spec["nodeSelector"]["kubernetes.io/hostname"] == "hpc"
    assert spec["nodeSelector"][VK_TYPE_LABEL] == VK_TYPE_VALUE
    assert {"key": VK_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    (c,) = spec["containers"]
    assert c["resources"]["limits"] == {"cpu": "4", "memory": "8192Mi", "nvidia.com/gpu": "1"}
    args = c["args"]
    assert args[:4] == ["dask", "worker", "tcp://10.0.0.1:8786", "--name"]
    assert args[args.index("--nworkers") + 1] == "2"
    assert args[args.index("--nthreads") + 1] == "2"
    assert args[args.index("--memory-limit") + 1] == str(4 * 1024**3)
    assert args[args.index("--death-timeout") + 1] == "30"
    assert meta["annotations"][HEARTBEAT_ANNOTATION] == "c1"
    assert meta["annotations"]["slurm-job.vk.io/flags"] == "--time=01:00:00"
    assert meta["ownerReferences"][0]["uid"] == "u-1"
    assert meta["labels"]["interlink.eu/dask-cluster"] == "c1"
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False  # no credential shipped to the site


# -- states ------------------------------------------------------------------------------------


def test_states_of_kubernetes_pods() -> None:
    def pod(status: dict[str, Any], **meta: Any) -> dict[str, Any]:
        return {"metadata": {"name": "p", **meta}, "status": status}

    queued = pod({"phase": "Pending", "containerStatuses": [waiting("Queued: JobHeldUser")]})
    v = view_of_kube_pod(queued)
    assert v.state == Q
    assert v.reason == "JobHeldUser"
    unsched = pod(
        {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "message": "0/3 nodes available"}
            ],
        }
    )
    assert view_of_kube_pod(unsched).state == Q
    assert "0/3 nodes" in view_of_kube_pod(unsched).reason
    starting = pod({"phase": "Pending", "containerStatuses": [waiting("ContainerCreating")]})
    assert view_of_kube_pod(starting).state == S
    assert view_of_kube_pod(pod({"phase": "Pending"})).state == Q
    assert view_of_kube_pod(pod({"phase": "Running"})).state == R
    failed = pod(
        {
            "phase": "Failed",
            "containerStatuses": [
                {"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
            ],
        }
    )
    assert view_of_kube_pod(failed).reason == "OOMKilled (exit code 137)"
    gone = pod({"phase": "Running"}, deletionTimestamp="2026-11-25T00:00:00Z")
    assert view_of_kube_pod(gone).state == F


def test_states_of_wire_statuses() -> None:
    assert view_of_wire_status({"containers": []}).state == Q
    held = view_of_wire_status({"containers": [waiting("Queued: Priority")]})
    assert (held.state, held.reason) == (Q, "Priority")
    running = {"containers": [{"name": "worker", "state": {"running": {}}}]}
    assert view_of_wire_status(running).state == R
    done = {"containers": [{"name": "worker", "state": {"terminated": {"exitCode": 0}}}]}
    assert view_of_wire_status(done).reason == "Completed"


def test_wire_states_follow_the_core_pod_state() -> None:
    # one container failed while another still waits: the core says failed, so finished
    mixed = {
        "containers": [
            {"name": "worker", "state": {"terminated": {"exitCode": 2, "reason": "Error"}}},
            waiting("Queued: Priority"),
        ]
    }
    assert pod_state(mixed["containers"]) == "failed"
    v = view_of_wire_status(mixed)
    assert (v.state, v.reason) == (F, "Error (exit code 2)")
    starting = {"containers": [{"name": "a", "state": {"terminated": {"exitCode": 0}}}]}
    starting["containers"].append(waiting("ContainerCreating"))
    assert pod_state(starting["containers"]) == "pending"
    assert view_of_wire_status(starting).state == S


def test_counts_list_every_state_in_life_order() -> None:
    rows = [WorkerRow("a", Q), WorkerRow("b", C), WorkerRow("c", C)]
    assert counts(rows) == {"queued": 1, "starting": 0, "running": 0, "connected": 2, "finished": 0}


# -- scaling order -----------------------------------------------------------------------------


def rows(*states: WorkerState) -> list[WorkerRow]:
    return [WorkerRow(f"p{i}", s) for i, s in enumerate(states)]


def test_manual_scale_down_drops_what_has_not_arrived_queued_first() -> None:
    r = rows(C, Q, R, Q, S, F)
    assert pods_to_drop(r, 1, adaptive=False) == ["p5"]
    assert pods_to_drop(r, 3, adaptive=False) == ["p5", "p3", "p1"]
    assert pods_to_drop(r, 5, adaptive=False) == ["p5", "p3", "p1", "p4", "p2"]


def test_adaptive_scale_down_never_retires_a_queued_job_before_a_connected_worker() -> None:
    r = rows(C, Q, C, R, Q)
    # the scheduler says p2 then p0 are idle: they go first, queued jobs last
    assert pods_to_drop(r, 2, adaptive=True, idle_connected=["p2", "p0"]) == ["p2", "p0"]
    assert pods_to_drop(r, 3, adaptive=True, idle_connected=["p2", "p0"]) == ["p2", "p0", "p3"]
    assert pods_to_drop(r, 5, adaptive=True, idle_connected=["p2", "p0"])[-2:] == ["p4", "p1"]
    # a busy connected worker (not offered by the scheduler) is kept; running goes before queued
    assert pods_to_drop(r, 2, adaptive=True, idle_connected=["p0"]) == ["p0", "p3"]


def test_adaptive_waits_while_jobs_are_queued() -> None:
    assert hold_scale_up(rows(C, Q))
    assert not hold_scale_up(rows(C, R, S))


# -- docs/dask.md ------------------------------------------------------------------------------


def yaml_blocks(doc: Path) -> list[Any]:
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)]


def test_docs_yaml_examples_are_valid_configuration() -> None:
    config, lab = yaml_blocks(Path(__file__).parents[2] / "docs" / "dask.md")
    with dask.config.set(config):
        opts = load_options()
    assert opts.node == "hpc-slurm" and opts.image == "ghcr.io/dask/dask:latest"
    assert opts.annotations == {"slurm-job.vk.io/flags": "--partition=short --time=02:00:00"}
    factory = lab["labextension"]["factory"]
    cls = getattr(importlib.import_module(factory["module"]), factory["class"])
    assert cls is interlink_dask.InterLinkCluster
    assert load_options(**factory["kwargs"]).memory == "8GiB"
