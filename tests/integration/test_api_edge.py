"""API server + local plugin over a real unix socket: lifecycle, logs, tenancy, bad input,
plugin crash, driven through our own async client with tokens from the real issuer."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from interlink_core.client import ClientCredentials, InterLinkClient, RemoteError, Retry
from interlink_core.models import LogStruct, PodCreateRequests, PodStatus
from tests.helpers.world import Issuer, Service, start_api, start_plugin

pytestmark = pytest.mark.integration


def make_pod(
    name: str, command: list[str], namespace: str = "default", **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())},
        "spec": {
            "containers": [{"name": "main", "image": "busybox", "command": command}],
            "terminationGracePeriodSeconds": 2,
            **spec,
        },
    }


def phase(s: PodStatus) -> str:
    state = (s.containers[0].get("state") or {}) if s.containers else {}
    if "terminated" in state:
        return "failed" if state["terminated"].get("exitCode") else "succeeded"
    return "running" if "running" in state else "pending"


@pytest.fixture(scope="module")
def api(
    issuer: Issuer, plugin: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    svc = start_api(
        tmp_path_factory.mktemp("api"),
        {
            "plugin": {"url": plugin.url},
            "max_request_bytes": 256 * 1024,
            "auth": {"oidc": issuer.oidc_config()},
        },
    )
    yield svc
    svc.stop()


def client_for(api: Service, issuer: Issuer, client_id: str) -> InterLinkClient:
    tokens = ClientCredentials(
        issuer.url, client_id, issuer.info["clients"][client_id], ca_file=issuer.ca_file
    )
    return InterLinkClient(api.url, token=tokens, retry=Retry(attempts=6, base_delay=0.2))


@pytest.fixture
async def vk_a(api: Service, issuer: Issuer) -> AsyncIterator[InterLinkClient]:
    async with client_for(api, issuer, "vk-cluster-a") as c:
        yield c


@pytest.fixture
async def vk_b(api: Service, issuer: Issuer) -> AsyncIterator[InterLinkClient]:
    async with client_for(api, issuer, "vk-cluster-b") as c:
        yield c


async def wait_phase(
    c: InterLinkClient, pod: dict[str, Any], want: str, timeout: float = 15
) -> PodStatus:
    deadline = asyncio.get_running_loop().time() + timeout
    last: list[PodStatus] = []
    while asyncio.get_running_loop().time() < deadline:
        last = await c.status([pod])
        if last and phase(last[0]) == want:
            return last[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"pod never reached {want}: {last}")


async def wait_logs(
    c: InterLinkClient, pod: dict[str, Any], want: bytes, timeout: float = 15
) -> None:
    """Wait until the container's whole log is ``want``."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = b""
    while asyncio.get_running_loop().time() < deadline:
        last = await c.logs(log_req(pod))
        if last == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the log never became {want!r}: {last!r}")


def log_req(pod: dict[str, Any], **opts: Any) -> LogStruct:
    m = pod["metadata"]
    return LogStruct(
        Namespace=m["namespace"],
        PodUID=m["uid"],
        PodName=m["name"],
        ContainerName="main",
        Opts=opts,
    )


async def test_full_lifecycle_with_logs(vk_a: InterLinkClient) -> None:
    pod = make_pod("hello", ["sh", "-c", "echo one; sleep 0.5; echo two"])
    created = await vk_a.create(PodCreateRequests(pod=pod))
    assert created.PodUID == pod["metadata"]["uid"] and created.PodJID
    running = await wait_phase(vk_a, pod, "running")
    assert running.JID == created.PodJID
    done = await wait_phase(vk_a, pod, "succeeded")
    assert done.containers[0]["state"]["terminated"]["exitCode"] == 0
    assert await vk_a.logs(log_req(pod)) == b"one\ntwo\n"
    assert await vk_a.logs(log_req(pod, Tail=1)) == b"two\n"
    stamped = await vk_a.logs(log_req(pod, Timestamps=True))
    assert [line.split(b" ", 1)[1] for line in stamped.splitlines()] == [b"one", b"two"]
    await vk_a.delete(pod)
    assert await vk_a.status([pod]) == []


async def test_create_is_idempotent_per_uid(vk_a: InterLinkClient) -> None:
    pod = make_pod("twice", ["sh", "-c", "sleep 5"])
    first, second = await asyncio.gather(
        vk_a.create(PodCreateRequests(pod=pod)), vk_a.create(PodCreateRequests(pod=pod))
    )
    assert first.PodJID == second.PodJID
    third = await vk_a.create(PodCreateRequests(pod=pod))
    assert third.PodJID == first.PodJID
    await vk_a.delete(pod)


async def test_failed_container_reports_exit_code(vk_a: InterLinkClient) -> None:
    pod = make_pod("fails", ["sh", "-c", "echo bad >&2; exit 3"])
    await vk_a.create(PodCreateRequests(pod=pod))
    done = await wait_phase(vk_a, pod, "failed")
    assert done.containers[0]["state"]["terminated"]["exitCode"] == 3
    assert await vk_a.logs(log_req(pod)) == b"bad\n"
    await vk_a.delete(pod)


async def test_follow_streams_lines_as_they_are_written(vk_a: InterLinkClient) -> None:
    pod = make_pod("ticker", ["sh", "-c", "for i in 1 2 3; do echo tick$i; sleep 0.4; done"])
    await vk_a.create(PodCreateRequests(pod=pod))
    await wait_phase(vk_a, pod, "running")
    seen: list[tuple[float, bytes]] = []
    loop = asyncio.get_running_loop()
    async for chunk in vk_a.follow_logs(log_req(pod)):
        seen.append((loop.time(), chunk))
    text = b"".join(c for _, c in seen)
    assert text == b"tick1\ntick2\ntick3\n"
    assert len(seen) >= 2 and seen[-1][0] - seen[0][0] > 0.3  # streamed, not one answer at the end
    await vk_a.delete(pod)


async def test_delete_stops_a_running_pod(vk_a: InterLinkClient) -> None:
    pod = make_pod("sleeper", ["sleep", "60"])
    await vk_a.create(PodCreateRequests(pod=pod))
    await wait_phase(vk_a, pod, "running")
    t0 = asyncio.get_running_loop().time()
    await vk_a.delete(pod)
    assert asyncio.get_running_loop().time() - t0 < 10
    assert await vk_a.status([pod]) == []


async def test_update_volumes_rewrites_files_a_running_pod_reads(vk_a: InterLinkClient) -> None:
    watch = (
        "f=/etc/app/mode; first=$(cat $f); i=0; "
        'while [ "$(cat $f)" = "$first" ]; do i=$((i+1)); [ $i -gt 200 ] && exit 3; sleep 0.05; '
        'done; echo "$first -> $(cat $f)"'
    )
    pod = make_pod(
        "reloads", ["sh", "-c", watch], volumes=[{"name": "cfg", "configMap": {"name": "app"}}]
    )
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "cfg", "mountPath": "/etc/app"}]

    def config(mode: str) -> dict[str, Any]:
        return {"metadata": {"name": "app", "namespace": "default"}, "data": {"mode": mode}}

    await vk_a.create(PodCreateRequests(pod=pod, configmaps=[config("slow")]))
    await wait_phase(vk_a, pod, "running")
    await vk_a.update_volumes(PodCreateRequests(pod=pod, configmaps=[config("fast")]))
    done = await wait_phase(vk_a, pod, "succeeded")
    assert done.containers[0]["state"]["terminated"]["exitCode"] == 0
    assert await vk_a.logs(log_req(pod)) == b"slow -> fast\n"
    await vk_a.delete(pod)
    with pytest.raises(RemoteError) as err:  # a deleted pod is not known any more
        await vk_a.update_volumes(PodCreateRequests(pod=pod, configmaps=[config("x")]))
    assert err.value.status_code == 404


async def test_tenants_with_same_pod_names_are_isolated(
    vk_a: InterLinkClient, vk_b: InterLinkClient
) -> None:
    pod_a = make_pod("shared-name", ["sh", "-c", "echo from-a; sleep 30"])
    pod_b = make_pod("shared-name", ["sh", "-c", "echo from-b; sleep 30"])
    await vk_a.create(PodCreateRequests(pod=pod_a))
    await vk_b.create(PodCreateRequests(pod=pod_b))
    await wait_phase(vk_a, pod_a, "running")
    await wait_phase(vk_b, pod_b, "running")
    await wait_logs(vk_a, pod_a, b"from-a\n")
    await wait_logs(vk_b, pod_b, b"from-b\n")
    for call in (
        vk_b.status([pod_a]),
        vk_b.logs(log_req(pod_a)),
        vk_b.delete(pod_a),
        vk_b.create(PodCreateRequests(pod=pod_a)),
        vk_b.update_volumes(PodCreateRequests(pod=pod_a)),
    ):
        with pytest.raises(RemoteError) as err:
            await call
        assert err.value.status_code == 403
        assert "another tenant" in err.value.message
    # A's pod is untouched by B's attempts
    assert phase((await vk_a.status([pod_a]))[0]) == "running"
    mixed = await vk_a.status([pod_a])
    assert [s.UID for s in mixed] == [pod_a["metadata"]["uid"]]
    await vk_a.delete(pod_a)
    await vk_b.delete(pod_b)


async def test_a_refused_create_leaves_the_uid_unowned(
    vk_a: InterLinkClient, vk_b: InterLinkClient
) -> None:
    """The plugin refused A's pod, so nothing ran and A owns nothing: B's create of the same
    UID goes through instead of meeting "belongs to another tenant"."""
    refused = make_pod("refused", ["true"])
    refused["spec"]["containers"][0]["livenessProbe"] = {"grpc": {"port": 9000}}
    with pytest.raises(RemoteError) as err:
        await vk_a.create(PodCreateRequests(pod=refused))
    assert err.value.status_code == 400
    assert "spec.containers[0].livenessProbe" in err.value.message
    fixed = make_pod("refused", ["sleep", "30"])
    fixed["metadata"]["uid"] = refused["metadata"]["uid"]
    await vk_b.create(PodCreateRequests(pod=fixed))
    await wait_phase(vk_b, fixed, "running")
    await vk_b.delete(fixed)


@contextlib.contextmanager
def never_answers(path: Path) -> Iterator[None]:
    """A unix socket at ``path`` that takes connections (into its backlog) and never answers."""
    path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        sock.listen(16)
        yield
    path.unlink(missing_ok=True)


async def test_plugin_killed_mid_flight_then_restarted(issuer: Issuer, tmp_path: Path) -> None:
    plugin = start_plugin(tmp_path / "plugin")
    api = start_api(
        tmp_path / "api",
        {
            "plugin": {"url": plugin.url},
            "auth": {"oidc": issuer.oidc_config()},
        },
    )
    try:
        async with client_for(api, issuer, "vk-cluster-a") as vk:
            pods = [
                make_pod(f"p{i}", ["sh", "-c", f"echo start{i}; sleep 3; echo end{i}"])
                for i in range(5)
            ]
            jids = [(await vk.create(PodCreateRequests(pod=p))).PodJID for p in pods]
            for p in pods:
                await wait_phase(vk, p, "running")
            plugin.stop(signal.SIGKILL)
            # the API server answers 502 while the plugin is down; no silent success
            async with InterLinkClient(
                api.url, token=vk.wire.token, retry=Retry(attempts=1)
            ) as once:
                with pytest.raises(RemoteError) as err:
                    await once.status(pods)
                assert err.value.status_code == 502
            # the body is checked while the plugin is tried: a bad one is refused without the
            # plugin's answer, here from a plugin that accepts connections and never answers
            # (the API server would wait 120 s for it; this call gives up after 30 s)
            with never_answers(plugin.socket):
                bad = await asyncio.to_thread(
                    httpx.request,
                    "GET",
                    api.url + "/status",
                    json=[{"metadata": {"name": "x"}}],
                    headers={"Authorization": f"Bearer {issuer.client_token()}"},
                    timeout=30,
                )
            assert bad.status_code == 422 and "pod.metadata.namespace" in bad.json()["error"]
            plugin = start_plugin(tmp_path / "plugin")
            statuses = await vk.status(pods)
            assert sorted(s.JID for s in statuses) == sorted(jids)
            for p in pods:
                await wait_phase(vk, p, "succeeded")
            for i, p in enumerate(pods):
                assert await vk.logs(log_req(p)) == f"start{i}\nend{i}\n".encode()
                # a repeated create after the crash never starts a second job
                assert (await vk.create(PodCreateRequests(pod=p))).PodJID == jids[i]
                await vk.delete(p)
    finally:
        api.stop()
        plugin.stop()


# --- bad input --------------------------------------------------------------------------------


def raw(api: Service, issuer: Issuer, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {issuer.client_token()}", **kw.pop("headers", {})}
    return httpx.request(method, api.url + path, headers=headers, timeout=30, **kw)


def test_malformed_json_is_400(api: Service, issuer: Issuer) -> None:
    resp = raw(
        api,
        issuer,
        "POST",
        "/create",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 400
    assert "not valid JSON" in resp.json()["error"]


def test_wrong_types_and_missing_fields_name_the_field(api: Service, issuer: Issuer) -> None:
    resp = raw(api, issuer, "POST", "/create", json={"pod": "a string"})
    assert resp.status_code == 422 and "pod" in resp.json()["error"]
    resp = raw(api, issuer, "POST", "/create", json={"configmaps": []})
    assert resp.status_code == 422 and "pod: Field required" in resp.json()["error"]
    resp = raw(
        api, issuer, "POST", "/create", json={"pod": {"metadata": {"name": "x", "namespace": "y"}}}
    )
    assert resp.status_code == 422 and "pod.metadata.uid" in resp.json()["error"]
    resp = raw(api, issuer, "GET", "/status", json={"not": "a list"})
    assert resp.status_code == 422


def test_log_request_with_tail_and_bytes_is_422(api: Service, issuer: Issuer) -> None:
    body = {
        "Namespace": "n",
        "PodUID": "u",
        "PodName": "p",
        "ContainerName": "c",
        "Opts": {"Tail": 3, "Bytes": 100},
    }
    resp = raw(api, issuer, "GET", "/getLogs", json=body)
    assert resp.status_code == 422
    assert "Opts.Tail and Opts.Bytes" in resp.json()["error"]


def test_oversized_body_is_413(api: Service, issuer: Issuer) -> None:
    big = make_pod("big", ["true"])
    big["metadata"]["annotations"] = {"blob": "x" * (300 * 1024)}
    resp = raw(api, issuer, "POST", "/create", json={"pod": big})
    assert resp.status_code == 413
    assert "max_request_bytes" in resp.json()["error"]

    # also when the client streams without a Content-Length
    def chunks() -> Iterator[bytes]:
        yield b'{"pod": {"metadata": {"name": "'
        for _ in range(40):
            yield b"y" * 10_000
        yield b'"}}}'

    resp = raw(
        api,
        issuer,
        "POST",
        "/create",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 413


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(api: Service) -> Samples:
    """Every sample of the API server's /metrics: (name, labels) -> value."""
    text = httpx.get(api.url + "/metrics").text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample (0 when it is absent, as for a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def pods_gauge(samples: Samples) -> dict[str, float]:
    states = ("pending", "running", "succeeded", "failed")
    return {s: samples[("interlink_api_pods", frozenset({("state", s)}))] for s in states}


async def test_metrics_count_requests_pods_and_plugin_errors(
    issuer: Issuer, tmp_path: Path
) -> None:
    """After known traffic on a fresh API server: requests by route and code, the pods by
    state (one of each), and one plugin error after the plugin died."""
    plugin = start_plugin(tmp_path / "plugin")
    api = start_api(
        tmp_path / "api", {"plugin": {"url": plugin.url}, "auth": {"oidc": issuer.oidc_config()}}
    )
    pods = {
        "pending": make_pod(
            "waits",
            ["sleep", "60"],
            initContainers=[{"name": "init", "image": "busybox", "command": ["sleep", "60"]}],
        ),
        "running": make_pod("runs", ["sleep", "60"]),
        "succeeded": make_pod("ends", ["true"]),
        "failed": make_pod("fails", ["sh", "-c", "exit 3"]),
    }
    try:
        assert pods_gauge(scrape(api)) == {"pending": 0, "running": 0, "succeeded": 0, "failed": 0}
        async with InterLinkClient(
            api.url,
            token=ClientCredentials(
                issuer.url,
                "vk-cluster-a",
                issuer.info["clients"]["vk-cluster-a"],
                ca_file=issuer.ca_file,
            ),
            retry=Retry(attempts=1),  # one request per call: the counts are known
        ) as vk:
            for pod in pods.values():
                await vk.create(PodCreateRequests(pod=pod))
            status_calls = 0
            deadline = time.monotonic() + 30
            while True:
                statuses = await vk.status(list(pods.values()))
                status_calls += 1
                if sorted(phase(s) for s in statuses) == sorted(pods):
                    break
                assert time.monotonic() < deadline, statuses
                await asyncio.sleep(0.1)
            assert httpx.post(api.url + "/pinglink").status_code == 401
            samples = scrape(api)
            assert pods_gauge(samples) == {"pending": 1, "running": 1, "succeeded": 1, "failed": 1}
            requests = "interlink_api_requests_total"
            assert value(samples, requests, route="/create", code="200") == 4
            assert value(samples, requests, route="/status", code="200") == status_calls
            assert value(samples, requests, route="/pinglink", code="401") == 1
            assert value(samples, "interlink_api_plugin_errors_total", route="/status") == 0

            await vk.delete(pods["succeeded"])
            await vk.delete(pods["failed"])
            samples = scrape(api)
            assert pods_gauge(samples) == {"pending": 1, "running": 1, "succeeded": 0, "failed": 0}
            assert value(samples, requests, route="/delete", code="200") == 2

            # the plugin refusing a request (no such container) is its answer, not an error
            meta = pods["running"]["metadata"]
            no_such = LogStruct(
                Namespace=meta["namespace"],
                PodUID=meta["uid"],
                PodName=meta["name"],
                ContainerName="no-such-container",
            )
            with pytest.raises(RemoteError) as refused:
                await vk.logs(no_such)
            assert refused.value.status_code == 404, refused.value
            samples = scrape(api)
            assert value(samples, requests, route="/getLogs", code="404") == 1
            assert value(samples, "interlink_api_plugin_errors_total", route="/getLogs") == 0

            plugin.stop(signal.SIGKILL)
            with pytest.raises(RemoteError) as err:
                await vk.status([pods["running"]])
            assert err.value.status_code == 502
            samples = scrape(api)
            assert value(samples, "interlink_api_plugin_errors_total", route="/status") == 1
            assert value(samples, requests, route="/status", code="502") == 1
            assert value(samples, requests, route="/status", code="200") == status_calls

            plugin = start_plugin(tmp_path / "plugin")
            for pod in (pods["pending"], pods["running"]):
                await vk.delete(pod)
    finally:
        api.stop()
        plugin.stop()


def test_openapi_document_is_served(api: Service) -> None:
    doc = httpx.get(api.url + "/openapi.json").json()
    for route in ("/create", "/delete", "/status", "/getLogs", "/pinglink"):
        assert route in doc["paths"]
