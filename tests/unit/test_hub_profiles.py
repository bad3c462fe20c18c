"""The hub profile builder: config validation, the profile_list entries it makes, the batch
flags it lets through, the live selection of virtual nodes, and the batch-state progress line."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from interlink_core.errors import ConfigError
from interlink_jupyter.hub import batch_state, build_profiles, load_profiles
from interlink_jupyter.hub.profiles import (
    NoVirtualNodeReady,
    check_choices,
    interlink_profiles,
    live_profiles,
    random_port,
)

HPC = {
    "slug": "hpc",
    "display_name": "HPC (SLURM)",
    "description": "Notebook as a batch job",
    "node": "hpc-slurm",
    "image": "ghcr.io/example/notebook:1",
    "resources": [
        {"cpu": 2, "memory": "4GiB"},
        {"cpu": 8, "memory": "32GiB", "gpus": 1, "default": True},
    ],
    "partitions": ["short", "gpu"],
    "walltimes": ["02:00:00", "08:00:00"],
    "start_timeout": 900,
}
LOCAL = {
    "slug": "standard",
    "display_name": "Standard",
    "image": "jupyter/base",
    "resources": [{"cpu": 1, "memory": "2GiB"}],
}


def spawner(**options: Any) -> Any:
    return SimpleNamespace(user_options=options)


def test_profile_sets_node_toleration_resources_and_timeout() -> None:
    [hpc] = build_profiles({"profiles": [HPC]})
    override = hpc["kubespawner_override"]
    assert hpc["slug"] == "hpc"
    assert hpc["display_name"] == "HPC (SLURM)"
    assert override["node_selector"] == {"kubernetes.io/hostname": "hpc-slurm"}
    assert override["tolerations"] == [
        {"key": "virtual-node.interlink/no-schedule", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert override["image"] == "ghcr.io/example/notebook:1"
    assert override["start_timeout"] == 900
    choices = hpc["profile_options"]["resources"]["choices"]
    assert [c["display_name"] for c in choices.values()] == [
        "2 CPU, 4 GiB",
        "8 CPU, 32 GiB, 1 GPU",
    ]
    big = next(c for c in choices.values() if c["default"])
    assert big["kubespawner_override"] == {
        "cpu_guarantee": 8.0,
        "cpu_limit": 8.0,
        "mem_guarantee": 34359738368,
        "mem_limit": 34359738368,
        "extra_resource_guarantees": {"nvidia.com/gpu": "1"},
        "extra_resource_limits": {"nvidia.com/gpu": "1"},
    }
    assert list(hpc["profile_options"]["partition"]["choices"]) == ["short", "gpu"]
    assert list(hpc["profile_options"]["walltime"]["choices"]) == ["02:00:00", "08:00:00"]


def test_batch_flags_come_from_the_allowed_choices_only() -> None:
    [hpc] = build_profiles({"profiles": [HPC]})
    annotations = hpc["kubespawner_override"]["extra_annotations"]
    assert annotations(spawner()) == {"slurm-job.vk.io/flags": "--partition=short --time=02:00:00"}
    assert annotations(spawner(profile="hpc", partition="gpu", walltime="08:00:00")) == {
        "slurm-job.vk.io/flags": "--partition=gpu --time=08:00:00"
    }
    with pytest.raises(ValueError) as refused:
        annotations(spawner(walltime="99:00:00"))
    assert str(refused.value) == (
        "walltime: '99:00:00' is not allowed for profile 'hpc'; choose one of: 02:00:00, 08:00:00"
    )
    with pytest.raises(ValueError, match="partition: 'short; rm -rf' is not allowed"):
        annotations(spawner(**{"partition--unlisted-choice": "short; rm -rf"}))


def test_admin_flags_are_quoted_for_the_annotation() -> None:
    profile = {**HPC, "partitions": [], "walltimes": [], "batch_flags": ["--comment=a b", "--hold"]}
    [entry] = build_profiles({"profiles": [profile]})
    annotations = entry["kubespawner_override"]["extra_annotations"]
    assert annotations(spawner()) == {"slurm-job.vk.io/flags": "'--comment=a b' --hold"}


def test_in_cluster_profile_has_no_virtual_node_parts() -> None:
    [standard] = build_profiles({"profiles": [LOCAL]})
    override = standard["kubespawner_override"]
    assert "node_selector" not in override
    assert "tolerations" not in override
    assert "extra_annotations" not in override
    assert list(standard["profile_options"]) == ["resources"]


def test_node_group_selects_by_labels() -> None:
    group = {**HPC, "node": None, "node_labels": {"site": "cineca"}}
    [entry] = build_profiles({"profiles": [group]})
    assert entry["kubespawner_override"]["node_selector"] == {"site": "cineca"}


def test_each_spawn_gets_its_own_free_port() -> None:
    [hpc] = build_profiles({"profiles": [HPC]})
    assert hpc["kubespawner_override"]["port"] is random_port
    assert 1024 < random_port() < 65536


def test_check_choices_names_the_allowed_values() -> None:
    [hpc] = build_profiles({"profiles": [HPC]})
    check_choices(hpc, {"profile": "hpc", "walltime": "08:00:00"})
    with pytest.raises(ValueError) as refused:
        check_choices(hpc, {"profile": "hpc", "walltime": "48:00:00"})
    assert "choose one of: 02:00:00, 08:00:00" in str(refused.value)
    with pytest.raises(ValueError, match="partition: 'long' is not allowed"):
        check_choices(hpc, {"profile": "hpc", "partition--unlisted-choice": "long"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"walltimes": ["2 hours"]}, "profiles.0.walltimes: '2 hours' is not a SLURM time limit"),
        ({"partitions": ["a b"]}, "profiles.0.partitions: 'a b' is not a SLURM partition name"),
        ({"resources": [{"cpu": 1, "memory": "lots"}]}, "'lots' is not a memory size"),
        ({"node_labels": {"site": "x"}}, "give node or node_labels, not both"),
        ({"slug": "HPC One"}, "profiles.0.slug: 'HPC One' is not a slug"),
        ({"walltime": ["01:00:00"]}, "profiles.0.walltime: unknown key"),
        ({"resources": []}, "profiles.0.resources: List should have at least 1 item"),
    ],
)
def test_bad_config_names_the_key_and_the_fix(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as bad:
        load_profiles({"profiles": [{**HPC, **change}]})
    assert message in str(bad.value)


def test_batch_options_need_a_virtual_node() -> None:
    with pytest.raises(ConfigError, match="need a virtual node: set node or node_labels"):
        load_profiles({"profiles": [{**LOCAL, "walltimes": ["01:00:00"]}]})


def test_duplicate_slugs_are_refused() -> None:
    with pytest.raises(ConfigError, match="slug 'hpc' is used twice"):
        load_profiles({"profiles": [HPC, HPC]})


def node(name: str, ready: str = "True", link: str = "True", **alloc: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"site": "x"}},
        "status": {
            "allocatable": alloc or {"cpu": "8", "memory": "16Gi"},
            "conditions": [
                {"type": "Ready", "status": ready},
                {"type": "InterLinkConnectivity", "status": link},
            ],
        },
    }


def pod(cpu: str, memory: str) -> dict[str, Any]:
    resources = {"requests": {"cpu": cpu, "memory": memory}}
    return {"spec": {"containers": [{"name": "c", "resources": resources}]}}


def test_live_list_offers_only_ready_connected_nodes_with_free_capacity() -> None:
    config = load_profiles(
        {"profiles": [LOCAL, HPC, {**HPC, "slug": "other", "node": "other-node"}]}
    )
    nodes = [node("hpc-slurm"), node("other-node", link="False")]
    offered = live_profiles(
        config, nodes, {"hpc-slurm": [pod("2", "4Gi"), pod("500m", "1Gi")], "other-node": []}
    )
    assert [p["slug"] for p in offered] == ["standard", "hpc"]
    assert offered[1]["description"] == (
        "Notebook as a batch job · hpc-slurm free: 5.5 CPU, 11 GiB"
    )
    not_ready = live_profiles(config, [node("hpc-slurm", ready="False")], {})
    assert [p["slug"] for p in not_ready] == ["standard"]
    assert not_ready[0]["default"] is True


def test_live_list_without_pod_rights_shows_capacity() -> None:
    config = load_profiles({"profiles": [HPC]})
    nodes = [node("hpc-slurm", cpu="64", memory="256Gi", **{"nvidia.com/gpu": "4"})]
    [offered] = live_profiles(config, nodes, {"hpc-slurm": None})
    assert offered["description"].endswith("hpc-slurm capacity: 64 CPU, 256 GiB, 4 GPU")


def test_batch_state_lines() -> None:
    meta = {"annotations": {"interlink.eu/job-id": "42"}}
    queued = {"waiting": {"reason": "Queued: Priority"}}
    assert batch_state({"metadata": {}, "status": {}}) is None
    assert batch_state({"metadata": meta, "status": {}}) == "Submitted (job 42)"
    assert (
        batch_state({"metadata": meta, "status": {"containerStatuses": [{"state": queued}]}})
        == "Queued: Priority (job 42)"
    )
    running = {"phase": "Running", "containerStatuses": [{"state": {"running": {}}}]}
    assert batch_state({"metadata": meta, "status": running}) == "Running (job 42)"
    upstream = {"annotations": {"JobID": "7"}}
    failed = {"phase": "Failed", "message": "container main exited with code 1"}
    assert batch_state({"metadata": upstream, "status": failed}) == (
        "Failed: container main exited with code 1 (job 7)"
    )


async def test_live_form_says_why_nothing_is_offered() -> None:
    async def nodes(request: web.Request) -> web.Response:  # one virtual node, not Ready
        return web.json_response({"items": [node("hpc-slurm", ready="False")]})

    app = web.Application()
    app.router.add_get("/api/v1/nodes", nodes)
    app.router.add_get("/api/v1/pods", lambda r: web.json_response({"items": []}))
    async with TestServer(app) as server:
        api = SimpleNamespace(  # kr8s' API as the client reads it: the server and credentials
            auth=SimpleNamespace(
                server=str(server.make_url("")).rstrip("/"),
                token=None,
                proxy=None,
                tls_server_name=None,
                ssl_context=lambda: _async(True),
            )
        )
        form = interlink_profiles({"profiles": [HPC]}, api=lambda: _async(api))
        with pytest.raises(NoVirtualNodeReady) as none:
            await form(None)
    assert none.value.status_code == 503
    assert none.value.args == (
        "no profile can be offered right now: no virtual node of the configured profiles is "
        "Ready and connected to its edge (virtual nodes: hpc-slurm); try again later or ask "
        "your hub administrator",
    )


async def _async(value: Any) -> Any:
    return value


def test_the_documented_profiles_file_is_valid() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs/jupyterhub.md").read_text()
    first_yaml = re.findall(r"```yaml\n(.*?)```", doc, flags=re.S)[0]
    config = load_profiles(yaml.safe_load(first_yaml))
    assert [p.slug for p in config.profiles] == ["standard", "hpc"]
    [_, hpc] = build_profiles(config)
    annotations = hpc["kubespawner_override"]["extra_annotations"]
    assert annotations(spawner(partition="gpu")) == {
        "slurm-job.vk.io/flags": "--account=af-users --partition=gpu --time=02:00:00"
    }
