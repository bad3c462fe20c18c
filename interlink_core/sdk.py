"""Plugin SDK: subclass :class:`Plugin`, implement five coroutines, and you have a backend.

The SDK serves the plugin side of the wire contract (``POST /create``, ``POST /delete``,
``GET /status``, ``GET /getLogs``), keeps the pod ↔ job table in SQLite (so a restarted plugin
still knows every pod), makes create idempotent per pod UID and answers pings. It also guards
every plugin: an owner-only unix socket by default, TCP only with a shared token or mTLS (or
``--insecure-dev`` on loopback), a body size limit, JSON bodies only, valid Kubernetes pod
names, one error shape (``{"error": ...}``) and bounded log answers.

A minimal backend::

    class EchoPlugin(Plugin):
        name = "echo"

        async def submit(self, data: RetrievedPodData) -> Submitted:
            return Submitted(job_id="echo-" + pod_meta(data.pod)[2])

        async def cancel(self, record: JobRecord, pod: JSON) -> None:
            pass

        async def poll(self, records: list[JobRecord]) -> list[PodStatus]:
            return [PodStatus(name=r.name, namespace=r.namespace, UID=r.uid, JID=r.job_id)
                    for r in records]

        async def logs(self, record: JobRecord, request: LogStruct) -> AsyncIterator[bytes]:
            yield b"hello\\n"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from ipaddress import ip_address
from pathlib import Path
from typing import Any, ClassVar

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import Field, ValidationError

from .config import StrictModel, load_config
from .errors import BadRequest, ConfigError, NotFound, Unsupported
from .guards import BodyLimit, CallerCheck, JsonOnly, SecretFile, add_error_handlers
from .kubenames import check_pod_names
from .logs import answer_limit
from .models import (
    JSON,
    POD,
    CreateStruct,
    LogStruct,
    PingAnswer,
    PodStatus,
    RetrievedPodData,
    dump,
    pod_meta,
    pod_uids,
    status_list_json,
    validation_message,
)
from .serve import Listen, run
from .store import JobRecord, JobStore
from .tlsfiles import ca_problem, cert_pair_problem, problems

log = logging.getLogger("interlink.plugin")
SESSION_HEADER = "InterLink-Http-Session"
TENANT_HEADER = "InterLink-Tenant"


class PluginTLS(StrictModel):
    """The plugin's own certificate on TCP and, for mTLS, the CA that signs its callers'."""

    cert: Path
    key: Path
    client_ca: Path | None = Field(
        default=None,
        description="Accept callers with a client certificate signed by this CA (mTLS).",
    )


class PluginConfig(StrictModel):
    """Settings every plugin has; a backend extends this model with its own keys."""

    state_dir: Path = Field(
        default=Path("~/.local/state/interlink/plugin"),
        description="Where the plugin keeps its SQLite pod↔job table and per-pod files.",
    )
    socket: Path | None = Field(
        default=None, description="Unix socket to serve on (default: <state_dir>/plugin.sock)."
    )
    host: str = "127.0.0.1"
    port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Serve on TCP instead of a unix socket (needs token_file or tls.client_ca).",
    )
    token_file: Path | None = Field(
        default=None,
        description="On TCP: callers must send 'Authorization: Bearer <the token in this file>' "
        "(re-read when the file changes).",
    )
    tls: PluginTLS | None = Field(default=None, description="On TCP: HTTPS, and mTLS.")
    insecure_dev: bool = Field(
        default=False,
        description="Allow TCP without token or mTLS, on a loopback host only (development).",
    )
    max_request_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Larger request bodies get a 413."
    )
    max_log_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1,
        description="Most bytes of a log one /getLogs answer carries (LimitBytes lowers it).",
    )

    def listen(self) -> Listen:
        """Where this plugin listens."""
        if self.port is not None:
            tls = self.tls
            return Listen(
                host=self.host,
                port=self.port,
                certfile=tls.cert.expanduser() if tls else None,
                keyfile=tls.key.expanduser() if tls else None,
                client_ca=tls.client_ca.expanduser() if tls and tls.client_ca else None,
            )
        return Listen(socket=(self.socket or self.state_path / "plugin.sock").expanduser())

    def transport_problem(self, loopback_only: bool = False) -> str | None:
        """Why this plugin must not serve where it is configured to, with the fix; ``None``
        when it may (a unix socket; TCP with a token or mTLS; loopback with insecure_dev)."""
        if self.port is None:
            return None
        where = f"{self.host}:{self.port}"
        if loopback_only and not is_loopback(self.host):
            return (
                f"host: this plugin runs commands on this host as its own user and serves only "
                f"on a unix socket or loopback, not on {where}; use socket (the default), or "
                "host: 127.0.0.1"
            )
        if self.tls:
            found = problems(
                cert_pair_problem(self.tls.cert, self.tls.key, "tls"),
                ca_problem(self.tls.client_ca, "tls.client_ca"),
            )
            if found:
                return found[0]
        if self.token_file is not None or (self.tls and self.tls.client_ca):
            return None
        if self.insecure_dev:
            if is_loopback(self.host):
                return None
            return (
                f"insecure_dev: allowed on a loopback host only, not on {where}; set token_file "
                "(or --token-file) or tls with client_ca"
            )
        return (
            f"port: a plugin on TCP ({where}) would run anything for anyone who reaches the "
            "port; set token_file (--token-file; the API server sends it with plugin.token_file) "
            "or tls with cert, key and client_ca (mTLS), or serve on a unix socket (drop port); "
            "for a loopback-only test, add --insecure-dev"
        )

    @property
    def state_path(self) -> Path:
        """``state_dir`` with ``~`` expanded."""
        return self.state_dir.expanduser()


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Submitted:
    """What :meth:`Plugin.submit` returns: the remote job id and data to remember with it."""

    job_id: str
    data: dict[str, Any] = field(default_factory=dict)


class Plugin(ABC):
    """Base class of a backend. Subclasses set ``name`` (and ``config_model`` if they have
    settings of their own) and implement ``submit``, ``cancel``, ``poll`` and ``logs``."""

    name: ClassVar[str] = "plugin"
    config_model: ClassVar[type[PluginConfig]] = PluginConfig
    loopback_only: ClassVar[bool] = False
    """Refuse TCP on anything but loopback (a backend that runs commands as its own user)."""
    startup_warning: ClassVar[str] = ""
    """Logged as a warning when the service starts (what an operator must know)."""

    def __init__(self, config: PluginConfig) -> None:
        self.config = config
        config.state_path.mkdir(mode=0o700, parents=True, exist_ok=True)
        config.state_path.chmod(0o700)  # the pod table, the socket: the plugin's user only
        self.store = JobStore(config.state_path / "jobs.sqlite")

    async def start(self) -> None:
        """Called once when the service starts (re-adopt running work here)."""

    async def stop(self) -> None:
        """Called once when the service stops (running jobs must keep running)."""

    @abstractmethod
    async def submit(self, data: RetrievedPodData) -> Submitted:
        """Start the pod as a job; return its job id. Raise :class:`InterLinkError` to refuse."""

    async def submit_for(self, data: RetrievedPodData, tenant: str | None) -> Submitted:
        """:meth:`submit` for a tenant: the API server's ``InterLink-Tenant`` header, or
        ``None`` without one. Backends that run each tenant's jobs as its own user override
        this; the default ignores the tenant."""
        return await self.submit(data)

    @abstractmethod
    async def cancel(self, record: JobRecord, pod: JSON) -> None:
        """Stop the job of a pod and clean up; return when it is gone."""

    @abstractmethod
    async def poll(self, records: list[JobRecord]) -> list[PodStatus]:
        """Statuses of all these pods, asking the backend once for all of them."""

    @abstractmethod
    def logs(self, record: JobRecord, request: LogStruct) -> AsyncIterator[bytes]:
        """The container log as asked (an async generator; with ``Follow``, until it ends)."""

    async def ping(self) -> PingAnswer:
        """Health and capacity of the backend."""
        return PingAnswer(status="ok")

    async def update_volumes(self, record: JobRecord, data: RetrievedPodData) -> None:
        """Rewrite the volume files of a running pod from ``data`` (the VK refreshes
        service-account tokens this way before they expire). Backends whose jobs cannot see
        new files keep this default, which answers 501."""
        raise Unsupported(
            f"the {self.name} plugin cannot update the volumes of a running pod; its "
            "service-account tokens expire at their expirationSeconds"
        )


async def _body(request: Request) -> bytes:
    raw = await request.body()
    if not raw.strip():
        raise BadRequest("the request body is empty: send JSON")
    return raw


async def _json_body(request: Request) -> Any:
    raw = await _body(request)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


def parse(adapter: Callable[[Any], Any], value: Any) -> Any:
    """Validate ``value``; turn a validation error into a 400 naming the field."""
    try:
        return adapter(value)
    except ValidationError as exc:
        raise BadRequest(validation_message(exc)) from None


async def primed(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``stream`` with its first chunk read now, so that an error it raises at once becomes
    an error answer instead of a broken streamed one."""
    try:
        first = await anext(stream, b"")
    except BaseException:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
        raise

    async def relay() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in stream:
            yield chunk

    return relay()


async def capped(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """At most ``limit`` bytes of ``stream``."""
    left = limit
    async for chunk in stream:
        if left <= 0:
            break
        yield chunk[:left]
        left -= len(chunk)


PLUGIN_BODY_ROUTES = ("/create", "/delete", "/status", "/getLogs", "/updateVolumes")
"""Plugin routes that read a JSON body."""


def make_plugin_app(plugin: Plugin) -> Any:
    """The plugin routes serving ``plugin``, as an ASGI app: FastAPI inside the request
    guards (caller check on TCP, body size limit, JSON Content-Type)."""
    app = _plugin_routes(plugin)
    cfg = plugin.config
    guarded: Any = BodyLimit(JsonOnly(app, PLUGIN_BODY_ROUTES), cfg.max_request_bytes)
    if cfg.port is not None and (cfg.token_file is not None or (cfg.tls and cfg.tls.client_ca)):
        token = SecretFile(cfg.token_file, "token_file") if cfg.token_file else None
        guarded = CallerCheck(guarded, token, certificates=bool(cfg.tls and cfg.tls.client_ca))
    return guarded


def _plugin_routes(plugin: Plugin) -> FastAPI:
    """The FastAPI app with the interLink plugin routes."""
    locks: dict[str, asyncio.Lock] = {}  # one per pod UID being created...
    users: dict[str, int] = {}  # ...and how many creates hold or wait for it

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await plugin.start()
        try:
            yield
        finally:
            await plugin.stop()

    app = FastAPI(title=f"interLink plugin: {plugin.name}", lifespan=lifespan)
    add_error_handlers(app)

    async def create_one(data: RetrievedPodData, tenant: str | None) -> CreateStruct:
        _, _, uid = pod_meta(data.pod)
        lock = locks.setdefault(uid, asyncio.Lock())
        users[uid] = users.get(uid, 0) + 1
        try:
            async with lock:
                existing = plugin.store.get(uid)
                if existing is not None:
                    return CreateStruct(PodUID=uid, PodJID=existing.job_id)
                done = await plugin.submit_for(data, tenant)
                namespace, name, _ = pod_meta(data.pod)
                plugin.store.put(
                    JobRecord(
                        uid=uid, namespace=namespace, name=name, job_id=done.job_id, data=done.data
                    )
                )
        finally:  # refused or not, a pod's lock goes with the last create waiting on it
            users[uid] -= 1
            if not users[uid]:
                del users[uid], locks[uid]
        return CreateStruct(PodUID=uid, PodJID=done.job_id)

    def pod_data(body: Any, where: str = "pod") -> RetrievedPodData:
        data: RetrievedPodData = parse(RetrievedPodData.model_validate, body)
        check_pod_names(data.pod, where)
        return data

    @app.post("/create")
    async def create(request: Request) -> Response:
        body = await _json_body(request)
        tenant = request.headers.get(TENANT_HEADER)
        if isinstance(body, list):
            items = [pod_data(b, f"[{i}].pod") for i, b in enumerate(body)]
            answers = [dump(await create_one(item, tenant)) for item in items]
            return JSONResponse(answers)
        item = pod_data(body)
        return JSONResponse(dump(await create_one(item, tenant)))

    @app.post("/updateVolumes")
    async def update_volumes(request: Request) -> Response:
        data = pod_data(await _json_body(request))
        namespace, name, uid = pod_meta(data.pod)
        record = plugin.store.get(uid)
        if record is None:
            raise NotFound(f"pod {namespace}/{name} (uid {uid}) is not known")
        async with locks.setdefault(uid, asyncio.Lock()):
            await plugin.update_volumes(record, data)
        return PlainTextResponse("updated")

    @app.post("/delete")
    @app.delete("/delete")
    async def delete(request: Request) -> Response:
        pod = parse(POD.validate_python, await _json_body(request))
        _, _, uid = pod_meta(pod)
        record = plugin.store.get(uid)
        if record is None:
            return PlainTextResponse("pod was not known; nothing to delete")
        await plugin.cancel(record, pod)
        plugin.store.remove(uid)
        return PlainTextResponse("deleted")

    @app.get("/status")
    @app.post("/status")
    async def status(request: Request) -> Response:
        uids = parse(pod_uids, await _body(request))  # thousands of pods: read the UIDs only
        if not uids:
            return JSONResponse(dump(await plugin.ping()))
        known = plugin.store.many(uids)
        records = [known[uid] for uid in uids if uid in known]
        statuses = await plugin.poll(records) if records else []
        return Response(status_list_json(statuses), media_type="application/json")

    @app.get("/getLogs")
    @app.post("/getLogs")
    async def get_logs(request: Request) -> Response:
        req = parse(LogStruct.model_validate, await _json_body(request))
        record = plugin.store.get(req.PodUID)
        if record is None:
            raise NotFound(f"pod {req.Namespace}/{req.PodName} (uid {req.PodUID}) is not known")
        if req.Opts.Follow:  # streamed as it is written, without a cap
            return StreamingResponse(plugin.logs(record, req), media_type="text/plain")
        limit = answer_limit(req.Opts, plugin.config.max_log_bytes)
        if not req.Opts.Tail:  # the backend's reader may stop there (Tail keeps the newest)
            req = req.model_copy(update={"Opts": req.Opts.model_copy(update={"Bytes": limit})})
        stream = capped(plugin.logs(record, req), limit)
        return StreamingResponse(await primed(stream), media_type="text/plain")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


# --- command line -----------------------------------------------------------------------------


def discover_plugins() -> dict[str, Callable[[], type[Plugin]]]:
    """Backends installed through the ``interlink.plugins`` entry point group."""
    return {ep.name: ep.load for ep in entry_points(group="interlink.plugins")}


def register_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``interlink plugin <backend>``: run a plugin service."""
    p = sub.add_parser("plugin", help="run a plugin (a backend) service")
    p.add_argument("backend", help="backend name: " + ", ".join(sorted(discover_plugins())))
    _add_serving_options(p)
    p.set_defaults(func=_run_plugin_command)


def load_plugin(backend: str, config_path: Path | None, overrides: dict[str, Any]) -> Plugin:
    """Build a configured plugin instance by backend name."""
    found = discover_plugins()
    if backend not in found:
        raise ConfigError(
            f"unknown plugin backend {backend!r}; installed: {', '.join(sorted(found))}"
        )
    cls = found[backend]()
    config = load_config(cls.config_model, config_path, overrides)
    return cls(config)


def _add_serving_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", type=Path, help="YAML configuration file")
    p.add_argument("--socket", type=Path, help="unix socket to serve on (the default)")
    p.add_argument(
        "--port", type=int, help="serve on this TCP port (needs --token-file or tls.client_ca)"
    )
    p.add_argument("--host", help="TCP address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--token-file",
        type=Path,
        help="on TCP: callers must send this file's token as 'Authorization: Bearer ...'",
    )
    p.add_argument(
        "--insecure-dev",
        action="store_true",
        default=None,
        help="allow TCP without token or mTLS on a loopback host (development only)",
    )
    p.add_argument("--state-dir", type=Path, help="where the plugin keeps its state")
    p.add_argument("--log-level", default="info")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "socket": str(args.socket) if args.socket else None,
        "port": args.port,
        "host": args.host,
        "token_file": str(args.token_file) if args.token_file else None,
        "insecure_dev": args.insecure_dev,
        "state_dir": str(args.state_dir) if args.state_dir else None,
    }


def _serve(plugin: Plugin, log_level: str) -> int:
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    problem = plugin.config.transport_problem(plugin.loopback_only)
    if problem:
        raise ConfigError(f"refusing to start: {problem}")
    if plugin.startup_warning:
        log.warning("plugin %s: %s", plugin.name, plugin.startup_warning)
    if (
        plugin.config.port is not None
        and plugin.config.insecure_dev
        and not (plugin.config.token_file or (plugin.config.tls and plugin.config.tls.client_ca))
    ):
        log.warning(
            "INSECURE: plugin %s on TCP without token or mTLS (insecure_dev): every local user "
            "can use it",
            plugin.name,
        )
    app = make_plugin_app(plugin)
    listen = plugin.config.listen()
    log.info("plugin %s serving on %s", plugin.name, listen.describe())
    # plugins start a process per job or pod (sbatch, condor_submit, pod runners): on the
    # asyncio loop each start is a vfork (1-2 ms), on uvloop a fork (4-6 ms, and more under load)
    run(app, listen, log_level=log_level, loop="asyncio")
    return 0


def _run_plugin_command(args: argparse.Namespace) -> int:
    plugin = load_plugin(args.backend, args.config, _overrides(args))
    return _serve(plugin, args.log_level)


def serve_plugin(cls: type[Plugin], argv: list[str] | None = None) -> int:
    """Run a one-file plugin as a service: ``python my_plugin.py --socket /run/p.sock``."""
    parser = argparse.ArgumentParser(description=f"interLink plugin {cls.name}")
    _add_serving_options(parser)
    args = parser.parse_args(argv)
    try:
        config = load_config(cls.config_model, args.config, _overrides(args))
        return _serve(cls(config), args.log_level)
    except ConfigError as exc:
        parser.exit(2, f"{exc}\n")
