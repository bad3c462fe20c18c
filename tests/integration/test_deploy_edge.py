"""The edge as docs/deploy-edge.md deploys it: the systemd units of deploy/edge/ pass
`systemd-analyze verify`, and their commands, with the shipped configurations (only the
site's own values swapped: addresses, paths, issuer, certificates, partition), run a working
edge on the real SLURM that `interlink doctor` accepts, that takes OIDC tokens of the real
issuer (with the required group) and client certificates, and that refuses a token without
the group."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import yaml

from tests.helpers.slurm import SlurmInfo
from tests.helpers.world import INTERLINK, REPO, Issuer, free_port, need, stop, tls, wait_ready

pytestmark = pytest.mark.integration

EDGE = REPO / "deploy/edge"
INSTALLED = "/opt/interlink/bin/interlink"  # where the units expect the command


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    need(analyze is not None, "systemd-analyze (Debian package systemd) is not installed")
    assert analyze is not None
    here = str(Path(sys.executable).parent / "interlink")  # this venv's console script
    units = []
    for source in sorted(EDGE.glob("*.service")):
        copy = tmp_path / source.name
        copy.write_text(source.read_text().replace(INSTALLED, here))
        units.append(str(copy))
    out = subprocess.run(
        [analyze, "verify", *units], capture_output=True, text=True, timeout=60, check=False
    )
    assert (out.returncode, out.stdout + out.stderr) == (0, "")


def exec_start(name: str, instance: str, etc: Path) -> list[str]:
    """The unit's command, run from this checkout, with /etc/interlink/ moved to ``etc``."""
    line = next(
        line.partition("=")[2]
        for line in (EDGE / name).read_text().splitlines()
        if line.startswith("ExecStart=")
    )
    argv = shlex.split(line.replace("%i", instance).replace("/etc/interlink/", f"{etc}/"))
    assert argv[0] == INSTALLED
    return [*INTERLINK, *argv[1:]]


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Path]:
    """The site's server certificate and a cluster's client certificate, from two CAs."""
    server_ca, clients_ca = trustme.CA(), trustme.CA()
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "server", "server-key",
             "clients-ca", "client", "client-key")}  # fmt: skip
    server_ca.cert_pem.write_to_path(str(files["ca"]))
    clients_ca.cert_pem.write_to_path(str(files["clients-ca"]))
    server = server_ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(files["server"]))
    server.private_key_pem.write_to_path(str(files["server-key"]))
    client = clients_ca.issue_cert("cluster-c.example", common_name="cluster-c")
    client.cert_chain_pems[0].write_to_path(str(files["client"]))
    client.private_key_pem.write_to_path(str(files["client-key"]))
    return files


def site_configs(
    etc: Path, state: Path, slurm: SlurmInfo, issuer: Issuer, certs: dict[str, Path], port: int
) -> None:
    """deploy/edge/*.yaml with this site's values (everything else as shipped)."""
    api: dict[str, Any] = yaml.safe_load((EDGE / "api.yaml").read_text())
    api["listen"].update({"host": "127.0.0.1", "port": port})
    api["listen"]["tls"] = {"cert": str(certs["server"]), "key": str(certs["server-key"])}
    api["plugin"]["url"] = f"unix://{state}/slurm/plugin.sock"
    oidc = api["auth"]["oidc"]
    oidc.update({"issuer": issuer.url, "audience": issuer.audience, "ca_file": str(issuer.ca_file)})
    api["auth"]["mtls"]["client_ca"] = str(certs["clients-ca"])
    api["state_dir"] = str(state / "api")
    plugin: dict[str, Any] = yaml.safe_load((EDGE / "plugin-slurm.yaml").read_text())
    plugin.update(
        state_dir=str(state / "slurm"),
        work_dir=str(state / "jobs"),
        runtime="host",  # no apptainer on the test machines
        partition=slurm.partition,
    )
    del plugin["account"]  # the test cluster has no such account
    etc.mkdir()
    (etc / "api.yaml").write_text(yaml.safe_dump(api))
    (etc / "plugin-slurm.yaml").write_text(yaml.safe_dump(plugin))


@pytest.fixture
def edge(
    tmp_path: Path, slurm: SlurmInfo, issuer: Issuer, certs: dict[str, Path]
) -> Iterator[tuple[str, Path]]:
    """The plugin and API server units' commands, started in their order; (URL, /etc dir)."""
    etc, state, port = tmp_path / "etc", tmp_path / "var", free_port()
    site_configs(etc, state, slurm, issuer, certs, port)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, instance, ready in (
            ("interlink-plugin@.service", "slurm", f"unix://{state}/slurm/plugin.sock"),
            ("interlink-api.service", "", f"https://127.0.0.1:{port}/healthz"),
        ):
            log = tmp_path / f"{name}.log"
            procs.append(
                subprocess.Popen(
                    exec_start(name, instance, etc),
                    stdout=log.open("ab"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            wait_ready(ready, procs[-1], log, verify=tls(certs["ca"]))
        yield f"https://127.0.0.1:{port}", etc
    finally:
        for proc in reversed(procs):
            stop(proc)


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INTERLINK, "doctor", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_units_run_an_edge_that_doctor_accepts(
    edge: tuple[str, Path], issuer: Issuer, certs: dict[str, Path]
) -> None:
    url, etc = edge
    checked = doctor("--config", str(etc / "api.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "FAIL" not in checked.stdout
    assert "plugin answers ping" in checked.stdout
    token = issuer.user_token("alice")  # in the required group interlink-users
    accepted = doctor("--url", url, "--token", token, "--ca-file", str(certs["ca"]))
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "token accepted; the API server reaches its plugin" in accepted.stdout
    refused = doctor(
        "--url", url, "--token", issuer.user_token("bob"), "--ca-file", str(certs["ca"])
    )
    assert refused.returncode == 1
    assert "the API server refuses the token" in refused.stdout


def test_a_cluster_with_a_client_certificate_gets_in(
    edge: tuple[str, Path], certs: dict[str, Path]
) -> None:
    url, _ = edge
    with_cert = tls(certs["ca"], (certs["client"], certs["client-key"]))
    with httpx.Client(verify=with_cert, timeout=30) as http:
        answer = http.post(url + "/pinglink")
    assert answer.status_code == 200, answer.text
    with httpx.Client(verify=tls(certs["ca"]), timeout=30) as http:
        assert http.post(url + "/pinglink").status_code == 401
