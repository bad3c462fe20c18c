"""The plugin SDK's request guards on a small backend (a fake: no batch system), through the
ASGI app every plugin serves: one error shape, JSON Content-Type, pod names, body limit,
the shared token on TCP, the log cap, and the transport rules checked before listening."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from interlink_core.config import build_config
from interlink_core.models import LogStruct, PodStatus, RetrievedPodData, pod_meta
from interlink_core.sdk import Plugin, PluginConfig, Submitted, make_plugin_app
from interlink_core.store import JobRecord

UID = "0b6d3c1e-7a52-4f1e-9d1c-3a2b1c0d9e8f"


class Echo(Plugin):
    """Records submissions; its log is ``size`` bytes of 'x' in 64 KiB chunks."""

    name = "echo"

    def __init__(self, config: PluginConfig, size: int = 0) -> None:
        super().__init__(config)
        self.submitted: list[str] = []
        self.size = size
        self.asked: list[tuple[int, int]] = []  # (Tail, Bytes) of each log request

    async def submit(self, data: RetrievedPodData) -> Submitted:
        self.submitted.append(pod_meta(data.pod)[1])
        return Submitted(job_id="job-1")

    async def cancel(self, record: JobRecord, pod: Any) -> None:
        pass

    async def poll(self, records: list[JobRecord]) -> list[PodStatus]:
        return []

    async def logs(self, record: JobRecord, request: LogStruct) -> AsyncIterator[bytes]:
        self.asked.append((request.Opts.Tail, request.Opts.Bytes))
        left = self.size
        while left > 0:
            n = min(left, 65536)
            left -= n
            yield b"x" * n


def config(tmp_path: Path, **kw: Any) -> PluginConfig:
    return build_config(PluginConfig, {"state_dir": str(tmp_path / "st"), **kw})


def pod(name: str = "analysis-1", namespace: str = "physics", uid: str = UID) -> dict[str, Any]:
    meta = {"name": name, "namespace": namespace, "uid": uid}
    return {"pod": {"metadata": meta, "spec": {"containers": [{"name": "main"}]}}, "container": []}


def test_pod_names_that_are_not_kubernetes_names_are_refused_naming_the_field(
    tmp_path: Path,
) -> None:
    plugin = Echo(config(tmp_path))
    with TestClient(make_plugin_app(plugin)) as client:
        bad = client.post("/create", json=pod(name="../../x"))
        assert bad.status_code == 400
        assert bad.json()["error"].startswith("pod.metadata.name: '../../x' is not a valid name")
        assert "DNS-1123 subdomain" in bad.json()["error"]
        bad = client.post("/create", json=pod(namespace="../.."))
        assert bad.status_code == 400
        assert bad.json()["error"].startswith("pod.metadata.namespace: '../..' is not a valid")
        assert "DNS-1123 label" in bad.json()["error"]
        bad = client.post("/create", json=pod(uid="../u"))
        assert bad.status_code == 400
        assert bad.json()["error"].startswith("pod.metadata.uid: '../u'")
        batch = client.post("/create", json=[pod(), pod(name="Bad_Name", uid="u-2")])
        assert batch.status_code == 400
        assert batch.json()["error"].startswith("[1].pod.metadata.name: 'Bad_Name'")
        assert plugin.submitted == []  # nothing of a refused batch was submitted
        good = client.post("/create", json=pod())
        assert good.status_code == 200, good.text
    assert plugin.submitted == ["analysis-1"]


def test_one_error_shape_for_bad_json_content_type_and_unknown_routes(tmp_path: Path) -> None:
    with TestClient(make_plugin_app(Echo(config(tmp_path)))) as client:
        json_type = {"Content-Type": "application/json"}
        r = client.post("/create", content=b"{not json", headers=json_type)
        assert r.status_code == 400
        assert r.json()["error"].startswith("the request body is not valid JSON")
        r = client.post("/create", content=b"{}", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415
        assert r.json() == {
            "error": "the Content-Type header must be application/json (it is text/plain): "
            "/create takes a JSON body"
        }
        r = client.request("GET", "/status", content=b"[]")  # no Content-Type at all
        assert r.status_code == 415
        assert "(it is missing)" in r.json()["error"]
        r = client.request(
            "GET", "/status", content=b"[]", headers={"Content-Type": "application/json; a=b"}
        )
        assert r.status_code == 200, r.text
        r = client.get("/nope")
        assert r.status_code == 404 and r.json() == {"error": "Not Found"}
        r = client.put("/create", json={})
        assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"}


def test_a_body_over_the_limit_is_refused_with_413(tmp_path: Path) -> None:
    with TestClient(make_plugin_app(Echo(config(tmp_path, max_request_bytes=4096)))) as client:
        r = client.post("/create", json={"pod": {"x": "y" * 5000}, "container": []})
    assert r.status_code == 413
    assert "max_request_bytes (4096 bytes)" in r.json()["error"]


def test_a_token_is_required_on_tcp_and_compared_in_full(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token-value\n")
    cfg = config(tmp_path, port=8123, token_file=str(token))
    with TestClient(make_plugin_app(Echo(cfg))) as client:
        ping = {"Content-Type": "application/json"}
        r = client.request("GET", "/status", content=b"[]", headers=ping)
        assert r.status_code == 401
        assert r.json()["error"].startswith("not authorized: send an 'Authorization: Bearer")
        for wrong in ("s3cret", "s3cret-token-value-and-more", "S3CRET-TOKEN-VALUE"):
            auth = {**ping, "Authorization": f"Bearer {wrong}"}
            assert client.request("GET", "/status", content=b"[]", headers=auth).status_code == 401
        auth = {**ping, "Authorization": "Bearer s3cret-token-value"}
        assert client.request("GET", "/status", content=b"[]", headers=auth).status_code == 200
        assert client.get("/healthz").status_code == 200  # liveness needs no token
        token.write_text("rotated-token-value\n")  # re-read when the file changes
        assert client.request("GET", "/status", content=b"[]", headers=auth).status_code == 401
        auth = {**ping, "Authorization": "Bearer rotated-token-value"}
        assert client.request("GET", "/status", content=b"[]", headers=auth).status_code == 200


def test_log_answers_are_capped_at_max_log_bytes_and_limit_bytes(tmp_path: Path) -> None:
    plugin = Echo(config(tmp_path, max_log_bytes=100_000), size=1_000_000)
    with TestClient(make_plugin_app(plugin)) as client:
        assert client.post("/create", json=pod()).status_code == 200
        req = {"Namespace": "physics", "PodUID": UID, "PodName": "analysis-1"}
        r = client.post("/getLogs", json={**req, "ContainerName": "main"})
        assert r.status_code == 200
        assert len(r.content) == 100_000
        limited = {**req, "ContainerName": "main", "Opts": {"LimitBytes": 10}}
        r = client.post("/getLogs", json=limited)
        assert r.content == b"xxxxxxxxxx"
        tail = {**req, "ContainerName": "main", "Opts": {"Tail": 5}}
        assert len(client.post("/getLogs", json=tail).content) == 100_000
    # the backend was asked for no more than the cap (a Tail request keeps its own meaning)
    assert plugin.asked == [(0, 100_000), (0, 10), (5, 0)]


@pytest.mark.parametrize(
    ("settings", "loopback_only", "expected"),
    [
        ({"port": 9000}, False, "port: a plugin on TCP (127.0.0.1:9000) would run anything"),
        ({"port": 9000, "host": "0.0.0.0", "insecure_dev": True}, False, "insecure_dev: allowed"),
        ({"port": 9000, "host": "0.0.0.0", "token_file": "/t"}, True, "host: this plugin runs"),
        (
            {"port": 9000, "tls": {"cert": "/c", "key": "/k", "client_ca": "/nope/ca.pem"}},
            False,
            "tls.cert: /c does not exist; give the path of a certificate (PEM)",
        ),
        ({"port": 9000, "insecure_dev": True}, True, None),
        ({"port": 9000, "host": "::1", "insecure_dev": True}, False, None),
        ({"port": 9000, "host": "0.0.0.0", "token_file": "/t"}, False, None),
        ({}, True, None),
    ],
)
def test_transport_rules(
    tmp_path: Path, settings: dict[str, Any], loopback_only: bool, expected: str | None
) -> None:
    problem = config(tmp_path, **settings).transport_problem(loopback_only)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(expected), problem
