"""Serving an ASGI app with uvicorn on a unix socket or a TCP port (optionally TLS / mTLS)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .errors import ConfigError


class PeerCertProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that puts the TLS client certificate (if any) into the request
    state as ``tls_client_cert`` (uvicorn does not expose it otherwise)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cert = transport.get_extra_info("peercert")
        self.app_state = {**self.app_state, "tls_client_cert": cert}


@dataclass(frozen=True)
class Listen:
    """Where to listen: a unix socket path, or host + port with optional TLS."""

    socket: Path | None = None
    host: str = "127.0.0.1"
    port: int = 0
    certfile: Path | None = None
    keyfile: Path | None = None
    client_ca: Path | None = None
    """If set, clients may present certificates signed by this CA (mTLS)."""

    def describe(self) -> str:
        """A URL-like description for log lines."""
        if self.socket:
            return f"unix://{self.socket}"
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://{self.host}:{self.port}"


Loop = Literal["uvloop", "asyncio"]


def uvicorn_config(
    app: Any, listen: Listen, log_level: str = "warning", loop: Loop = "uvloop"
) -> uvicorn.Config:
    """A uvicorn configuration for ``app`` on ``listen``."""
    kwargs: dict[str, Any] = {
        "log_level": log_level,
        "lifespan": "on",
        "http": PeerCertProtocol,
        "loop": loop,
        "timeout_graceful_shutdown": 5,
        "access_log": False,
    }
    if listen.socket is None:
        kwargs["host"] = listen.host
        kwargs["port"] = listen.port
        if listen.certfile:
            if not listen.keyfile:
                raise ConfigError("tls.key is required when tls.cert is set")
            kwargs["ssl_certfile"] = str(listen.certfile)
            kwargs["ssl_keyfile"] = str(listen.keyfile)
            if listen.client_ca:
                kwargs["ssl_ca_certs"] = str(listen.client_ca)
                kwargs["ssl_cert_reqs"] = ssl.CERT_OPTIONAL
    return uvicorn.Config(app, **kwargs)


def socket_dir_problem(directory: Path) -> str | None:
    """Why a unix socket must not live in ``directory`` (others could replace it), if so."""
    if directory.stat().st_mode & stat.S_IWOTH:
        return f"{directory} is writable by everyone"
    return None


def bind_unix_socket(path: Path) -> socket.socket:
    """A listening unix socket at ``path`` that only its owner may use (mode 0600), in a
    directory that only trusted users can write (it is made 0700 if it does not exist).

    uvicorn's own ``uds`` option makes the socket 0666; the socket carries pods and
    secrets, so it is bound here instead."""
    path = path.expanduser()
    old = os.umask(0o077)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        problem = socket_dir_problem(path.parent)
        if problem:
            raise ConfigError(
                f"socket: {problem}, so the socket {path} could be replaced by another user; "
                "put it in a directory only the service user can write (e.g. under its state_dir)"
            )
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            os.chmod(path, 0o600)
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
    finally:
        os.umask(old)
    return sock


def run(app: Any, listen: Listen, log_level: str = "warning", loop: Loop = "uvloop") -> None:
    """Serve ``app`` until SIGINT/SIGTERM (blocking). ``loop="asyncio"`` for a service that
    starts many processes: CPython spawns them with ``vfork``, uvloop (libuv) with ``fork``,
    which costs a few milliseconds more per process in a large Python process."""
    config = uvicorn_config(app, listen, log_level, loop)
    server = uvicorn.Server(config)
    if listen.socket is None:
        server.run()
        return
    sock = bind_unix_socket(listen.socket)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
