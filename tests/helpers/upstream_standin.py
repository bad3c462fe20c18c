"""A stand-in for an upstream interLink plugin (as upstream's SLURM plugin behaves on the wire),
run as a process of its own: ``python -m tests.helpers.upstream_standin --socket S --record R``.

- ``/status`` answers from a cache refreshed every ``--cache-seconds``: a pod created since the
  last refresh is left out, and no statuses at all is ``null`` (a Go nil slice);
- the ping (``/status`` with ``[]``) gives quantities as strings (``--gpus`` GPUs) and no
  taints;
- ``/create`` answers 200 with one ``CreateStruct`` (upstream's API server refuses anything but
  200 from a plugin); ``/delete`` is a POST and is recorded, one JSON line per call, in the
  ``--record`` file (what the tests count);
- no ``/updateVolumes`` and no ``/updateCache``: Go's "404 page not found";
- a job "runs" ``--run-seconds`` (or its pod's annotation ``standin/run-seconds``) and exits
  with the annotation ``standin/exit-code`` (0 by default).

``/healthz`` exists only so that the tests know it is up (upstream plugins have none).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.helpers.world import REPO, Service, wait_ready

GO_NOT_FOUND = "404 page not found\n"


@dataclass
class Job:
    pod: dict[str, Any]
    jid: str
    started: float
    run: float
    exit_code: int

    def status(self, now: float) -> dict[str, Any]:
        meta = self.pod["metadata"]
        start = datetime.fromtimestamp(self.started, UTC).isoformat().replace("+00:00", "Z")
        if now - self.started < self.run:
            state: dict[str, Any] = {"running": {"startedAt": start}}
        else:
            end = datetime.fromtimestamp(self.started + self.run, UTC)
            state = {
                "terminated": {
                    "exitCode": self.exit_code,
                    "startedAt": start,
                    "finishedAt": end.isoformat().replace("+00:00", "Z"),
                }
            }
        containers = [
            {"name": c["name"], "state": state, "ready": "running" in state, "restartCount": 0}
            for c in self.pod["spec"]["containers"]
        ]
        return {
            "name": meta["name"],
            "UID": meta["uid"],
            "namespace": meta["namespace"],
            "JID": self.jid,
            "containers": containers,
            "initContainers": None,
        }


class StandIn:
    """The plugin's state: jobs by pod UID and the status cache."""

    def __init__(
        self, cache_seconds: float, run_seconds: float, record: Path, gpus: int = 2
    ) -> None:
        self.gpus = gpus
        self.cache_seconds = cache_seconds
        self.run_seconds = run_seconds
        self.record = record
        self.jobs: dict[str, Job] = {}
        self.cache: dict[str, dict[str, Any]] = {}
        self.next_jid = 100

    async def refresh(self) -> None:
        while True:
            now = time.time()
            self.cache = {uid: job.status(now) for uid, job in self.jobs.items()}
            await asyncio.sleep(self.cache_seconds)

    async def create(self, request: Request) -> Response:
        body = await request.json()
        data = body[0] if isinstance(body, list) else body
        pod = data["pod"]
        uid = pod["metadata"]["uid"]
        ann = pod["metadata"].get("annotations") or {}
        if uid not in self.jobs:
            self.next_jid += 1
            self.jobs[uid] = Job(
                pod,
                str(self.next_jid),
                time.time(),
                float(ann.get("standin/run-seconds", self.run_seconds)),
                int(ann.get("standin/exit-code", 0)),
            )
        return JSONResponse({"PodUID": uid, "PodJID": self.jobs[uid].jid})

    async def status(self, request: Request) -> Response:
        pods = json.loads(await request.body() or b"[]")
        if not pods:
            resources: dict[str, Any] = {"cpu": "8", "memory": "16Gi", "pods": "100"}
            if self.gpus:
                gpus = {"resourceType": "nvidia.com/gpu", "available": str(self.gpus)}
                resources["accelerators"] = [gpus]
            return JSONResponse({"status": "ok", "resources": resources})
        found = [
            self.cache[p["metadata"]["uid"]] for p in pods if p["metadata"]["uid"] in self.cache
        ]
        return Response(json.dumps(found or None), media_type="application/json")

    async def delete(self, request: Request) -> Response:
        pod = await request.json()
        uid = pod["metadata"]["uid"]
        with self.record.open("a") as f:
            f.write(json.dumps({"uid": uid, "name": pod["metadata"]["name"], "t": time.time()}))
            f.write("\n")
        self.jobs.pop(uid, None)
        self.cache.pop(uid, None)
        return PlainTextResponse("All containers for submitted Pods have been deleted")

    async def logs(self, request: Request) -> Response:
        return PlainTextResponse("standin log line\n")


def make_app(plugin: StandIn) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(plugin.refresh())
        yield
        task.cancel()

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(GO_NOT_FOUND, status_code=404)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/create", plugin.create, methods=["POST"]),
        Route("/status", plugin.status, methods=["GET", "POST"]),
        Route("/delete", plugin.delete, methods=["POST", "DELETE"]),
        Route("/getLogs", plugin.logs, methods=["GET", "POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found})


def start_standin(
    root: Path, cache_seconds: float = 10.0, run_seconds: float = 2.0, gpus: int = 2
) -> tuple[Service, Path]:
    """The stand-in as a process on a unix socket under ``root``; also the file its deletes
    are recorded in."""
    root.mkdir(parents=True, exist_ok=True)
    sock, record, log = root / "standin.sock", root / "deletes.jsonl", root / "standin.log"
    sock.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.helpers.upstream_standin",
            "--socket",
            str(sock),
            "--record",
            str(record),
            "--cache-seconds",
            str(cache_seconds),
            "--run-seconds",
            str(run_seconds),
            "--gpus",
            str(gpus),
        ],
        cwd=REPO,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_ready(f"unix://{sock}|/healthz", proc, log)
    return Service(proc=proc, url=f"unix://{sock}", log=log, root=root), record


def deletes_of(record: Path, uid: str) -> int:
    """How many deletes the stand-in received for this pod."""
    if not record.exists():
        return 0
    return sum(json.loads(line)["uid"] == uid for line in record.read_text().splitlines())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--socket", type=Path, required=True)
    p.add_argument("--record", type=Path, required=True)
    p.add_argument("--cache-seconds", type=float, default=10.0)
    p.add_argument("--run-seconds", type=float, default=2.0)
    p.add_argument("--gpus", type=int, default=2, help="nvidia.com/gpu in the ping (0: none)")
    args = p.parse_args()
    plugin = StandIn(args.cache_seconds, args.run_seconds, args.record, args.gpus)
    uvicorn.run(make_app(plugin), uds=str(args.socket), log_level="warning")


if __name__ == "__main__":
    main()
