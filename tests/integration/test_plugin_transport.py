"""The plugin API locked down (issue 14), against real processes: ``interlink plugin`` refuses an
open TCP port, checks the shared token (also when the API server calls it), makes its socket
owner-only, limits bodies; the API server and the plugin refuse bad pod names and non-JSON
bodies with one error shape; ``interlink api`` / ``interlink doctor`` refuse and report
configurations that cannot work; the VK names a missing kubeconfig."""

from __future__ import annotations

import socket
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import yaml

from tests.helpers.world import (
    INTERLINK,
    Service,
    free_port,
    start_api,
    start_plugin,
    stop,
    tls,
    wait_ready,
)

pytestmark = pytest.mark.integration
DEV_TOKEN = "dev-token-for-transport-tests"


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``interlink ...`` to its end (for commands that must refuse to start)."""
    return subprocess.run(
        [*INTERLINK, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def nobody_listens(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def pod(name: str = "pod-a", namespace: str = "default", command: str = "echo hi") -> Any:
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())},
        "spec": {
            "containers": [{"name": "main", "image": "x", "command": ["sh", "-c", command]}],
            "terminationGracePeriodSeconds": 1,
        },
    }


def start_tcp_plugin(root: Path, **settings: Any) -> Service:
    """The local plugin on a loopback TCP port with ``settings`` (its YAML configuration)."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = root / "plugin.yaml"
    cfg.write_text(yaml.safe_dump({"state_dir": str(root / "state"), "port": port, **settings}))
    log = root / "plugin.log"
    proc = subprocess.Popen(
        [*INTERLINK, "plugin", "local", "--config", str(cfg), "--log-level", "info"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/healthz", proc, log)
    return Service(proc=proc, url=url, log=log, root=root)


@pytest.fixture
def token_plugin(tmp_path: Path) -> Iterator[tuple[Service, Path]]:
    token = tmp_path / "plugin.token"
    token.write_text("a-long-shared-plugin-token\n")
    token.chmod(0o600)
    svc = start_tcp_plugin(tmp_path / "plugin", token_file=str(token))
    yield svc, token
    svc.stop()


# --- starting -------------------------------------------------------------------------------


def test_a_tcp_plugin_without_token_or_mtls_refuses_to_start(tmp_path: Path) -> None:
    port = free_port()
    out = run_cli("plugin", "local", "--port", str(port), "--state-dir", str(tmp_path / "s"))
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(
        f"interlink plugin: refusing to start: port: a plugin on TCP (127.0.0.1:{port}) would "
        "run anything for anyone who reaches the port; set token_file (--token-file;"
    )
    assert "add --insecure-dev" in out.stderr
    assert "Traceback" not in out.stderr
    assert nobody_listens(port)
    # --insecure-dev is for loopback only
    out = run_cli(
        "plugin", "slurm", "--port", str(port), "--host", "0.0.0.0", "--insecure-dev",
        "--state-dir", str(tmp_path / "s2"),
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert f"insecure_dev: allowed on a loopback host only, not on 0.0.0.0:{port}" in out.stderr


def test_the_local_plugin_refuses_a_non_loopback_address_even_with_a_token(
    tmp_path: Path,
) -> None:
    token = tmp_path / "t"
    token.write_text("a-long-shared-plugin-token")
    port = free_port()
    out = run_cli(
        "plugin", "local", "--host", "0.0.0.0", "--port", str(port), "--token-file", str(token),
        "--state-dir", str(tmp_path / "s"),
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert (
        "refusing to start: host: this plugin runs commands on this host as its own user and "
        f"serves only on a unix socket or loopback, not on 0.0.0.0:{port}"
    ) in out.stderr
    assert nobody_listens(port)


def test_insecure_dev_on_loopback_starts_and_says_so(tmp_path: Path) -> None:
    svc = start_tcp_plugin(tmp_path, insecure_dev=True)
    try:
        ping = httpx.request("GET", svc.url + "/status", json=[], timeout=10)
        assert ping.status_code == 200 and ping.json()["status"] == "ok"
        log = svc.log.read_text()
        assert "INSECURE: plugin local on TCP without token or mTLS" in log
        assert "every container runs as a process on this host, as this plugin's own" in log
    finally:
        svc.stop()


def test_the_socket_is_owner_only_and_never_in_a_world_writable_directory(
    tmp_path: Path,
) -> None:
    svc = start_plugin(tmp_path / "p")
    try:
        assert stat.S_IMODE(svc.socket.stat().st_mode) == 0o600
    finally:
        svc.stop()
    fresh = tmp_path / "new" / "dir"
    log = tmp_path / "fresh.log"
    proc = subprocess.Popen(
        [*INTERLINK, "plugin", "local", "--socket", str(fresh / "plugin.sock"),
         "--state-dir", str(tmp_path / "q")],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_ready(f"unix://{fresh / 'plugin.sock'}", proc, log)
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o700  # made by the plugin, owner only
        assert stat.S_IMODE((fresh / "plugin.sock").stat().st_mode) == 0o600
    finally:
        stop(proc)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    out = run_cli(
        "plugin", "local", "--socket", str(shared / "plugin.sock"),
        "--state-dir", str(tmp_path / "s"),
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert f"socket: {shared} is writable by everyone, so the socket" in out.stderr
    assert not (shared / "plugin.sock").exists()


# --- token ----------------------------------------------------------------------------------


def test_the_token_is_required_and_the_api_server_sends_it(
    token_plugin: tuple[Service, Path], tmp_path: Path
) -> None:
    plugin, token = token_plugin
    none = httpx.request("GET", plugin.url + "/status", json=[], timeout=10)
    assert none.status_code == 401
    assert none.json()["error"].startswith("not authorized: send an 'Authorization: Bearer")
    wrong = {"Authorization": "Bearer a-long-shared-plugin-toke"}
    assert httpx.request("GET", plugin.url + "/status", json=[], headers=wrong).status_code == 401
    right = {"Authorization": "Bearer a-long-shared-plugin-token"}
    ok = httpx.request("GET", plugin.url + "/status", json=[], headers=right, timeout=10)
    assert ok.status_code == 200 and ok.json()["status"] == "ok"

    dev = {"Authorization": f"Bearer {DEV_TOKEN}"}
    auth = {"insecure_dev_token": DEV_TOKEN}
    api = start_api(
        tmp_path / "api", {"plugin": {"url": plugin.url, "token_file": str(token)}, "auth": auth}
    )
    blind = start_api(tmp_path / "blind", {"plugin": {"url": plugin.url}, "auth": auth})
    try:
        p = pod(command="echo through-the-token")
        made = httpx.post(api.url + "/create", json={"pod": p}, headers=dev, timeout=60)
        assert made.status_code == 200, made.text
        assert httpx.post(api.url + "/pinglink", headers=dev, timeout=30).status_code == 200
        refused = httpx.post(blind.url + "/pinglink", headers=dev, timeout=30)
        assert refused.status_code == 502  # the operator's problem, not the VK's token
        assert refused.json()["error"].startswith("the plugin refused the API server: ")
        assert "set plugin.token_file" in refused.json()["error"]
        token.write_text("a-rotated-plugin-token\n")  # both re-read the file
        assert httpx.post(api.url + "/pinglink", headers=dev, timeout=30).status_code == 200
        assert httpx.request("GET", plugin.url + "/status", json=[], headers=right).status_code == (
            401
        )
        gone = httpx.request("DELETE", api.url + "/delete", json=p, headers=dev, timeout=60)
        assert gone.status_code == 200, gone.text
    finally:
        api.stop()
        blind.stop()


def test_mtls_plugin_accepts_only_a_client_certificate_of_its_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("interlink-api")
    files = {}
    for name, blob in (
        ("ca.pem", ca.cert_pem),
        ("server.pem", server.cert_chain_pems[0]),
        ("server.key", server.private_key_pem),
        ("client.pem", client.cert_chain_pems[0]),
        ("client.key", client.private_key_pem),
    ):
        files[name] = tmp_path / name
        blob.write_to_path(str(files[name]))
    server_files = {"cert": str(files["server.pem"]), "key": str(files["server.key"])}
    root = tmp_path / "plugin"
    root.mkdir()
    port = free_port()
    cfg = root / "plugin.yaml"
    mtls = {**server_files, "client_ca": str(files["ca.pem"])}
    cfg.write_text(yaml.safe_dump({"state_dir": str(root / "s"), "port": port, "tls": mtls}))
    log = root / "plugin.log"
    proc = subprocess.Popen(
        [*INTERLINK, "plugin", "local", "--config", str(cfg)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"https://127.0.0.1:{port}"
    api = None
    try:
        wait_ready(url + "/healthz", proc, log, verify=tls(files["ca.pem"]))
        anonymous = httpx.request(
            "GET", url + "/status", json=[], verify=tls(files["ca.pem"]), timeout=10
        )
        assert anonymous.status_code == 401
        assert "a TLS client certificate signed by the client CA" in anonymous.json()["error"]
        endpoint = {
            "url": url,
            "ca_file": str(files["ca.pem"]),
            "client_cert": str(files["client.pem"]),
            "client_key": str(files["client.key"]),
        }
        api = start_api(
            tmp_path / "api", {"plugin": endpoint, "auth": {"insecure_dev_token": DEV_TOKEN}}
        )
        dev = {"Authorization": f"Bearer {DEV_TOKEN}"}
        assert httpx.post(api.url + "/pinglink", headers=dev, timeout=30).status_code == 200
    finally:
        if api:
            api.stop()
        stop(proc)


def test_a_body_over_the_plugins_limit_is_413(tmp_path: Path) -> None:
    svc = start_plugin(tmp_path, config={"max_request_bytes": 4096})
    try:
        big = pod()
        big["metadata"]["annotations"] = {"blob": "x" * 8000}
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(svc.socket))) as http:
            r = http.post("http://p/create", json={"pod": big, "container": []})
        assert r.status_code == 413
        assert "request body larger than max_request_bytes (4096 bytes)" in r.json()["error"]
    finally:
        svc.stop()


# --- pod names and error shape at both hops -------------------------------------------------


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[tuple[httpx.Client, httpx.Client, Service]]:
    """(API server client with the dev token, plugin client on its socket, plugin)."""
    plugin = start_plugin(tmp_path / "plugin")
    api = start_api(
        tmp_path / "api", {"plugin": {"url": plugin.url}, "auth": {"insecure_dev_token": DEV_TOKEN}}
    )
    headers = {"Authorization": f"Bearer {DEV_TOKEN}"}
    with (
        httpx.Client(base_url=api.url, headers=headers, timeout=60) as to_api,
        httpx.Client(
            base_url="http://p", transport=httpx.HTTPTransport(uds=str(plugin.socket)), timeout=60
        ) as to_plugin,
    ):
        yield to_api, to_plugin, plugin
    api.stop()
    plugin.stop()


def test_pod_names_that_climb_out_are_refused_at_both_hops(
    edge: tuple[httpx.Client, httpx.Client, Service],
) -> None:
    to_api, to_plugin, plugin = edge
    bad_name, bad_ns = pod(name="../../x"), pod(namespace="../..")
    for client, body in ((to_api, {"pod": bad_name}), (to_plugin, {"pod": bad_name})):
        r = client.post("/create", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == (
            "pod.metadata.name: '../../x' is not a valid name; it must be a DNS-1123 "
            "subdomain: at most 253 lower-case letters, digits, '-' or '.', starting and "
            "ending with a letter or digit"
        )
    for client, body in ((to_api, {"pod": bad_ns}), (to_plugin, {"pod": bad_ns})):
        r = client.post("/create", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"].startswith(
            "pod.metadata.namespace: '../..' is not a valid name; it must be a DNS-1123 label"
        )
    # nothing was created anywhere: no pod directory, and the edge does not know the pods
    pods_dir = plugin.root / "state" / "pods"
    assert not pods_dir.exists() or list(pods_dir.iterdir()) == []
    assert to_api.request("GET", "/status", json=[bad_name, bad_ns]).json() == []


def test_one_error_shape_for_bad_bodies_at_both_hops(
    edge: tuple[httpx.Client, httpx.Client, Service],
) -> None:
    to_api, to_plugin, _ = edge
    for client in (to_api, to_plugin):
        r = client.post("/create", content=b'{"pod": {}}', headers={"Content-Type": "text/plain"})
        assert r.status_code == 415, r.text
        assert r.json() == {
            "error": "the Content-Type header must be application/json (it is text/plain): "
            "/create takes a JSON body"
        }
        r = client.request("GET", "/status", content=b"[]")
        assert r.status_code == 415
        assert r.json()["error"].startswith(
            "the Content-Type header must be application/json (it is missing)"
        )
        r = client.post(
            "/create", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400
        assert "not valid JSON" in r.json()["error"]
        r = client.get("/no-such-route")
        assert r.status_code == 404 and r.json() == {"error": "Not Found"}


# --- configurations that cannot work --------------------------------------------------------


def api_config(tmp_path: Path, **auth: Any) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": free_port()},
        "plugin": {"url": f"unix://{tmp_path}/none.sock"},
        "state_dir": str(tmp_path / "state"),
        "auth": auth,
    }


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("mtls_without_tls", "auth.mtls is set but listen.tls is not"),
        ("ca_missing", "auth.mtls.client_ca: {tmp}/nope.pem does not exist"),
        ("ca_garbage", "auth.mtls.client_ca: {tmp}/garbage.pem is not a CA certificate in PEM"),
        ("tenant_from", "'UID' is not a subject attribute we read: use CN, O or OU"),
        ("http_issuer", "issuer must be an https:// URL, not 'http://idp.example.org'"),
        ("plugin_token_missing", "plugin.token_file: {tmp}/no-token does not exist"),
    ],
)
def test_api_and_doctor_refuse_configurations_that_cannot_work(
    tmp_path: Path, case: str, expected: str
) -> None:
    certs = trustme.CA()
    server = certs.issue_cert("127.0.0.1")
    (tmp_path / "ca.pem").write_bytes(certs.cert_pem.bytes())
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    (tmp_path / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    server_tls = {"cert": str(tmp_path / "server.pem"), "key": str(tmp_path / "server.key")}
    dev = {"insecure_dev_token": DEV_TOKEN}
    mtls = {"client_ca": str(tmp_path / "ca.pem")}
    config = {
        "mtls_without_tls": api_config(tmp_path, mtls=mtls),
        "ca_missing": api_config(tmp_path, mtls={"client_ca": str(tmp_path / "nope.pem")}),
        "ca_garbage": api_config(tmp_path, mtls={"client_ca": str(tmp_path / "garbage.pem")}),
        "tenant_from": api_config(tmp_path, mtls={**mtls, "tenant_from": "UID"}),
        "http_issuer": api_config(
            tmp_path, oidc={"issuer": "http://idp.example.org", "audience": "interlink"}
        ),
        "plugin_token_missing": api_config(tmp_path, **dev),
    }[case]
    if case not in ("mtls_without_tls", "http_issuer", "plugin_token_missing"):
        config["listen"]["tls"] = server_tls
    if case == "plugin_token_missing":
        config["plugin"]["token_file"] = str(tmp_path / "no-token")
    path = tmp_path / "api.yaml"
    path.write_text(yaml.safe_dump(config))
    wanted = expected.format(tmp=tmp_path)
    started = run_cli("api", "--config", str(path))
    assert started.returncode == 2, started.stdout + started.stderr
    assert wanted in started.stderr
    assert "Traceback" not in started.stderr
    assert nobody_listens(config["listen"]["port"])
    doctor = run_cli("doctor", "--config", str(path))
    assert doctor.returncode == 1
    assert "  FAIL  " in doctor.stdout and wanted in doctor.stdout


def test_a_vk_with_a_missing_kubeconfig_says_which_file_and_what_to_do(tmp_path: Path) -> None:
    vk = tmp_path / "vk.yaml"
    edge = {"url": "http://127.0.0.1:1", "token": "t"}
    vk.write_text(yaml.safe_dump({"node_name": "vk-x", "edge": edge}))
    missing = tmp_path / "kubeconfig"
    out = run_cli("vk", "--config", str(vk), "--kubeconfig", str(missing))
    assert out.returncode == 2
    assert out.stderr == (
        f"interlink vk: kubeconfig: {missing} does not exist; give the cluster's kubeconfig "
        "with --kubeconfig FILE or kubeconfig: FILE (e.g. kubectl config view --raw --minify "
        "> FILE), or run the VK in the cluster\n"
    )
