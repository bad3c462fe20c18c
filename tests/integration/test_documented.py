"""Behaviour docs/api-server.md and docs/wire-contract.md promise, on real processes: the API
server's ``required_claims``, the caller headers a plugin receives, the 501 for an upstream
plugin without ``/updateVolumes``, ``LimitBytes`` on SLURM logs, ``interlink doctor --plugin``
and ``--ca-file``."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import yaml

from tests.helpers.relay_plugin import requests_seen, start_relay_plugin
from tests.helpers.slurm import SlurmInfo
from tests.helpers.world import (
    INTERLINK,
    Issuer,
    Service,
    free_port,
    log_body,
    shell_pod,
    start_api,
    start_plugin,
    stop,
    tls,
    wait_ready,
)

pytestmark = pytest.mark.integration
DEV_TOKEN = "documented-dev-token"


class Wire:
    """A raw HTTP caller of an API server (``token``) or a plugin socket (``socket``)."""

    def __init__(self, base: str, token: str | None = None, socket: Path | None = None) -> None:
        transport = httpx.HTTPTransport(uds=str(socket)) if socket else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base, transport=transport, headers=headers, timeout=60)

    def call(self, method: str, path: str, body: Any) -> httpx.Response:
        return self.http.request(method, path, json=body)

    def create(self, pod: dict[str, Any]) -> None:
        r = self.call("POST", "/create", {"pod": pod, "container": []})
        assert r.status_code == 200, r.text

    def container_state(self, pod: dict[str, Any]) -> dict[str, Any]:
        r = self.call("GET", "/status", [pod])
        assert r.status_code == 200, r.text
        answer = r.json()
        return dict(answer[0]["containers"][0]["state"]) if answer else {}

    def wait(self, pod: dict[str, Any], key: str, timeout: float = 60) -> None:
        """Until the container's state has ``key`` (running, terminated)."""
        deadline = time.monotonic() + timeout
        while key not in (last := self.container_state(pod)):
            assert time.monotonic() < deadline, f"never {key}: {last}"
            time.sleep(0.1)


# --- required_claims -----------------------------------------------------------------------


def ping(api: Service, token: str) -> httpx.Response:
    return httpx.post(api.url + "/pinglink", headers={"Authorization": f"Bearer {token}"})


def test_required_claims_refuse_a_token_without_the_claim(
    issuer: Issuer, plugin: Service, tmp_path: Path
) -> None:
    """``required_claims`` (exact values): a valid token without the claim, or with another
    value, is 403 naming the claim; with it, accepted. The docs' example included."""
    oidc = issuer.oidc_config(required_claims={"tenant": "default", "email_verified": "True"})
    api = start_api(tmp_path, {"plugin": {"url": plugin.url}, "auth": {"oidc": oidc}})
    try:
        ok = issuer.mint(tenant="default", email_verified=True)
        assert ping(api, ok).status_code == 200, ping(api, ok).text
        refused = {
            "no email_verified": issuer.mint(tenant="default"),
            "email not verified": issuer.mint(tenant="default", email_verified=False),
            "other tenant": issuer.mint(tenant="elsewhere", email_verified=True),
        }
        for why, token in refused.items():
            resp = ping(api, token)
            assert resp.status_code == 403, (why, resp.text)
            claim = "'tenant'" if why == "other tenant" else "'email_verified'"
            assert claim in resp.json()["error"], (why, resp.text)
    finally:
        api.stop()
    # tokens the real issuer grants: users carry a tenant claim, client credentials none
    oidc = issuer.oidc_config(required_claims={"tenant": "default"})
    api = start_api(tmp_path / "b", {"plugin": {"url": plugin.url}, "auth": {"oidc": oidc}})
    try:
        assert ping(api, issuer.user_token("alice")).status_code == 200
        resp = ping(api, issuer.client_token())
        assert resp.status_code == 403
        assert resp.json()["error"] == "the token's 'tenant' claim must be 'default'"
    finally:
        api.stop()


# --- what reaches the plugin ----------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream(plugin: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """An upstream-style plugin (no /updateVolumes) relaying to the local plugin."""
    svc = start_relay_plugin(tmp_path_factory.mktemp("upstream"), plugin)
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def oidc_api(
    issuer: Issuer, upstream: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """An API server in front of the upstream-style plugin; tenants from the ``tenant`` claim
    (alice and bob are both in nanoidp's tenant ``default``)."""
    oidc = issuer.oidc_config(tenant_claim="tenant")
    svc = start_api(
        tmp_path_factory.mktemp("api"), {"plugin": {"url": upstream.url}, "auth": {"oidc": oidc}}
    )
    yield svc
    svc.stop()


def test_plugin_receives_the_callers_tenant_and_subject(
    oidc_api: Service, upstream: Service, issuer: Issuer
) -> None:
    """Every call reaches the plugin with ``InterLink-Tenant`` and ``InterLink-Subject``
    (pod calls and the ping)."""
    wire = Wire(oidc_api.url, token=issuer.user_token("alice"))
    pod = shell_pod("headers", "echo hello")
    start = len(requests_seen(upstream))
    wire.create(pod)
    wire.wait(pod, "terminated")
    assert wire.call("GET", "/getLogs", log_body(pod)).text == "hello\n"
    assert wire.call("DELETE", "/delete", pod).status_code == 200
    seen = [r for r in requests_seen(upstream)[start:] if r["path"] != "/healthz"]
    assert {r["path"] for r in seen} == {"/create", "/status", "/getLogs", "/delete"}
    mark = len(requests_seen(upstream))
    assert ping(oidc_api, issuer.user_token("alice")).status_code == 200
    pinged = [r for r in requests_seen(upstream)[mark:] if r["path"] != "/healthz"]
    assert [r["path"] for r in pinged] == ["/status"]  # the ping: a /status call with []
    seen += pinged
    for request in seen:
        assert request["InterLink-Tenant"] == "default", request
        assert request["InterLink-Subject"] == "alice", request
        assert request["InterLink-Http-Session"], request


def test_update_volumes_is_501_for_an_upstream_plugin_without_the_route(
    oidc_api: Service, upstream: Service, issuer: Issuer
) -> None:
    wire = Wire(oidc_api.url, token=issuer.user_token("alice"))
    pod = shell_pod("no-update", "sleep 30")
    wire.create(pod)
    try:
        wire.wait(pod, "running")
        before = len(requests_seen(upstream))
        resp = wire.call("POST", "/updateVolumes", {"pod": pod})
        assert resp.status_code == 501, resp.text
        assert "/updateVolumes" in resp.json()["error"], resp.text
        # the plugin was asked (and said it has no such route): nothing was decided for it
        asked = [r["path"] for r in requests_seen(upstream)[before:]]
        assert asked == ["/updateVolumes"]
        assert "running" in wire.container_state(pod)  # the pod is untouched
    finally:
        assert wire.call("DELETE", "/delete", pod).status_code == 200


# --- LimitBytes on SLURM --------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm_edge(slurm: SlurmInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The SLURM plugin (``runtime: host``) as a process on its socket."""
    root = tmp_path_factory.mktemp("slurm")
    svc = start_plugin(root, "slurm", {"runtime": "host", "partition": slurm.partition})
    yield svc
    svc.stop()


def test_slurm_logs_honour_limit_bytes(slurm_edge: Service, tmp_path: Path) -> None:
    """Upstream's ``LimitBytes`` (an alias of ``Bytes``): the first N bytes of the log, at the
    plugin's socket and through the API server; a followed log ends at N bytes."""
    api = start_api(
        tmp_path, {"plugin": {"url": slurm_edge.url}, "auth": {"insecure_dev_token": DEV_TOKEN}}
    )
    plugin = Wire("http://plugin", socket=slurm_edge.socket)
    edge = Wire(api.url, token=DEV_TOKEN)
    done = shell_pod("limit-bytes", "echo alpha; echo bravo; echo charlie")
    running = shell_pod("limit-follow", "echo one; echo two; sleep 60")
    try:
        edge.create(done)
        edge.create(running)
        edge.wait(done, "terminated")
        for wire in (plugin, edge):
            whole = wire.call("GET", "/getLogs", log_body(done)).text
            assert whole == "alpha\nbravo\ncharlie\n"
            cut = wire.call("GET", "/getLogs", log_body(done, LimitBytes=8))
            assert cut.status_code == 200, cut.text
            assert cut.text == "alpha\nbr"
            assert wire.call("GET", "/getLogs", log_body(done, LimitBytes=100)).text == whole
        edge.wait(running, "running")
        for wire in (plugin, edge):
            t0 = time.monotonic()
            body = log_body(running, LimitBytes=6, Follow=True)
            with wire.http.stream("GET", "/getLogs", json=body, timeout=30) as resp:
                text = b"".join(resp.iter_bytes())
            assert text == b"one\ntw"
            assert time.monotonic() - t0 < 30  # it ended at 6 bytes, not with the job
    finally:
        for pod in (done, running):
            edge.call("DELETE", "/delete", pod)
        api.stop()


# --- interlink doctor ----------------------------------------------------------------------


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INTERLINK, "doctor", *args], capture_output=True, text=True, timeout=120
    )


def start_tcp_plugin(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The local plugin served on a loopback TCP port (``port:`` in its configuration; without
    a token only with ``insecure_dev``, which loopback allows)."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = root / "plugin.yaml"
    settings = {"state_dir": str(root / "state"), "port": port, "insecure_dev": True}
    cfg.write_text(yaml.safe_dump(settings))
    log = root / "plugin.log"
    proc = subprocess.Popen(
        [*INTERLINK, "plugin", "local", "--config", str(cfg), "--log-level", "warning"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/healthz", proc, log)
    return proc, url


def test_doctor_checks_a_plugin_given_by_url(plugin: Service, tmp_path: Path) -> None:
    out = doctor("--plugin", plugin.url)
    assert out.returncode == 0, out.stdout
    assert f"ok    plugin socket {plugin.socket} exists" in out.stdout
    assert "ok    plugin answers ping: ok (cpu " in out.stdout
    assert out.stdout.rstrip().endswith("all checks passed")
    proc, url = start_tcp_plugin(tmp_path / "tcp")
    try:
        out = doctor("--plugin", url)
        assert out.returncode == 0, out.stdout
        assert "ok    plugin answers ping: ok (cpu " in out.stdout
    finally:
        stop(proc)
    out = doctor("--plugin", url)  # the plugin is gone
    assert out.returncode == 1
    assert f"FAIL  plugin at {url} does not answer" in out.stdout
    assert "fix: check that the plugin runs" in out.stdout
    missing = tmp_path / "none.sock"
    out = doctor("--plugin", f"unix://{missing}")
    assert out.returncode == 1
    assert f"FAIL  plugin socket {missing} does not exist" in out.stdout
    assert "fix: start the plugin (interlink plugin <backend>)" in out.stdout


def test_doctor_trusts_a_private_ca_with_ca_file(plugin: Service, tmp_path: Path) -> None:
    """An HTTPS API server whose certificate a private CA signed: checked in full with
    ``--ca-file``; without it, the failure names the certificate and the fix."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    listen = {"tls": {"cert": str(tmp_path / "server.pem"), "key": str(tmp_path / "server.key")}}
    api = start_api(
        tmp_path,
        {
            "plugin": {"url": plugin.url},
            "listen": listen,
            "auth": {"insecure_dev_token": DEV_TOKEN},
        },
        verify=tls(tmp_path / "ca.pem"),
    )
    try:
        assert api.url.startswith("https://")
        out = doctor("--url", api.url, "--token", DEV_TOKEN, "--ca-file", str(tmp_path / "ca.pem"))
        assert out.returncode == 0, out.stdout
        assert f"ok    API server {api.url} is up" in out.stdout
        assert "ok    token accepted; the API server reaches its plugin (ok)" in out.stdout
        out = doctor("--url", api.url, "--token", DEV_TOKEN)
        assert out.returncode == 1, out.stdout
        assert f"FAIL  API server {api.url} is not reachable" in out.stdout
        assert "certificate" in out.stdout
        assert "fix: pass --ca-file with the CA that signed the API server's certificate" in (
            out.stdout
        )
    finally:
        api.stop()
