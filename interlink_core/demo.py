"""``interlink demo``: the Dask demo (found through the ``interlink.demos`` entry point, in
``interlink_dask``); ``interlink demo --pod``: start an edge on this machine, submit a pod,
watch it go pending → running → succeeded, print its logs, clean up (needs only ``[edge]``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .client import InterLinkClient, static_token
from .embedded import EmbeddedEdge
from .models import LogStruct, PodCreateRequests, PodStatus

WORK = (
    "import math, time\n"
    "for step in range(1, 4):\n"
    "    print(f'step {step}/3: sum of primes below {step * 10000}:', "
    "sum(n for n in range(2, step * 10000) if all(n % d for d in range(2, math.isqrt(n) + 1))), "
    "flush=True)\n"
    "    time.sleep(0.3)\n"
)


def demo_pod() -> dict[str, Any]:
    """The pod the demo submits: an init container, then a small computation."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "interlink-demo", "namespace": "default", "uid": str(uuid.uuid4())},
        "spec": {
            "initContainers": [
                {
                    "name": "stage-in",
                    "image": "busybox",
                    "command": ["sh", "-c", "echo staging input for $POD_NAME; sleep 0.5"],
                    "env": [
                        {
                            "name": "POD_NAME",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                        }
                    ],
                }
            ],
            "containers": [
                {"name": "compute", "image": "python", "command": [sys.executable, "-c", WORK]}
            ],
            "terminationGracePeriodSeconds": 5,
        },
    }


def describe(s: PodStatus) -> str:
    """A one-word state like ``kubectl get pods`` shows."""
    for c in s.initContainers:
        state = c.get("state") or {}
        if "terminated" not in state:
            return "Init:Running" if "running" in state else "Pending"
        if state["terminated"].get("exitCode"):
            return "Init:Error"
    states = [c.get("state") or {} for c in s.containers]
    if states and all("terminated" in st for st in states):
        bad = any(st["terminated"].get("exitCode") for st in states)
        return "Failed" if bad else "Succeeded"
    if any("running" in st for st in states):
        return "Running"
    return "Pending"


async def run_demo(state_dir: Path, out: Any = sys.stdout) -> int:
    """The whole demo; returns the exit status."""
    t0 = time.monotonic()

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - t0:5.1f}s] {msg}", file=out, flush=True)

    say("starting an edge on this machine: local plugin + API server (development token)")
    with EmbeddedEdge(state_dir=state_dir) as edge:
        say(f"edge ready at {edge.url}")
        async with InterLinkClient(edge.url, token=static_token(edge.token)) as api:
            ping = await api.ping()
            res = ping.resources
            if res:
                say(f"backend capacity: cpu {res.cpu}, memory {res.memory}, pods {res.pods}")
            pod = demo_pod()
            created = await api.create(PodCreateRequests(pod=pod))
            say(f"submitted pod default/interlink-demo as job {created.PodJID}")
            seen = ""
            final = ""
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                [status] = await api.status([pod]) or [PodStatus()]
                now = describe(status)
                if now != seen:
                    say(f"pod is {now}")
                    seen = now
                if now in ("Succeeded", "Failed", "Init:Error"):
                    final = now
                    break
                await asyncio.sleep(0.1)
            meta = pod["metadata"]
            for name in ("stage-in", "compute"):
                text = await api.logs(
                    LogStruct(
                        Namespace="default",
                        PodUID=meta["uid"],
                        PodName=meta["name"],
                        ContainerName=name,
                    )
                )
                say(f"logs of container {name}:")
                for line in text.decode(errors="replace").splitlines():
                    print(f"         | {line}", file=out)
            await api.delete(pod)
            say("pod deleted")
    say("edge stopped; demo done")
    return 0 if final == "Succeeded" else 1


def register_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``interlink demo``."""
    p = sub.add_parser(
        "demo", help="run a Dask cluster (or, with --pod, one pod) through a local edge"
    )
    p.add_argument("--state-dir", type=Path, help="keep the edge's files here (default: temp)")
    p.add_argument("--pod", action="store_true", help="the single-pod demo (needs only [edge])")
    p.set_defaults(func=_run)


def _pod_demo(state_dir: Path) -> int:
    return asyncio.run(run_demo(state_dir))


def _dask_demo() -> Any:
    """The Dask demo's ``run(state_dir)``, or ``None`` with the reason printed."""
    found = [e for e in entry_points(group="interlink.demos") if e.name == "dask"]
    try:
        return found[0].load() if found else None
    except ImportError as exc:
        print(
            f"interlink demo: the Dask demo needs the Python package {exc.name or exc!s}; "
            "install it with: pip install 'interlink[edge,dask]' "
            "(or run the single-pod demo: interlink demo --pod)",
            file=sys.stderr,
        )
        return None


def _run(args: argparse.Namespace) -> int:
    demo = _pod_demo if args.pod else _dask_demo()
    if demo is None:
        return 2
    if args.state_dir:
        return int(demo(args.state_dir.expanduser()))
    with tempfile.TemporaryDirectory(prefix="interlink-demo-") as tmp:
        return int(demo(Path(tmp)))
