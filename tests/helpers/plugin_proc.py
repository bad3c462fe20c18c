"""Start a real plugin service as a subprocess on a unix socket, and stop it again.

The plugin runs the same code as ``interlink plugin <backend>`` (the SDK's command), launched
through a tiny argparse host so that it does not depend on every other ``interlink`` subcommand
being importable.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

_LAUNCH = (
    "import argparse, sys\n"
    "from interlink_core.sdk import register_command\n"
    "p = argparse.ArgumentParser(prog='interlink')\n"
    "register_command(p.add_subparsers())\n"
    "a = p.parse_args(sys.argv[1:])\n"
    "sys.exit(a.func(a))\n"
)


def plugin_client(socket_path: Path, timeout: float = 30.0) -> httpx.AsyncClient:
    """An async HTTP client talking to a plugin on its unix socket."""
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(socket_path)),
        base_url="http://plugin",
        timeout=timeout,
    )


def start_plugin(
    tmp_path: Path,
    backend: str = "local",
    config: dict[str, Any] | None = None,
    state_dir: Path | None = None,
    wait: float = 20.0,
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``interlink plugin <backend>`` serving on ``<tmp_path>/p.sock`` with its state in
    ``state_dir`` (default ``<tmp_path>/state``); return once ``/healthz`` answers."""
    socket_path = tmp_path / "p.sock"
    state_dir = state_dir or tmp_path / "state"
    args = [
        sys.executable,
        "-c",
        _LAUNCH,
        "plugin",
        backend,
        "--socket",
        str(socket_path),
        "--state-dir",
        str(state_dir),
        "--log-level",
        "warning",
    ]
    if config:
        cfg = tmp_path / f"{backend}-config.yaml"
        cfg.write_text(json.dumps(config))  # JSON is YAML
        args += ["--config", str(cfg)]
    log = open(tmp_path / "plugin.log", "ab")
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + wait
    transport = httpx.HTTPTransport(uds=str(socket_path))
    with httpx.Client(transport=transport, base_url="http://plugin", timeout=2) as client:
        while True:
            if proc.poll() is not None:
                out = (tmp_path / "plugin.log").read_text(errors="replace")
                raise RuntimeError(f"plugin exited with {proc.returncode}:\n{out[-4000:]}")
            with contextlib.suppress(httpx.TransportError):
                if client.get("/healthz").status_code == 200:
                    return proc, socket_path
            if time.monotonic() > deadline:
                stop_process(proc)
                raise TimeoutError(f"plugin did not answer /healthz within {wait}s")
            time.sleep(0.05)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM ``proc``, SIGKILL it if it is still there after ``timeout``, reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
