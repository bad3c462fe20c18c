"""A real Jupyter server (or JupyterLab) with the interLink extension, as a subprocess, and
"kernels": processes that own an InterLinkCluster, as a notebook would."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml

from tests.helpers.world import free_port, stop

TOKEN = "interlink-lab-token"
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]


def lab_python() -> str:
    """The Python whose JupyterLab serves browser tests: ``INTERLINK_LAB_PYTHON`` (CI points
    it at a clean venv with the built wheel installed) or this one."""
    return os.environ.get("INTERLINK_LAB_PYTHON") or sys.executable


def write_dask_config(folder: Path, interlink: dict[str, Any], **more: Any) -> Path:
    """A dask config directory with ``interlink:`` (and other top-level keys)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "interlink.yaml").write_text(yaml.safe_dump({"interlink": interlink, **more}))
    return folder


@dataclass
class Jupyter:
    """A running Jupyter server: its URL (with base URL), a client, the process."""

    url: str
    base_url: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    def http(self, token: bool = True, **kw: Any) -> httpx.Client:
        """A client authenticated with the token (or not)."""
        headers = {"Authorization": f"token {TOKEN}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120, **kw)

    def api(self, path: str) -> str:
        """The URL path of an interLink route (``clusters`` → ``/base/interlink/api/clusters``)."""
        return f"{self.base_url}interlink/api/{path}"

    def ws_url(self, token: bool = True) -> str:
        """The live stream's WebSocket URL."""
        query = f"?token={TOKEN}" if token else ""
        return f"ws://127.0.0.1:{self.port}{self.api('stream')}{query}"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextmanager
def jupyter_server(
    root: Path,
    dask_config: Path,
    *,
    lab: bool = False,
    base_url: str = "/",
    extension: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    python: str | None = None,
) -> Iterator[Jupyter]:
    """``jupyter server`` (or ``jupyter lab``) on loopback with the interLink extension enabled
    and ``c.InterLinkExtension`` set from ``extension``; HOME and the Jupyter dirs are private
    to the test."""
    root.mkdir(parents=True, exist_ok=True)
    config_dir = root / "jupyter-config"
    config_dir.mkdir(exist_ok=True)
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps(
            {
                "ServerApp": {"jpserver_extensions": {"interlink_jupyter": True}},
                "InterLinkExtension": extension or {},
            }
        )
    )
    home = root / "home"
    home.mkdir(exist_ok=True)
    port = free_port()
    log = root / "jupyter.log"
    full_env = {
        **os.environ,
        "HOME": str(home),
        "DASK_CONFIG": str(dask_config),
        "JUPYTER_CONFIG_DIR": str(config_dir),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTER_DATA_DIR": str(home / ".local/share/jupyter"),
        **(env or {}),
    }
    if "KUBECONFIG" not in (env or {}):
        full_env.pop("KUBECONFIG", None)  # no cluster unless the test gives one
    app = "jupyterlab" if lab else "jupyter_server"
    proc = subprocess.Popen(
        [
            python or sys.executable,
            "-m",
            app,
            "--no-browser",
            "--allow-root",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.base_url={base_url}",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={root}",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=full_env,
        cwd=root,
        start_new_session=True,
    )
    server = Jupyter(f"http://127.0.0.1:{port}", base_url, port, proc, log, full_env)
    try:
        with server.http() as http:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if http.get(f"{base_url}api/status").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None, server.log_tail()
                assert time.monotonic() < deadline, server.log_tail()
                time.sleep(0.3)
        yield server
    finally:
        stop(proc, timeout=30)


KERNEL = textwrap.dedent(
    """
    import asyncio, json, sys
    from interlink_dask import InterLinkCluster

    async def main():
        options = json.loads(sys.argv[1])
        async with InterLinkCluster(asynchronous=True, **options) as cluster:
            print("READY", cluster.name, flush=True)
            loop = asyncio.get_running_loop()
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line or line.strip() == "close":
                    break
        print("CLOSED", flush=True)

    asyncio.run(main())
    """
)


@dataclass
class Kernel:
    """A process that owns a cluster, like a notebook kernel."""

    name: str
    proc: subprocess.Popen[str]

    def close(self, timeout: float = 60) -> None:
        """Close the cluster the way a notebook's ``cluster.close()`` does, and exit."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("close\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout)


@contextmanager
def kernel_cluster(
    dask_config: Path, options: dict[str, Any], env: dict[str, str] | None = None
) -> Iterator[Kernel]:
    """Start a cluster in another process (``options`` as keyword arguments)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", KERNEL, json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "DASK_CONFIG": str(dask_config), **(env or {})},
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY "), f"the kernel's cluster did not start: {line!r}"
        yield Kernel(line.split()[1], proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


class Stream:
    """The sidebar's WebSocket, as a test reads it: every message kept, and a wait for one
    that meets a condition."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def next_matching(self, cond: Any, timeout: float = 120) -> dict[str, Any]:
        """The first message from now on for which ``cond(message)`` is true (an
        AssertionError after ``timeout`` seconds, whatever the socket does)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    msg = await self.ws.receive()
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        raise AssertionError(f"stream ended: {msg}")
                    data = json.loads(msg.data)
                    self.seen.append(data)
                    if cond(data):
                        return dict(data)
        except TimeoutError:
            raise AssertionError(f"no such message in {timeout}s; last: {self.seen[-3:]}") from None

    async def current_matching(self, kind: str, cond: Any, timeout: float = 120) -> dict[str, Any]:
        """The state of ``kind`` (``nodes``, ``clusters``) once it meets ``cond``: the last
        message of that kind already received if it does (the server sends a state only when
        it changes), else the next one that does."""
        last = [m for m in self.seen if m["type"] == kind][-1:]
        if last and cond(last[0]):
            return dict(last[0])
        return await self.next_matching(lambda m: m["type"] == kind and cond(m), timeout)

    async def send(self, data: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(data))


def cluster_msg(name: str, cond: Any = lambda c: True) -> Any:
    """A condition: a ``cluster`` message about ``name`` whose summary meets ``cond``."""
    return lambda m: m["type"] == "cluster" and m["cluster"]["name"] == name and cond(m["cluster"])


async def wait_http(fn: Any, timeout: float = 120, what: str = "") -> Any:
    """Call ``fn`` (sync) until it returns something true."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(fn)
        if last:
            return last
        await asyncio.sleep(0.3)
    raise AssertionError(f"not met in {timeout}s: {what} (last: {last!r})")
