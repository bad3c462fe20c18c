"""An edge on this machine: the local plugin and an API server with a development token, started
as child processes. Used by ``interlink up`` and ``interlink demo`` (and by tests and Binder)."""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml

from .errors import BackendUnavailable


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedEdge:
    """Local plugin + API server under ``state_dir``; use as a context manager."""

    state_dir: Path
    port: int = 0
    token: str = field(default_factory=lambda: "dev-" + secrets.token_urlsafe(24))
    host: str = "127.0.0.1"
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The API server's URL."""
        return f"http://{self.host}:{self.port}"

    @property
    def plugin_socket(self) -> Path:
        """The local plugin's unix socket."""
        return self.state_dir / "plugin" / "plugin.sock"

    def write_configs(self) -> tuple[Path, Path]:
        """The plugin and API server configuration files."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        plugin_cfg = self.state_dir / "plugin.yaml"
        plugin_cfg.write_text(
            yaml.safe_dump(
                {"state_dir": str(self.state_dir / "plugin"), "socket": str(self.plugin_socket)}
            )
        )
        api_cfg = self.state_dir / "api.yaml"
        api_cfg.write_text(
            yaml.safe_dump(
                {
                    "listen": {"host": self.host, "port": self.port},
                    "plugin": {"url": f"unix://{self.plugin_socket}"},
                    "auth": {"insecure_dev_token": self.token},
                    "state_dir": str(self.state_dir / "api"),
                }
            )
        )
        api_cfg.chmod(0o600)
        return plugin_cfg, api_cfg

    def start(self, timeout: float = 30.0) -> EmbeddedEdge:
        """Start both services and wait until the API server reaches the plugin."""
        if not self.port:
            self.port = free_port(self.host)
        plugin_cfg, api_cfg = self.write_configs()
        logs = self.state_dir / "logs"
        logs.mkdir(exist_ok=True)
        cli = [sys.executable, "-m", "interlink_core.cli"]
        for args, name in (
            (["plugin", "local", "--config", str(plugin_cfg)], "plugin"),
            (["api", "--config", str(api_cfg)], "api"),
        ):
            with (logs / f"{name}.log").open("ab") as out:
                self.procs.append(
                    subprocess.Popen(
                        [*cli, *args, "--log-level", "warning"],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        self._wait(timeout)
        return self

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {self.token}"}
        last = ""
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    self.stop()
                    raise BackendUnavailable(
                        f"a service of the embedded edge exited ({p.returncode}); "
                        f"see the logs in {self.state_dir / 'logs'}"
                    )
            # a loopback readiness poll: the standard library is enough. The connection is
            # kept alive and closed by us, so the API server's port never lingers in TIME_WAIT.
            conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
            try:
                conn.request("POST", "/pinglink", headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                if resp.status == 200:
                    return
                last = body.decode(errors="replace")
            except (OSError, http.client.HTTPException) as exc:  # refused, reset, timeouts
                last = repr(exc)
            finally:
                conn.close()
            time.sleep(0.1)
        self.stop()
        raise BackendUnavailable(f"the embedded edge did not come up in {timeout}s: {last}")

    def stop(self) -> None:
        """Stop the services we started (by PID)."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        self.procs.clear()

    def __enter__(self) -> EmbeddedEdge:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
