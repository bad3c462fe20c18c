"""The interLink server extension in a real Jupyter server, direct mode: clusters made in
"kernels" (other processes) and by the sidebar, on a real edge (API server + local plugin),
driven through the REST API and watched on the live stream as the sidebar does."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from tests.helpers.hub import wait_for
from tests.helpers.jupyter import (
    TOKEN,
    WORKER,
    Jupyter,
    Stream,
    cluster_msg,
    jupyter_server,
    kernel_cluster,
    wait_http,
    write_dask_config,
)
from tests.helpers.world import Service, start_api, start_plugin

pytestmark = pytest.mark.integration
EDGE_TOKEN = "jupyter-direct-dev-token"
MAX_WORKERS = 6


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Service]]:
    root = tmp_path_factory.mktemp("edge")
    plugin = start_plugin(root / "plugin")
    api = start_api(
        root / "api", {"plugin": {"url": plugin.url}, "auth": {"insecure_dev_token": EDGE_TOKEN}}
    )
    yield api, plugin
    api.stop()
    plugin.stop()


def interlink_config(api: Service, state: Path) -> dict[str, Any]:
    return {
        "mode": "direct",
        "direct": {"url": api.url, "token": EDGE_TOKEN},
        "worker-command": WORKER,
        "memory": "512MiB",
        "status-interval": 0.5,
        "death-timeout": 30,
        "state-dir": str(state),
    }


@pytest.fixture(scope="module")
def lab(
    edge: tuple[Service, Service], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Jupyter, Path]]:
    api, _ = edge
    root = tmp_path_factory.mktemp("lab")
    config = write_dask_config(root / "dask", interlink_config(api, root / "dask-state"))
    with jupyter_server(
        root / "server", config, extension={"max_workers": MAX_WORKERS, "refresh_interval": 0.5}
    ) as server:
        yield server, config


def live_pods(plugin: Service) -> list[str]:
    pods = plugin.root / "state" / "pods"
    return sorted(p.name for p in pods.iterdir()) if pods.is_dir() else []


async def open_stream(server: Jupyter) -> tuple[aiohttp.ClientSession, Stream]:
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(server.ws_url())
    return session, Stream(ws)


async def test_a_kernels_cluster_is_listed_scaled_adapted_and_closed(
    lab: tuple[Jupyter, Path], edge: tuple[Service, Service]
) -> None:
    server, config = lab
    _, plugin = edge
    session, stream = await open_stream(server)
    try:
        first = await stream.next_matching(lambda m: m["type"] == "nodes")
        assert first["nodes"] == []
        assert [e["ok"] for e in first["edges"]] == [True]
        await stream.next_matching(lambda m: m["type"] == "clusters")
        with kernel_cluster(config, {"name": "kern-a"}), server.http() as http:
            # found through discovery: made by another process, not by this server
            await stream.next_matching(cluster_msg("kern-a"))
            listed = http.get(server.api("clusters")).json()["clusters"]
            (mine,) = [c for c in listed if c["name"] == "kern-a"]
            assert (mine["mode"], mine["owner"], mine["pods"]) == ("direct", "other", 0)
            assert mine["counts"] == {
                "queued": 0,
                "starting": 0,
                "running": 0,
                "connected": 0,
                "finished": 0,
            }

            scaled = http.post(server.api("clusters/kern-a/scale"), json={"workers": 2})
            assert scaled.status_code == 200, scaled.text
            await stream.next_matching(
                cluster_msg("kern-a", lambda c: c["counts"]["connected"] == 2)
            )
            detail = http.get(server.api("clusters/kern-a")).json()
            assert [r["state"] for r in detail["rows"]] == ["connected", "connected"]
            for row in detail["rows"]:
                assert row["job_id"], row  # the edge's job id
                assert row["node"] == api_netloc(edge[0])
                assert row["created"] and row["restarts"] == 0
            assert detail["workers"] == 2 and len(live_pods(plugin)) == 2

            pod = detail["rows"][0]["pod"]
            logs = http.get(server.api(f"clusters/kern-a/pods/{pod}/logs"), params={"tail": 200})
            assert logs.status_code == 200
            assert logs.headers["content-type"].startswith("text/plain")
            assert "Registered to" in logs.text
            two = http.get(server.api(f"clusters/kern-a/pods/{pod}/logs"), params={"tail": 2})
            assert len(two.text.splitlines()) == 2
            assert logs.text.endswith(two.text)

            # adaptive: idle workers go down to the minimum
            adapted = http.put(
                server.api("clusters/kern-a/adapt"), json={"minimum": 1, "maximum": 3}
            )
            assert adapted.status_code == 200, adapted.text
            assert adapted.json()["adapt"] == {"minimum": 1, "maximum": 3}
            await stream.next_matching(cluster_msg("kern-a", lambda c: c["pods"] == 1))

            # a manual scale ends adaptive scaling, and the workers stay
            scaled = http.post(server.api("clusters/kern-a/scale"), json={"workers": 2})
            assert scaled.json()["adapt"] is None
            await stream.next_matching(
                cluster_msg("kern-a", lambda c: c["counts"]["connected"] == 2)
            )
            time.sleep(6)  # adaptive would have retired the idle workers within ~3 s
            summary = http.get(server.api("clusters/kern-a")).json()
            assert (summary["pods"], summary["adapt"]) == (2, None)

            # close from the sidebar: the kernel's cluster ends, and its pods at the edge
            assert http.delete(server.api("clusters/kern-a")).status_code == 204
            await stream.next_matching(lambda m: m == {"type": "removed", "name": "kern-a"})
            await wait_http(lambda: live_pods(plugin) == [], what="pods deleted at the edge")
            names = [c["name"] for c in http.get(server.api("clusters")).json()["clusters"]]
            assert "kern-a" not in names
    finally:
        await session.close()


def api_netloc(api: Service) -> str:
    return httpx.URL(api.url).netloc.decode()


async def test_a_killed_kernels_cluster_disappears(lab: tuple[Jupyter, Path]) -> None:
    server, config = lab
    session, stream = await open_stream(server)
    try:
        with kernel_cluster(config, {"name": "kern-b"}) as kernel:
            await stream.next_matching(cluster_msg("kern-b"))
            os.killpg(kernel.proc.pid, signal.SIGKILL)
            kernel.proc.wait(30)  # reaped, as the Jupyter server reaps a dead kernel
            await stream.next_matching(lambda m: m == {"type": "removed", "name": "kern-b"})
        with kernel_cluster(config, {"name": "kern-c"}) as kernel:
            await stream.next_matching(cluster_msg("kern-c"))
            kernel.close()  # the notebook's cluster.close()
            await stream.next_matching(lambda m: m == {"type": "removed", "name": "kern-c"})
        with server.http() as http:
            names = [c["name"] for c in http.get(server.api("clusters")).json()["clusters"]]
        assert not {"kern-b", "kern-c"} & set(names)
    finally:
        await session.close()


async def test_the_sidebar_creates_a_cluster_from_the_dask_config(
    lab: tuple[Jupyter, Path], edge: tuple[Service, Service]
) -> None:
    server, _ = lab
    _, plugin = edge
    with server.http() as http:
        defaults = http.get(server.api("config")).json()
        assert defaults["defaults"]["mode"] == "direct"
        assert defaults["defaults"]["memory"] == "512MiB"
        assert defaults["max_workers"] == MAX_WORKERS
        made = http.post(server.api("clusters"), json={"name": "side-a", "workers": 1})
        assert made.status_code == 201, made.text
        assert (made.json()["owner"], made.json()["mode"]) == ("server", "direct")
        await wait_http(
            lambda: http.get(server.api("clusters/side-a")).json()["counts"]["connected"] == 1,
            what="the sidebar's cluster has its worker",
        )
        again = http.post(server.api("clusters"), json={"name": "side-a"})
        assert again.status_code == 409 and again.json()["field"] == "name"
        assert http.delete(server.api("clusters/side-a")).status_code == 204
        await wait_http(lambda: live_pods(plugin) == [], what="pods deleted at the edge")
        assert http.get(server.api("clusters/side-a")).status_code == 404


def test_bad_input_is_refused_with_the_field_named(lab: tuple[Jupyter, Path]) -> None:
    server, config = lab
    with kernel_cluster(config, {"name": "kern-d"}), server.http() as http:

        def scale(body: Any) -> httpx.Response:
            return http.post(server.api("clusters/kern-d/scale"), json=body)

        for body, field in [
            ({"workers": -1}, "workers"),
            ({"workers": "2"}, "workers"),
            ({"workers": 1.5}, "workers"),
            ({"workers": True}, "workers"),
            ({"workers": MAX_WORKERS + 1}, "workers"),
            ({"jobs": MAX_WORKERS + 1}, "jobs"),
            ({}, "workers"),
            ({"workers": 1, "jobs": 1}, "workers"),
        ]:
            answer = scale(body)
            assert answer.status_code == 400, (body, answer.text)
            assert answer.json()["field"] == field, (body, answer.json())
        assert f"limit of {MAX_WORKERS} workers" in scale({"workers": 99}).json()["error"]

        adapt = http.put(server.api("clusters/kern-d/adapt"), json={"minimum": 3, "maximum": 1})
        assert (adapt.status_code, adapt.json()["field"]) == (400, "maximum")
        not_json = http.post(server.api("clusters/kern-d/scale"), content=b"{nope")
        assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]

        missing = http.get(server.api("clusters/no-such"))
        assert missing.status_code == 404
        assert "no running cluster 'no-such'" in missing.json()["error"]
        assert "kern-d" in missing.json()["error"]
        assert (
            http.post(server.api("clusters/no-such/scale"), json={"workers": 1}).status_code == 404
        )
        no_pod = http.get(server.api("clusters/kern-d/pods/kern-d-worker-9/logs"))
        assert no_pod.status_code == 404
        bad_tail = http.get(server.api("clusters/kern-d/pods/x/logs"), params={"tail": "-1"})
        assert (bad_tail.status_code, bad_tail.json()["field"]) == (400, "tail")

        for body, field in [
            ({"memory": "lots"}, "memory"),
            ({"processes": 0}, "processes"),
            ({"colour": "red"}, "colour"),
            ({"name": "Bad_Name"}, "name"),
        ]:
            made = http.post(server.api("clusters"), json=body)
            assert made.status_code == 400, (body, made.text)
            assert made.json()["field"] == field, (body, made.json())

    # the server's own auth: no token, and a cookie without the XSRF token
    with server.http(token=False) as anonymous:
        assert anonymous.get(server.api("clusters")).status_code == 403
        assert anonymous.post(server.api("clusters"), json={}).status_code == 403
    with server.http(token=False) as browser:
        assert browser.get(f"/?token={TOKEN}", follow_redirects=True).status_code == 200
        assert browser.get(server.api("clusters")).status_code == 200  # the login cookie works
        refused = browser.post(server.api("clusters"), json={"name": "via-cookie"})
        assert refused.status_code == 403
        assert "xsrf" in refused.text.lower()


async def test_the_stream_needs_a_login_and_says_what_it_expects(lab: tuple[Jupyter, Path]) -> None:
    server, _ = lab
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(server.ws_url(token=False))
        assert refused.value.status == 403
        ws = await session.ws_connect(server.ws_url())
        stream = Stream(ws)
        await stream.next_matching(lambda m: m["type"] == "clusters")
        await stream.send({"type": "subscribe"})
        error = await stream.next_matching(lambda m: m["type"] == "error")
        assert "rows" in error["error"]
        await ws.close()


def test_the_edge_down_is_shown_on_the_node_list(tmp_path: Path) -> None:
    plugin = start_plugin(tmp_path / "plugin")
    api = start_api(
        tmp_path / "api",
        {"plugin": {"url": plugin.url}, "auth": {"insecure_dev_token": "good-token"}},
    )
    config = write_dask_config(
        tmp_path / "dask",
        {
            "mode": "direct",
            "direct": {"url": api.url, "token": "wrong"},
            "state-dir": str(tmp_path),
        },
    )
    try:
        with jupyter_server(tmp_path / "server", config) as server, server.http() as http:
            (edge,) = http.get(server.api("nodes")).json()["edges"]
            assert edge["ok"] is False and "401" in edge["message"]
            write_dask_config(
                tmp_path / "dask",
                {
                    "mode": "direct",
                    "direct": {"url": api.url, "token": "good-token"},
                    "state-dir": str(tmp_path),
                },
            )
            # dask config is read once per process: a new server reads the fixed token
        with jupyter_server(tmp_path / "server2", config) as server, server.http() as http:
            answer = http.get(server.api("nodes")).json()
            assert answer["problems"] == []  # direct mode without Kubernetes is no problem
            (edge,) = answer["edges"]
            assert (edge["ok"], edge["message"]) == (True, "")
            api.stop()
            (edge,) = http.get(server.api("nodes")).json()["edges"]
            assert edge["ok"] is False and "cannot reach the edge" in edge["message"]
    finally:
        api.stop()
        plugin.stop()


def test_the_dashboard_link_works_behind_a_hub_prefix(
    edge: tuple[Service, Service], tmp_path: Path
) -> None:
    """Under JupyterHub the single-user server lives under /user/<name>/ and dask's link
    template (docs/jupyter.md) points at jupyter-server-proxy: the published link opens the
    Dask dashboard through the Jupyter server."""
    api, _ = edge
    prefix = "/user/alice/"
    config = write_dask_config(
        tmp_path / "dask",
        interlink_config(api, tmp_path / "dask-state"),
        distributed={"dashboard": {"link": "{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status"}},
    )
    with (
        jupyter_server(
            tmp_path / "server",
            config,
            base_url=prefix,
            env={"JUPYTERHUB_SERVICE_PREFIX": prefix},
        ) as server,
        server.http() as http,
    ):
        made = http.post(server.api("clusters"), json={"name": "hub-a"})
        assert made.status_code == 201, made.text
        link = made.json()["dashboard_link"]
        port = made.json()["dashboard_link"].split("/proxy/")[1].split("/")[0]
        assert link == f"{prefix}proxy/{port}/status"
        page = http.get(link, follow_redirects=True)
        assert page.status_code == 200
        assert "Dask" in page.text
        assert http.delete(server.api("clusters/hub-a")).status_code == 204


def test_a_followed_log_streams_until_the_worker_goes(
    lab: tuple[Jupyter, Path], edge: tuple[Service, Service]
) -> None:
    """``follow=true``: the log arrives while the worker runs and the answer ends when the
    pod goes (here: scaled away); the local dashboard link answers too."""
    server, config = lab
    with kernel_cluster(config, {"name": "kern-f", "n_workers": 1}), server.http() as http:
        rows = wait_for(
            lambda: [
                r
                for r in http.get(server.api("clusters/kern-f")).json().get("rows", [])
                if r["state"] == "connected"
            ],
            120,
            "kern-f's worker connects",
        )
        pod = rows[0]["pod"]
        summary = http.get(server.api("clusters/kern-f")).json()
        assert summary["dashboard_link"].startswith("http://")
        assert http.get(summary["dashboard_link"]).status_code == 200
        url = server.api(f"clusters/kern-f/pods/{pod}/logs")
        got: list[str] = []
        ended = threading.Event()

        def read() -> None:
            with http.stream("GET", url, params={"follow": "true", "tail": 5}) as answer:
                assert answer.status_code == 200
                got.extend(answer.iter_text())
            ended.set()

        reader = threading.Thread(target=read)
        reader.start()
        assert not ended.wait(4), "a followed log stays open while the worker runs"
        assert "".join(got).strip(), "the log's tail comes at once"
        scaled = http.post(server.api("clusters/kern-f/scale"), json={"workers": 0})
        assert scaled.status_code == 200
        assert ended.wait(60), "the followed log ends when the pod goes"
        reader.join()
