"""hostPath volumes in the local and HTCondor plugins: refused unless ``host_path_prefixes``
names a prefix of the path (the rule itself: interlink_core.hostpaths, tested in
test_tenants.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from interlink_core.errors import BadRequest
from interlink_core.models import RetrievedPodData
from interlink_plugins.htcondor.config import HTCondorConfig
from interlink_plugins.htcondor.plugin import HTCondorPlugin
from interlink_plugins.local.plugin import LocalConfig, LocalPlugin

UID = "hp-1"


def host_pod(path: str) -> dict[str, Any]:
    container = {"name": "c", "image": "none", "command": ["true"]}
    container["volumeMounts"] = [{"name": "v", "mountPath": "/v"}]
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": UID},
        "spec": {"containers": [container], "volumes": [{"name": "v", "hostPath": {"path": path}}]},
    }


def refused(plugin: LocalPlugin, path: str) -> str:
    with pytest.raises(BadRequest) as err:
        asyncio.run(plugin.submit(RetrievedPodData(pod=host_pod(path))))
    assert not (plugin.settings.pods_path / UID).exists()  # refused before anything is written
    return err.value.message


def test_the_local_plugin_refuses_every_host_path_by_default(tmp_path: Path) -> None:
    plugin = LocalPlugin(LocalConfig(state_dir=tmp_path / "state"))
    assert refused(plugin, str(tmp_path)) == (
        f"spec.volumes[0].hostPath.path: {str(tmp_path)!r} is not a host path this site shares "
        "with pods (allowed prefixes: none); the site admin may add a prefix to "
        "host_path_prefixes"
    )


def test_the_local_plugin_refuses_host_paths_outside_its_prefixes(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "up").symlink_to(tmp_path)
    plugin = LocalPlugin(LocalConfig(state_dir=tmp_path / "state", host_path_prefixes=[shared]))
    for outside in ("/etc", f"{shared}/up", f"{shared}/../state"):
        message = refused(plugin, outside)
        assert message.startswith(f"spec.volumes[0].hostPath.path: {outside!r} is not a host")
        assert f"(allowed prefixes: {shared})" in message


class NoSchedd:
    """A schedd a refused pod never reaches."""

    def submit(self, desc: dict[str, str]) -> int:
        raise AssertionError("a refused pod was submitted")


def test_the_htcondor_plugin_refuses_host_paths_outside_its_prefixes(tmp_path: Path) -> None:
    cfg = HTCondorConfig(state_dir=tmp_path / "state", host_path_prefixes=[tmp_path / "shared"])
    plugin = HTCondorPlugin(cfg, schedd=NoSchedd())  # type: ignore[arg-type]
    with pytest.raises(BadRequest) as err:
        asyncio.run(plugin.submit(RetrievedPodData(pod=host_pod("/etc"))))
    assert err.value.message == (
        f"spec.volumes[0].hostPath.path: '/etc' is not a host path this site shares with pods "
        f"(allowed prefixes: {tmp_path / 'shared'}); the site admin may add a prefix to "
        "host_path_prefixes"
    )
    assert not (cfg.jobs_path / UID).exists()
