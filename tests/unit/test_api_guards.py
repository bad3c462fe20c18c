"""The API server's refusals that happen before any plugin is asked (in-process app; the plugin
URL leads nowhere): pod names, JSON Content-Type, one error shape; and its semantic
configuration checks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from interlink_core.apiserver import ApiServerConfig, make_app
from interlink_core.config import build_config
from interlink_core.errors import ConfigError

TOKEN = "unit-test-dev-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    config = build_config(
        ApiServerConfig,
        {
            "auth": {"insecure_dev_token": TOKEN},
            "state_dir": str(tmp_path / "state"),
            "plugin": {"url": f"unix://{tmp_path}/no-plugin.sock"},
        },
    )
    with TestClient(make_app(config)) as client:
        yield client


def pod(name: str = "ok", namespace: str = "default", container: str = "main") -> Any:
    meta = {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())}
    return {"metadata": meta, "spec": {"containers": [{"name": container}]}}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (pod(name="../../x"), "pod.metadata.name: '../../x' is not a valid name"),
        (pod(namespace="../.."), "pod.metadata.namespace: '../..' is not a valid name"),
        (pod(name="a" * 254), "pod.metadata.name: 'aaaa"),
        (pod(namespace="Upper"), "pod.metadata.namespace: 'Upper' is not a valid name"),
        (pod(container="../c"), "pod.spec.containers[0].name: '../c' is not a valid name"),
    ],
)
def test_bad_pod_names_are_400_naming_the_field(api: TestClient, body: Any, expected: str) -> None:
    for route in ("/create", "/updateVolumes"):
        r = api.post(route, json={"pod": body}, headers=AUTH)
        assert r.status_code == 400, r.text
        assert r.json()["error"].startswith(expected)


def test_a_valid_name_reaches_the_plugin(api: TestClient) -> None:
    r = api.post("/create", json={"pod": pod(name="a.b-c", namespace="ns-1")}, headers=AUTH)
    assert r.status_code == 502  # past the checks: the (absent) plugin was tried
    assert r.json()["error"].startswith("the plugin failed: cannot reach")


def test_one_error_shape(api: TestClient) -> None:
    r = api.post("/create", content=b"{}", headers={**AUTH, "Content-Type": "text/plain"})
    assert r.status_code == 415
    assert r.json() == {
        "error": "the Content-Type header must be application/json (it is text/plain): "
        "/create takes a JSON body"
    }
    r = api.request("GET", "/getLogs", content=b"{}", headers=AUTH)
    assert r.status_code == 415 and "(it is missing)" in r.json()["error"]
    r = api.get("/nope", headers=AUTH)
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}
    r = api.put("/create", json={}, headers=AUTH)
    assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"}
    r = api.post("/create", json={"pod": pod()})  # no token
    assert r.status_code == 401 and r.json()["error"].startswith("no credentials")
    assert api.post("/pinglink", headers=AUTH).status_code == 502  # no body: no 415


def test_semantic_configuration_checks(tmp_path: Path) -> None:
    def refused(auth: dict[str, Any], **more: Any) -> str:
        with pytest.raises(ConfigError) as err:
            build_config(ApiServerConfig, {"auth": auth, **more})
        return str(err.value)

    ca = str(tmp_path / "ca.pem")
    assert "auth.mtls is set but listen.tls is not: client certificates are only seen over " in (
        refused({"mtls": {"client_ca": ca}})
    )
    assert "auth.mtls.tenant_from: 'uid' is not a subject attribute we read: use CN, O or OU" in (
        refused({"mtls": {"client_ca": ca, "tenant_from": "uid"}})
    )
    http = {"issuer": "http://idp.example", "audience": "a"}
    assert "auth.oidc: issuer must be an https:// URL, not 'http://idp.example'" in refused(
        {"oidc": http}
    )
    dev = build_config(ApiServerConfig, {"auth": {"oidc": {**http, "insecure_http_issuer": True}}})
    assert dev.auth.oidc is not None
    tls = {"cert": str(tmp_path / "s.pem"), "key": str(tmp_path / "s.key")}
    (tmp_path / "ca.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"
    )
    config = build_config(
        ApiServerConfig,
        {
            "listen": {"tls": tls},
            "auth": {"mtls": {"client_ca": ca}},
            "plugin": {"token_file": str(tmp_path / "t")},
        },
    )
    problems = config.file_problems()
    assert problems[0] == (
        f"listen.tls.cert: {tmp_path}/s.pem does not exist; give the path of a certificate (PEM)"
    )
    assert problems[1].startswith(f"auth.mtls.client_ca: {ca} is not a CA certificate in PEM")
    assert problems[2] == (
        f"plugin.token_file: {tmp_path}/t does not exist; give the path of the plugin's token file"
    )
    assert len(problems) == 3
