"""The examples in docs/ are run for real: the one-file plugin of docs/plugin-sdk.md serves
behind the real API server."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from interlink_core.client import InterLinkClient, static_token
from interlink_core.models import LogStruct, PodCreateRequests, PodStatus
from tests.helpers.world import REPO, start_api, stop, wait_ready

pytestmark = pytest.mark.integration


def python_blocks(doc: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)


async def ended(edge: InterLinkClient, pod: dict[str, Any], timeout: float = 30) -> PodStatus:
    """Wait until the pod's container terminated; its status."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        [s] = await edge.status([pod])
        if "terminated" in s.containers[0]["state"]:
            return s
        assert loop.time() < deadline, f"the container never ended: {s}"
        await asyncio.sleep(0.1)


async def test_plugin_sdk_example_runs_behind_the_api_server(tmp_path: Path) -> None:
    [code] = python_blocks(REPO / "docs/plugin-sdk.md")
    script = tmp_path / "timer_plugin.py"
    script.write_text(code)
    sock = tmp_path / "timer.sock"
    log = tmp_path / "timer.log"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--socket", str(sock), "--state-dir", str(tmp_path / "st")],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(f"unix://{sock}|/healthz", proc, log)
        api = start_api(
            tmp_path / "api",
            {"plugin": {"url": f"unix://{sock}"}, "auth": {"insecure_dev_token": "dev-token-123"}},
        )
        try:
            pod = {
                "metadata": {"name": "t", "namespace": "d", "uid": str(uuid.uuid4())},
                "spec": {"containers": [{"name": "main", "command": ["echo", "hi there"]}]},
            }
            async with InterLinkClient(api.url, token=static_token("dev-token-123")) as edge:
                created = await edge.create(PodCreateRequests(pod=pod))
                assert created.PodJID.startswith("timer-")
                [s] = await edge.status([pod])
                assert "running" in s.containers[0]["state"]
                s = await ended(edge, pod)  # the example's jobs take a second
                assert s.containers[0]["state"]["terminated"]["reason"] == "Completed"
                req = LogStruct(
                    Namespace="d", PodUID=pod["metadata"]["uid"], PodName="t", ContainerName="main"
                )
                assert await edge.logs(req) == b"echo hi there\n"
                await edge.delete(pod)
                assert await edge.status([pod]) == []
        finally:
            api.stop()
    finally:
        stop(proc)


def test_readme_python_example_runs(tmp_path: Path) -> None:
    [code] = python_blocks(REPO / "README.md")
    script = tmp_path / "example.py"
    script.write_text(code)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("job local-")
    assert lines[1:] == ["exit code 0", "logs: hello"]


def test_documented_api_server_config_is_valid() -> None:
    import yaml

    from interlink_core.apiserver import ApiServerConfig
    from interlink_core.config import build_config

    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "docs/api-server.md").read_text(), re.S)
    config = build_config(ApiServerConfig, yaml.safe_load(blocks[0]), "docs/api-server.md")
    assert config.auth.oidc is not None and config.auth.oidc.required_groups == ["interlink-users"]
    assert config.auth.mtls is not None and config.listen.tls is not None


def test_documented_slurm_config_is_valid() -> None:
    import yaml

    from interlink_core.config import build_config
    from interlink_plugins.slurm.plugin import SlurmPluginConfig

    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "docs/plugins/slurm.md").read_text(), re.S)
    config = build_config(SlurmPluginConfig, yaml.safe_load(blocks[0]), "docs/plugins/slurm.md")
    assert config.flavors["gpu"].flags == ["--partition=gpu", "--qos=gpu"]
    assert config.runtime == "apptainer" and config.gpu_flavor == "gpu"


def test_documented_vk_config_is_valid() -> None:
    import yaml

    from interlink_core.config import build_config
    from interlink_vk.config import VKConfig

    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "docs/vk.md").read_text(), re.S)
    config = build_config(VKConfig, yaml.safe_load(blocks[0]), "docs/vk.md")
    assert config.edge.oidc is not None and config.capacity.accelerators == {"nvidia.com/gpu": 8}
