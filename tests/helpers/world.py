"""Starting the real parts of the test world (issuer, API server, plugins) as subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INTERLINK = [sys.executable, "-m", "interlink_core.cli"]


def in_ci() -> bool:
    """True when running in CI, where missing infrastructure is a failure, never a skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(ok: bool, why: str) -> None:
    """Skip locally (or fail in CI) when a part of the test world is missing."""
    if ok:
        return
    if in_ci():
        pytest.fail(f"test world incomplete in CI: {why}")
    pytest.skip(why)


def tls(ca_file: Path | str, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """An SSL context trusting ``ca_file`` (and presenting ``cert`` = (chain, key) if given)."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Stop a process we started (by its PID), escalating to SIGKILL."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_ready(
    url: str, proc: subprocess.Popen[Any], log: Path, timeout: float = 30.0, **client: Any
) -> None:
    """Wait until ``GET url`` answers 200 (``url`` may be ``unix:///sock`` + path after ``|``)."""
    deadline = time.monotonic() + timeout
    if url.startswith("unix://"):
        sock, _, path = url.removeprefix("unix://").partition("|")
        client["transport"] = httpx.HTTPTransport(uds=sock)
        url = "http://localhost" + (path or "/healthz")
    with httpx.Client(timeout=2, **client) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if http.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout}s:\n{log.read_text()}")


@dataclass
class Issuer:
    """The running OIDC issuer and what tests need to use it."""

    info: dict[str, Any]
    proc: subprocess.Popen[Any]

    @property
    def url(self) -> str:
        return str(self.info["issuer"])

    @property
    def ca_file(self) -> Path:
        return Path(self.info["ca_file"])

    @property
    def audience(self) -> str:
        return str(self.info["audience"])

    def oidc_config(self, **extra: Any) -> dict[str, Any]:
        """The API server's ``auth.oidc`` section for this issuer."""
        return {
            "issuer": self.url,
            "audience": self.audience,
            "ca_file": str(self.ca_file),
            **extra,
        }

    def client_token(self, client_id: str = "vk-cluster-a") -> str:
        """A token from the real client-credentials grant."""
        secret = self.info["clients"][client_id]
        with httpx.Client(verify=tls(self.ca_file)) as http:
            resp = http.post(
                self.url + "/token",
                data={"grant_type": "client_credentials"},
                auth=(client_id, secret),
            )
            resp.raise_for_status()
            return str(resp.json()["access_token"])

    def user_token(self, user: str) -> str:
        """A token from the real password grant (carries the user's groups)."""
        with httpx.Client(verify=tls(self.ca_file)) as http:
            resp = http.post(
                self.url + "/token",
                data={
                    "grant_type": "password",
                    "username": user,
                    "password": self.info["users"][user],
                },
                auth=("vk-cluster-a", self.info["clients"]["vk-cluster-a"]),
            )
            resp.raise_for_status()
            return str(resp.json()["access_token"])

    def mint(self, key: Any = None, kid: str | None = None, **claims: Any) -> str:
        """A token signed with the issuer's key (or ``key``) carrying exactly ``claims``
        on top of valid defaults; for cases the issuer would never produce."""
        now = int(time.time())
        body = {
            "iss": self.url,
            "aud": self.audience,
            "sub": "vk-cluster-a",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        signing = key or Path(self.info["signing_key"]).read_bytes()
        return jwt.encode(
            body, signing, algorithm="RS256", headers={"kid": kid or str(self.info["kid"])}
        )


def start_issuer(root: Path) -> Issuer:
    """Start nanoidp over HTTPS (tests/world/oidc_issuer.py) and wait for it."""
    root.mkdir(parents=True, exist_ok=True)
    log = root / "issuer.log"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests/world/oidc_issuer.py"), "--dir", str(root)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not (root / "issuer.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError("OIDC issuer did not start:\n" + log.read_text())
        time.sleep(0.1)
    info = json.loads((root / "issuer.json").read_text())
    wait_ready(
        info["issuer"] + "/.well-known/openid-configuration", proc, log, verify=tls(info["ca_file"])
    )
    return Issuer(info=info, proc=proc)


@dataclass
class Service:
    """A started interLink service (API server or plugin)."""

    proc: subprocess.Popen[Any]
    url: str
    log: Path
    root: Path

    @property
    def socket(self) -> Path:
        """The unix socket of a service started on one."""
        return Path(self.url.removeprefix("unix://"))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop(self.proc, sig)


def plugin_client(socket_path: Path, timeout: float = 30.0) -> httpx.AsyncClient:
    """A raw async HTTP client for a plugin's unix socket (for wire-level tests)."""
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(socket_path)),
        base_url="http://plugin",
        timeout=timeout,
    )


def start_plugin(
    root: Path, backend: str = "local", config: dict[str, Any] | None = None
) -> Service:
    """``interlink plugin <backend>`` on a unix socket under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    sock = root / "plugin.sock"
    cfg = root / "plugin.yaml"
    cfg.write_text(
        yaml.safe_dump({"state_dir": str(root / "state"), "socket": str(sock), **(config or {})})
    )
    log = root / "plugin.log"
    proc = subprocess.Popen(
        [*INTERLINK, "plugin", backend, "--config", str(cfg), "--log-level", "warning"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_ready(f"unix://{sock}|/healthz", proc, log)
    return Service(proc=proc, url=f"unix://{sock}", log=log, root=root)


def start_api(
    root: Path, config: dict[str, Any], port: int | None = None, verify: Any = True
) -> Service:
    """``interlink api`` on a loopback TCP port with ``config`` (a dict written as YAML)."""
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = {"state_dir": str(root / "api-state"), **config}
    conf.setdefault("listen", {}).update({"host": "127.0.0.1", "port": port})
    cfg = root / "api.yaml"
    cfg.write_text(yaml.safe_dump(conf))
    log = root / "api.log"
    proc = subprocess.Popen(
        [*INTERLINK, "api", "--config", str(cfg), "--log-level", "warning"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    tls = conf["listen"].get("tls")
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{port}"
    wait_ready(url + "/healthz", proc, log, verify=verify)
    return Service(proc=proc, url=url, log=log, root=root)


async def until(cond: Callable[[], Any], timeout: float = 120, what: str = "") -> Any:
    """Call ``cond()`` (sync or async) every 0.3 s until it returns something true (its
    value); an AssertionError naming ``what`` and the last value after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if isinstance(last, Awaitable):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.3)
    raise AssertionError(f"not met in {timeout}s: {what} (last: {last!r})")


def shell_pod(name: str, script: str) -> dict[str, Any]:
    """A one-container pod for the wire (no Kubernetes): ``sh -c script``, a fresh UID."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
        "spec": {
            "containers": [{"name": "main", "image": "none", "command": ["sh", "-c", script]}],
            "terminationGracePeriodSeconds": 1,
        },
    }


def log_body(pod: dict[str, Any], **opts: Any) -> dict[str, Any]:
    """The ``/getLogs`` body for the pod's ``main`` container with these ``Opts``."""
    m = pod["metadata"]
    return {
        "Namespace": m["namespace"],
        "PodUID": m["uid"],
        "PodName": m["name"],
        "ContainerName": "main",
        "Opts": opts,
    }
