"""What a site admin copies: the edge's systemd units and configurations (deploy/edge/) and the
VK image's Containerfile. They are read as systemd and the programs read them, and checked
against each other and against the Helm chart."""

from __future__ import annotations

import configparser
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from interlink_core.apiserver import ApiServerConfig
from interlink_core.config import build_config
from interlink_plugins.slurm.config import SlurmConfig
from tests.helpers.world import REPO

EDGE = REPO / "deploy/edge"


def unit(name: str) -> configparser.RawConfigParser:
    """A unit file as systemd reads it (keys are case-sensitive, values may repeat)."""
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((EDGE / name).read_text())
    return parser


def exec_start(name: str, instance: str = "") -> list[str]:
    return shlex.split(unit(name)["Service"]["ExecStart"].replace("%i", instance))


def state_directory(name: str, instance: str = "") -> Path:
    return Path("/var/lib") / unit(name)["Service"]["StateDirectory"].replace("%i", instance)


def test_the_units_run_the_api_server_and_a_plugin_with_the_shipped_configs() -> None:
    assert exec_start("interlink-api.service") == [
        "/opt/interlink/bin/interlink", "api", "--config", "/etc/interlink/api.yaml",
    ]  # fmt: skip
    assert exec_start("interlink-plugin@.service", "slurm") == [
        "/opt/interlink/bin/interlink", "plugin", "slurm",
        "--config", "/etc/interlink/plugin-slurm.yaml",
    ]  # fmt: skip
    api = build_config(ApiServerConfig, yaml.safe_load((EDGE / "api.yaml").read_text()))
    plugin = build_config(SlurmConfig, yaml.safe_load((EDGE / "plugin-slurm.yaml").read_text()))
    # the API server calls the plugin on the socket in the plugin's state directory, which is
    # the directory systemd creates for it (and for the API server's tenant registry)
    assert api.plugin.url == "unix:///var/lib/interlink/slurm/plugin.sock"
    assert Path(api.plugin.url.removeprefix("unix://")) == plugin.state_dir / "plugin.sock"
    assert state_directory("interlink-plugin@.service", "slurm") == plugin.state_dir
    assert state_directory("interlink-api.service") == api.state_dir
    assert api.auth.oidc is not None and api.auth.mtls is not None


def test_a_plugin_restart_stops_only_the_plugin() -> None:
    service = unit("interlink-plugin@.service")["Service"]
    assert service["KillMode"] == "process"
    assert service["Restart"] == "on-failure"
    order = unit("interlink-api.service")["Unit"]["After"].split()
    assert "interlink-plugin@slurm.service" in order


def containerfile() -> list[tuple[str, str]]:
    lines = (REPO / "Containerfile").read_text().replace("\\\n", " ").splitlines()
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1])
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_the_vk_image_is_what_the_chart_runs() -> None:
    values = yaml.safe_load((REPO / "helm/interlink-vk/values.yaml").read_text())
    instructions = dict(containerfile())
    assert yaml.safe_load(instructions["ENTRYPOINT"]) == values["command"] == ["interlink"]
    uid = instructions["USER"].split(":")[0]
    assert int(uid) == values["securityContext"]["runAsUser"] == 1000
    assert re.search(r"pip install .*\[vk\]", instructions["RUN"])
    base = instructions["FROM"]
    assert base == "docker.io/library/python:3.11-slim"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"  # what the base image's Python satisfies


@pytest.mark.parametrize("name", ["interlink-api.service", "interlink-plugin@.service"])
def test_units_have_an_install_section(name: str) -> None:
    assert unit(name)["Install"]["WantedBy"] == "multi-user.target"
