"""The API server checks OIDC tokens itself, against a real issuer (nanoidp over HTTPS)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import rsa

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
    [
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"nbf": int(time.time()) + 600, "iat": int(time.time()) + 600}, "not valid yet"),
        ({"iss": "https://other-issuer.example"}, "another issuer"),
        ({"aud": "somebody-else"}, "audience"),
        ({"exp": None}, "'exp'"),
    ],
    ids=["expired", "not-yet-valid", "wrong-issuer", "wrong-audience", "no-exp"],
)
def test_bad_claims_are_401_with_the_reason(
    api: Service, issuer: Issuer, claims: dict[str, object], message: str
) -> None:
    resp = ping(api, issuer.mint(**claims))
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


def test_mtls_client_certificate_identifies_the_tenant(plugin: Service, tmp_path: Path) -> None:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("cluster-c.example", common_name="cluster-c")
    for name, blob in {
        "ca.pem": ca.cert_pem,
        "server.pem": server.cert_chain_pems[0],
        "server.key": server.private_key_pem,
        "client.pem": client.cert_chain_pems[0],
        "client.key": client.private_key_pem,
    }.items():
        blob.write_to_path(str(tmp_path / name))
    api = start_api(
        tmp_path,
        {
            "plugin": {"url": plugin.url},
            "listen": {
                "tls": {"cert": str(tmp_path / "server.pem"), "key": str(tmp_path / "server.key")}
            },
            "auth": {"mtls": {"client_ca": str(tmp_path / "ca.pem")}},
        },
        verify=tls(tmp_path / "ca.pem"),
    )
    try:
        client_tls = tls(tmp_path / "ca.pem", (tmp_path / "client.pem", tmp_path / "client.key"))
        with_cert = httpx.post(api.url + "/pinglink", verify=client_tls)
        assert with_cert.status_code == 200, with_cert.text
        without = httpx.post(api.url + "/pinglink", verify=tls(tmp_path / "ca.pem"))
        assert without.status_code == 401
        assert "TLS client certificate" in without.json()["error"]
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
