"""The API server checks OIDC tokens itself, against a real issuer (nanoidp over HTTPS)."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import rsa

from interlink_core.client import InterLinkClient, RemoteError
from interlink_core.models import PodCreateRequests
from tests.helpers.world import Issuer, Service, start_api, tls

pytestmark = pytest.mark.integration


def oidc(issuer: Issuer, **extra: object) -> dict[str, object]:
    return issuer.oidc_config(leeway_seconds=0, **extra)  # exact expiry checks


@pytest.fixture(scope="module")
def api(
    issuer: Issuer, plugin: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    svc = start_api(
        tmp_path_factory.mktemp("api"),
        {"plugin": {"url": plugin.url}, "auth": {"oidc": oidc(issuer)}},
    )
    yield svc
    svc.stop()


def ping(api: Service, token: str | None, **kw: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(api.url + "/pinglink", headers=headers, **kw)  # type: ignore[arg-type]


def test_token_from_client_credentials_grant_is_accepted(api: Service, issuer: Issuer) -> None:
    resp = ping(api, issuer.client_token())
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "ok"
    assert resp.headers["InterLink-Http-Session"]


def test_no_token_is_401_and_says_what_to_send(api: Service) -> None:
    resp = ping(api, None)
    assert resp.status_code == 401
    assert "Authorization: Bearer" in resp.json()["error"]
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_basic_auth_is_refused(api: Service) -> None:
    resp = httpx.post(api.url + "/pinglink", auth=("user", "pw"))
    assert resp.status_code == 401
    assert "Bearer <token>" in resp.json()["error"]


@pytest.mark.parametrize(
    ("claims", "message"),
    # times from the moment the test runs, not the moment it was collected (a long session
    # runs this more than 10 minutes after collection, when "600 s ahead" is past)
    [
        (lambda now: {"exp": now - 120}, "expired"),
        (lambda now: {"nbf": now + 600, "iat": now + 600}, "not valid yet"),
        (lambda now: {"iss": "https://other-issuer.example"}, "another issuer"),
        (lambda now: {"aud": "somebody-else"}, "audience"),
        (lambda now: {"exp": None}, "'exp'"),
    ],
    ids=["expired", "not-yet-valid", "wrong-issuer", "wrong-audience", "no-exp"],
)
def test_bad_claims_are_401_with_the_reason(
    api: Service, issuer: Issuer, claims: Callable[[int], dict[str, object]], message: str
) -> None:
    resp = ping(api, issuer.mint(**claims(int(time.time()))))
    assert resp.status_code == 401, resp.text
    assert message in resp.json()["error"]


def test_bad_signature_is_401(api: Service, issuer: Issuer) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    resp = ping(api, issuer.mint(key=other))
    assert resp.status_code == 401
    assert "signature" in resp.json()["error"]


def test_unknown_key_id_is_401(api: Service, issuer: Issuer) -> None:
    resp = ping(api, issuer.mint(kid="no-such-key"))
    assert resp.status_code == 401
    assert "no-such-key" in resp.json()["error"]


def test_garbage_token_is_401(api: Service) -> None:
    resp = ping(api, "not-a-jwt")
    assert resp.status_code == 401
    assert "not a JWT" in resp.json()["error"]


def test_required_groups(issuer: Issuer, plugin: Service, tmp_path: Path) -> None:
    api = start_api(
        tmp_path,
        {
            "plugin": {"url": plugin.url},
            "auth": {"oidc": oidc(issuer, required_groups=["interlink-users"])},
        },
    )
    try:
        assert ping(api, issuer.user_token("alice")).status_code == 200
        for token in (issuer.user_token("bob"), issuer.client_token()):
            resp = ping(api, token)
            assert resp.status_code == 403
            assert "interlink-users" in resp.json()["error"]
    finally:
        api.stop()


class Recorder(ThreadingHTTPServer):
    """A stand-in plugin on loopback that records the tenant and subject the API server names
    in the headers of each call it forwards (answers: a job id for /create, [] otherwise)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecorderHandler)
        self.seen: list[tuple[str, str | None, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def creators(self) -> list[tuple[str | None, str | None]]:
        """(tenant, subject) of each /create, in order."""
        return [(tenant, subject) for path, tenant, subject in self.seen if path == "/create"]


class _RecorderHandler(BaseHTTPRequestHandler):
    server: Recorder

    def _answer(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or "null")
        h = self.headers
        self.server.seen.append((self.path, h.get("InterLink-Tenant"), h.get("InterLink-Subject")))
        answer: object = []
        if self.path == "/create":
            answer = {"PodUID": body["pod"]["metadata"]["uid"], "PodJID": "job-1"}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


CLIENTS = {  # certificate name -> (CN, O, OU)
    "c": ("cluster-c", "site-a", "team-x"),
    "d": ("cluster-d", "site-a", "team-y"),
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, the API server's certificate and two client certificates (:data:`CLIENTS`)."""
    root = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(root / "server.pem"))
    server.private_key_pem.write_to_path(str(root / "server.key"))
    for name, (cn, org, unit) in CLIENTS.items():
        leaf = ca.issue_cert(
            f"{cn}.example", common_name=cn, organization_name=org, organization_unit_name=unit
        )
        leaf.cert_chain_pems[0].write_to_path(str(root / f"{name}.pem"))
        leaf.private_key_pem.write_to_path(str(root / f"{name}.key"))
    return root


def mtls_api(
    root: Path, certs: Path, plugin_url: str, tenant_from: str = "CN", **auth: object
) -> Service:
    """An API server over HTTPS that knows the client certificates of ``certs``' CA."""
    tls_files = {"cert": str(certs / "server.pem"), "key": str(certs / "server.key")}
    mtls = {"client_ca": str(certs / "ca.pem"), "tenant_from": tenant_from}
    return start_api(
        root,
        {
            "plugin": {"url": plugin_url},
            "listen": {"tls": tls_files},
            "auth": {"mtls": mtls, **auth},
        },
        verify=tls(certs / "ca.pem"),
    )


def as_client(certs: Path, name: str | None) -> ssl.SSLContext:
    """TLS that trusts the API server, presenting client certificate ``name`` (if any)."""
    cert = (certs / f"{name}.pem", certs / f"{name}.key") if name else None
    return tls(certs / "ca.pem", cert)


def pod_body(uid: str) -> dict[str, Any]:
    meta = {"name": f"pod-{uid}", "namespace": "default", "uid": uid}
    return {"pod": {"metadata": meta, "spec": {"containers": [{"name": "main"}]}}}


@pytest.mark.parametrize(
    ("tenant_from", "tenant", "d_shares_it"),
    [("CN", "mtls:cluster-c", False), ("O", "mtls:site-a", True), ("OU", "mtls:team-x", False)],
)
def test_mtls_client_certificate_identifies_the_tenant(
    certs: Path,
    recorder: Recorder,
    tmp_path: Path,
    tenant_from: str,
    tenant: str,
    d_shares_it: bool,
) -> None:
    """The tenant is the subject attribute ``tenant_from`` names, marked ``mtls:`` (an OIDC
    subject of the same name is another tenant); the subject is the CN. A second certificate
    reaches the first one's pod only when that attribute is the same."""
    api = mtls_api(tmp_path, certs, recorder.url, tenant_from)
    try:
        made = httpx.post(api.url + "/create", json=pod_body("u-1"), verify=as_client(certs, "c"))
        assert made.status_code == 200, made.text
        assert recorder.creators() == [(tenant, "cluster-c")]
        pods = [pod_body("u-1")["pod"]]
        other = httpx.request("GET", api.url + "/status", json=pods, verify=as_client(certs, "d"))
        if d_shares_it:
            assert other.status_code == 200, other.text
        else:
            assert other.status_code == 403, other.text
            assert "another tenant" in other.json()["error"]
        without = httpx.post(api.url + "/pinglink", verify=as_client(certs, None))
        assert without.status_code == 401
        assert "TLS client certificate" in without.json()["error"]
    finally:
        api.stop()


def test_a_bearer_token_takes_precedence_over_the_client_certificate(
    certs: Path, recorder: Recorder, tmp_path: Path
) -> None:
    """As docs/api-server.md says: with both, the token decides (a bad one is refused even
    with a good certificate)."""
    api = mtls_api(tmp_path, certs, recorder.url, insecure_dev_token="dev-token-for-tests")
    try:
        c = as_client(certs, "c")
        both = {"Authorization": "Bearer dev-token-for-tests"}
        made = httpx.post(api.url + "/create", json=pod_body("u-2"), headers=both, verify=c)
        assert made.status_code == 200, made.text
        assert recorder.creators() == [("dev", "dev")]
        bad = {"Authorization": "Bearer wrong-token"}
        refused = httpx.post(api.url + "/create", json=pod_body("u-3"), headers=bad, verify=c)
        assert refused.status_code == 401, refused.text
        assert httpx.post(api.url + "/create", json=pod_body("u-4"), verify=c).status_code == 200
        assert recorder.creators() == [("dev", "dev"), ("mtls:cluster-c", "cluster-c")]
    finally:
        api.stop()


async def test_the_client_presents_its_certificate(
    certs: Path, recorder: Recorder, tmp_path: Path
) -> None:
    """``InterLinkClient(client_cert=...)`` authenticates by certificate alone."""
    api = mtls_api(tmp_path, certs, recorder.url)
    try:
        cert = (certs / "d.pem", certs / "d.key")
        request = PodCreateRequests.model_validate(pod_body("u-5"))
        async with InterLinkClient(api.url, ca_file=certs / "ca.pem", client_cert=cert) as client:
            created = await client.create(request)
        assert (created.PodUID, created.PodJID) == ("u-5", "job-1")
        assert recorder.creators() == [("mtls:cluster-d", "cluster-d")]
        async with InterLinkClient(api.url, ca_file=certs / "ca.pem") as anonymous:
            with pytest.raises(RemoteError) as refused:
                await anonymous.create(request)
        assert refused.value.status_code == 401
    finally:
        api.stop()


def test_dev_token_mode_warns_loudly(plugin: Service, tmp_path: Path) -> None:
    api = start_api(
        tmp_path,
        {"plugin": {"url": plugin.url}, "auth": {"insecure_dev_token": "dev-token-for-tests"}},
    )
    try:
        assert ping(api, "dev-token-for-tests").status_code == 200
        assert ping(api, "wrong-token-value").status_code == 401
        api.stop()
        assert "INSECURE" in api.log.read_text()
    finally:
        api.stop()


def test_issuer_down_is_503_not_401(plugin: Service, tmp_path: Path, issuer: Issuer) -> None:
    cfg = oidc(issuer)
    cfg["issuer"] = "https://127.0.0.1:9"  # nothing listens there
    api = start_api(tmp_path, {"plugin": {"url": plugin.url}, "auth": {"oidc": cfg}})
    try:
        resp = ping(api, issuer.client_token())
        assert resp.status_code == 503
        assert "cannot read the OIDC issuer" in resp.json()["error"]
    finally:
        api.stop()


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    import subprocess
    import sys

    cfg = tmp_path / "api.yaml"
    cfg.write_text("auth:\n  oidc:\n    issuer: https://x\n    audeince: typo\n")
    out = subprocess.run(
        [sys.executable, "-m", "interlink_core.cli", "api", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "auth.oidc.audeince: unknown key" in out.stderr
    assert "auth.oidc.audience: required key is missing" in out.stderr
