"""`interlink vk` command-line overrides (`--set`, `--internal-ip`) and the service-account-only
identity the Helm chart uses."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from kr8s._auth import KubeAuth  # what kr8s.asyncio.api() authenticates with

from interlink_core.errors import ConfigError
from interlink_vk.app import config_from_args, register_command
from interlink_vk.config import VKConfig
from interlink_vk.kube import kube_api_args


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="interlink")
    register_command(parser.add_subparsers())
    return parser.parse_args(["vk", *argv])


@pytest.fixture
def vk_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "vk.yaml"
    path.write_text("node_name: hpc\nedge: {url: 'https://edge:3000'}\ninternal_ip: 127.0.0.9\n")
    return path


def test_set_and_internal_ip_override_the_file(vk_yaml: Path) -> None:
    cfg = config_from_args(
        parse(
            "--config", str(vk_yaml),
            "--internal-ip=10.244.1.7",
            "--set=edge.token_file=/etc/interlink/edge/token",
            "--set", "kubelet_port=10555",
            "--set", "labels={site: hpc, tier: gpu}",
            "--set", "status_interval_seconds=2.5",
        )
    )  # fmt: skip
    assert cfg.internal_ip == "10.244.1.7"
    assert cfg.edge.url == "https://edge:3000"
    assert cfg.edge.token_file == Path("/etc/interlink/edge/token")
    assert cfg.kubelet_port == 10555
    assert cfg.labels == {"site": "hpc", "tier": "gpu"}
    assert cfg.status_interval_seconds == 2.5


def test_a_bad_override_is_refused_naming_the_key(vk_yaml: Path) -> None:
    with pytest.raises(ConfigError, match=r"kubelet_port: Input should be a valid integer"):
        config_from_args(parse("--config", str(vk_yaml), "--set", "kubelet_port=ten"))
    with pytest.raises(ConfigError, match=r"edge.tokn_file: unknown key"):
        config_from_args(parse("--config", str(vk_yaml), "--set", "edge.tokn_file=/x"))


def test_set_needs_key_equals_value(vk_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--config", str(vk_yaml), "--set", "kubelet_port")
    assert "expected KEY=VALUE, got 'kubelet_port'" in capsys.readouterr().err


def test_kubeconfig_and_service_account_exclude_each_other(vk_yaml: Path) -> None:
    with pytest.raises(ConfigError, match="give only one of kubeconfig, service_account_dir"):
        config_from_args(
            parse("--config", str(vk_yaml), "--kubeconfig", "/k", "--set", "service_account_dir=/s")
        )


async def test_service_account_only_never_reads_a_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token")
    (sa / "namespace").write_text("interlink")
    (sa / "ca.crt").write_text("")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: admin\n"
        "clusters: [{name: c, cluster: {server: 'https://admin.invalid:1'}}]\n"
        "users: [{name: u, user: {token: admin-token}}]\n"
        "contexts: [{name: admin, context: {cluster: c, user: u}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    cfg = VKConfig.model_validate(
        {"node_name": "hpc", "edge": {"url": "https://edge:3000"}, "service_account_dir": sa}
    )
    auth = KubeAuth(**kube_api_args(cfg))
    await auth.reauthenticate()
    assert auth.server == "https://10.96.0.1:443"
    assert auth.token == "sa-token"
    assert auth.server_ca_file == str(sa / "ca.crt")


def test_service_account_dir_without_a_token_is_refused(tmp_path: Path) -> None:
    cfg = VKConfig.model_validate(
        {"node_name": "hpc", "edge": {"url": "https://edge:3000"}, "service_account_dir": tmp_path}
    )
    with pytest.raises(ConfigError, match=f"service_account_dir: {tmp_path} holds no token file"):
        kube_api_args(cfg)
