"""An upstream-style plugin process for tests: it relays the wire contract to a real plugin
(``--backend``, a unix socket) but, like upstream interLink's plugins, has no
``/updateVolumes`` route (Go's ``net/http`` answer: ``404 page not found``). It appends the
method, path and ``InterLink-*`` headers of every request it receives to ``--record`` (JSON
lines), so a test sees what reached the plugin.

    python -m tests.helpers.relay_plugin --socket S --backend B --record R
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.helpers.world import REPO, Service, wait_ready

UPSTREAM_ROUTES = ("/create", "/delete", "/status", "/getLogs", "/healthz")


def make_app(backend: str, record: Path) -> web.Application:
    """The relay: upstream's routes go to ``backend``; anything else is Go's 404."""

    async def on_startup(app: web.Application) -> None:
        app["http"] = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=backend))

    async def on_cleanup(app: web.Application) -> None:
        await app["http"].close()

    async def relay(request: web.Request) -> web.StreamResponse:
        seen = {k: v for k, v in request.headers.items() if k.lower().startswith("interlink-")}
        with record.open("a") as out:
            out.write(json.dumps({"method": request.method, "path": request.path, **seen}) + "\n")
        if request.path not in UPSTREAM_ROUTES:
            return web.Response(status=404, text="404 page not found\n")
        http: aiohttp.ClientSession = request.app["http"]
        headers: dict[str, Any] = {"Content-Type": request.headers.get("Content-Type", "")}
        async with http.request(
            request.method,
            "http://plugin" + request.path_qs,
            data=await request.read(),
            headers={k: v for k, v in headers.items() if v},
        ) as resp:
            body = await resp.read()
            return web.Response(
                status=resp.status, body=body, content_type=resp.content_type or None
            )

    app = web.Application()
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("*", "/{tail:.*}", relay)
    return app


def start_relay_plugin(root: Path, backend: Service) -> Service:
    """This relay as its own process on ``root/upstream.sock``, in front of ``backend``."""
    root.mkdir(parents=True, exist_ok=True)
    sock, log = root / "upstream.sock", root / "upstream.log"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.helpers.relay_plugin", "--socket", str(sock)),
            *("--backend", str(backend.socket), "--record", str(root / "requests.jsonl")),
        ],
        cwd=REPO,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_ready(f"unix://{sock}|/healthz", proc, log)
    return Service(proc=proc, url=f"unix://{sock}", log=log, root=root)


def requests_seen(plugin: Service) -> list[dict[str, str]]:
    """What reached the relay so far: method, path and ``InterLink-*`` headers per request."""
    path = plugin.root / "requests.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args()
    web.run_app(make_app(args.backend, args.record), path=args.socket, print=None)


if __name__ == "__main__":
    main()
