"""The interlink-vk Helm chart as `helm lint` and `helm template` see it: its values are checked
(a typo or a wrong type is refused, naming the field) and what it renders is what docs/helm.md
says, down to a configuration that `interlink vk` accepts."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from interlink_core.config import load_config
from interlink_vk.app import register_command
from interlink_vk.config import VKConfig
from tests.helpers.helm import CHART, KUBE_VERSION, helm, template
from tests.helpers.world import REPO

EDGE = ["--set", "edge.url=https://edge.example.org:3000", "--set", "edge.credentials.token=t0k"]


def rendered(*args: str, release: str = "vk") -> dict[tuple[str, str], dict[str, Any]]:
    """The objects `helm template` renders, by (kind, name)."""
    out = template(*args, release=release)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def vk_container(objs: dict[tuple[str, str], dict[str, Any]], name: str = "vk") -> dict[str, Any]:
    spec = objs[("Deployment", name)]["spec"]["template"]["spec"]
    return dict(spec["containers"][0])


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]


def test_lint_strict_passes() -> None:
    out = helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *EDGE)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


@pytest.mark.parametrize(
    ("values", "error"),
    [
        (["--set", "nodeSelecter.a=b"], "at '': additional properties 'nodeSelecter' not allowed"),
        (
            ["--set", "node.lables.site=hpc"],
            "at '/node': additional properties 'lables' not allowed",
        ),
        (["--set-string", "kubeletPort=10250"], "at '/kubeletPort': got string, want integer"),
        (
            ["--set-json", "settings.status_interval_seconds=-1"],
            "at '/settings/status_interval_seconds': exclusiveMinimum: got -1, want 0",
        ),
        (
            ["--set", "settings.status_interval=5"],
            "at '/settings': additional properties 'status_interval' not allowed",
        ),
        (
            ["--set", "edge.auth=password"],
            "at '/edge/auth': value must be one of 'token', 'oidc', 'mtls', 'none'",
        ),
        (
            ["--set", "node.taints[0].key=site,node.taints[0].effect=NoScheduel"],
            "at '/node/taints/0/effect': value must be one of",
        ),
        (
            ["--set", "node.capacity.memory=lots"],
            "at '/node/capacity/memory': 'lots' does not match",
        ),
        (["--set", "node.name=Not_A_Node"], "at '/node/name': 'Not_A_Node' does not match"),
        (["--set", "replicas=2"], "at '': additional properties 'replicas' not allowed"),
        (
            ["--set", "edge.url=edge.example.org"],
            "at '/edge/url': 'edge.example.org' does not match",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_field(values: list[str], error: str) -> None:
    out = template(*EDGE, *values)
    assert out.returncode != 0, out.stdout[:500]
    assert "values don't meet the specifications of the schema" in out.stderr
    assert error in out.stderr, out.stderr


def test_edge_url_is_required() -> None:
    out = template("--set", "edge.credentials.token=t0k")
    assert out.returncode != 0
    assert "at '/edge/url': '' does not match pattern" in out.stderr, out.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "edge.credentials.token is required with edge.auth=token"),
        (
            ["--set", "edge.auth=oidc", "--set", "edge.credentials.clientSecret=s"],
            "edge.oidc.issuer and edge.oidc.clientId are required with edge.auth=oidc",
        ),
        (["--set", "edge.auth=mtls"], "edge.credentials.tlsCrt and edge.credentials.tlsKey"),
    ],
)
def test_missing_credentials_are_named(values: list[str], message: str) -> None:
    out = template("--set", "edge.url=https://edge.example.org:3000", *values)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr


def test_one_vk_per_node_with_the_pod_ip_as_internal_ip() -> None:
    objs = rendered(*EDGE)
    deploy = objs[("Deployment", "vk-interlink-vk")]
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    c = vk_container(objs, "vk-interlink-vk")
    assert c["image"] == "interlink-vk:0.1.0"
    assert c["command"] == ["interlink"]
    assert "--internal-ip=$(POD_IP)" in c["args"]
    pod_ip = next(e for e in c["env"] if e["name"] == "POD_IP")
    assert pod_ip["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "kubelet", "scheme": "HTTPS"}
    assert c["ports"] == [{"name": "kubelet", "containerPort": 10250, "protocol": "TCP"}]
    spec = deploy["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "vk-interlink-vk"
    assert ("ServiceAccount", "vk-interlink-vk") in objs
    assert ("ClusterRole", "vk-interlink-vk") in objs
    binding = objs[("ClusterRoleBinding", "vk-interlink-vk")]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "vk-interlink-vk", "namespace": "interlink"}
    ]


def vk_config_of(
    objs: dict[tuple[str, str], dict[str, Any]], name: str, args: list[str] | None = None
) -> VKConfig:
    """What `interlink vk` makes of the rendered ConfigMap and the container's arguments (the
    Deployment's, unless ``args`` are given)."""
    text = objs[("ConfigMap", name)]["data"]["vk.yaml"]
    args = args or vk_container(objs, name)["args"]
    parser = argparse.ArgumentParser()
    register_command(parser.add_subparsers())
    parsed = parser.parse_args(args)
    overrides = dict(parsed.settings)
    if parsed.internal_ip:
        overrides["internal_ip"] = parsed.internal_ip.replace("$(POD_IP)", "10.1.2.3")
    path = Path(parsed.config)
    assert str(path) == "/etc/interlink/config/vk.yaml"
    data = yaml.safe_load(text)
    for key, value in overrides.items():
        parts = key.split(".")
        d = data
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = value
    return load_config(VKConfig, None, data)


def test_config_rendered_from_values_is_what_the_vk_reads(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        """
node:
  name: hpc-slurm
  labels: {site: hpc}
  taints: [{key: site, value: hpc, effect: NoExecute}]
  capacity: {cpu: 64, memory: 256Gi, accelerators: {nvidia.com/gpu: 4}}
settings: {status_interval_seconds: 2.5, ping_interval_seconds: 7}
kubeletPort: 10555
"""
    )
    objs = rendered(*EDGE, "-f", str(values), release="hpc")
    cfg = vk_config_of(objs, "hpc-interlink-vk")
    assert cfg.node_name == "hpc-slurm"
    assert cfg.labels == {"site": "hpc"}
    assert [(t.key, t.value, t.effect) for t in cfg.taints] == [("site", "hpc", "NoExecute")]
    assert (cfg.capacity.cpu, cfg.capacity.memory) == ("64", "256Gi")
    assert cfg.capacity.accelerators == {"nvidia.com/gpu": 4}
    assert cfg.capacity.pods == "1000"
    assert cfg.status_interval_seconds == 2.5
    assert cfg.ping_interval_seconds == 7
    assert cfg.kubelet_port == 10555
    assert cfg.internal_ip == "10.1.2.3"
    assert cfg.edge.url == "https://edge.example.org:3000"
    assert cfg.edge.token_file == Path("/etc/interlink/edge/token")
    assert cfg.service_account_dir == Path("/var/run/secrets/kubernetes.io/serviceaccount")
    assert cfg.state_dir == Path("/var/lib/interlink/vk")
    assert cfg.kubelet_cert is None  # the CSR flow
    secret = objs[("Secret", "hpc-interlink-vk-edge")]
    assert secret["stringData"] == {"token": "t0k"}
    mounts = {
        m["name"]: m["mountPath"] for m in vk_container(objs, "hpc-interlink-vk")["volumeMounts"]
    }
    assert mounts == {
        "config": "/etc/interlink/config",
        "edge": "/etc/interlink/edge",
        "state": "/var/lib/interlink/vk",
    }


def test_oidc_client_credentials() -> None:
    objs = rendered(
        "--set", "edge.url=https://edge.example.org:3000,edge.auth=oidc",
        "--set", "edge.oidc.issuer=https://idp.example.org/realms/hpc,edge.oidc.clientId=vk-af",
        "--set", "edge.oidc.audience=interlink,edge.credentials.clientSecret=s3cret",
        "--set", "edge.credentials.caCrt=PEM",
    )  # fmt: skip
    cfg = vk_config_of(objs, "vk-interlink-vk")
    assert cfg.edge.token_file is None and cfg.edge.token is None
    assert cfg.edge.oidc is not None
    assert cfg.edge.oidc.issuer == "https://idp.example.org/realms/hpc"
    assert cfg.edge.oidc.client_id == "vk-af"
    assert cfg.edge.oidc.audience == "interlink"
    assert cfg.edge.oidc.client_secret_file == Path("/etc/interlink/edge/client-secret")
    assert cfg.edge.ca_file == Path("/etc/interlink/edge/ca.crt")
    assert cfg.edge.oidc.ca_file == Path("/etc/interlink/edge/ca.crt")
    secret = objs[("Secret", "vk-interlink-vk-edge")]
    assert secret["stringData"] == {"client-secret": "s3cret", "ca.crt": "PEM"}


def test_mtls_from_an_existing_secret_and_a_supplied_kubelet_certificate() -> None:
    objs = rendered(
        "--set", "edge.url=https://edge.example.org:3000,edge.auth=mtls",
        "--set", "edge.existingSecret=site-creds,edge.secretHasCA=true",
        "--set", "kubeletCert.existingSecret=vk-serving",
    )  # fmt: skip
    assert not any(kind == "Secret" for kind, _ in objs)
    cfg = vk_config_of(objs, "vk-interlink-vk")
    assert cfg.edge.client_cert == Path("/etc/interlink/edge/tls.crt")
    assert cfg.edge.client_key == Path("/etc/interlink/edge/tls.key")
    assert cfg.edge.ca_file == Path("/etc/interlink/edge/ca.crt")
    assert cfg.kubelet_cert == Path("/etc/interlink/kubelet/tls.crt")
    assert cfg.kubelet_key == Path("/etc/interlink/kubelet/tls.key")
    spec = objs[("Deployment", "vk-interlink-vk")]["spec"]["template"]["spec"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    assert secrets == {"edge": "site-creds", "kubelet-cert": "vk-serving"}


def test_two_releases_are_two_nodes_that_do_not_collide() -> None:
    a = rendered(*EDGE, "--set", "node.name=hpc-a", release="site-a")
    b = rendered(*EDGE, "--set", "node.name=hpc-b", release="site-b")
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
    names_a = {key for key in a if key[0] in cluster_scoped}
    names_b = {key for key in b if key[0] in cluster_scoped}
    assert names_a and not names_a & names_b
    assert vk_config_of(a, "site-a-interlink-vk").node_name == "hpc-a"
    assert vk_config_of(b, "site-b-interlink-vk").node_name == "hpc-b"


def test_config_changes_roll_the_vk_pod() -> None:
    def checksum(*extra: str) -> str:
        objs = rendered(*EDGE, *extra)
        meta = objs[("Deployment", "vk-interlink-vk")]["spec"]["template"]["metadata"]
        return str(meta["annotations"]["checksum/config"])

    assert checksum() == checksum()
    assert checksum() != checksum("--set", "node.labels.site=hpc")


def test_uninstall_hook_removes_the_node_through_the_vk_and_can_be_turned_off() -> None:
    objs = rendered(*EDGE)
    job = objs[("Job", "vk-interlink-vk-remove-node")]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == [
        "vk",
        "--config=/etc/interlink/config/vk.yaml",
        "--set=service_account_dir=/var/run/secrets/kubernetes.io/serviceaccount",
        "--set=edge.token_file=/etc/interlink/edge/token",
        "--remove-node",
        "--stop-deployment=interlink/vk-interlink-vk",
        "--remove-timeout=240",
        "--log-level=info",
    ]
    role = objs[("Role", "vk-interlink-vk-remove-node")]
    assert role["rules"] == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": ["vk-interlink-vk"],
            "verbs": ["get", "delete"],
        }
    ]
    off = rendered(*EDGE, "--set", "removeNodeOnUninstall.enabled=false")
    assert not [key for key in off if key[0] == "Job" or key[1].endswith("-remove-node")]


@pytest.mark.parametrize(
    "auth",
    [
        ["--set", "edge.credentials.token=t0k"],
        [
            "--set", "edge.auth=oidc,edge.oidc.issuer=https://idp.example.org,edge.oidc.clientId=c",
            "--set", "edge.credentials.clientSecret=s",
        ],
        ["--set", "edge.auth=mtls,edge.credentials.tlsCrt=C,edge.credentials.tlsKey=K"],
        ["--set", "edge.auth=none"],
    ],
)  # fmt: skip
def test_the_uninstall_hook_reads_a_complete_configuration(auth: list[str]) -> None:
    objs = rendered("--set", "edge.url=https://edge.example.org:3000", *auth)
    job = objs[("Job", "vk-interlink-vk-remove-node")]
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    cfg = vk_config_of(objs, "vk-interlink-vk", args)
    assert cfg.node_name == "vk"
    assert cfg.service_account_dir == Path("/var/run/secrets/kubernetes.io/serviceaccount")
