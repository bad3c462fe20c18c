"""The interLink API server: the edge service that authenticates virtual kubelets, maps each one
to a tenant and forwards pods to a plugin (over a unix socket by default).

Run it with ``interlink api --config api.yaml``; see ``docs/api-server.md`` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import msgspec
from fastapi import Body, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPBearer
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import Field, ValidationError, model_validator
from starlette.background import BackgroundTask

from . import __version__
from .auth import AuthConfig, Authenticator, Identity
from .client import SESSION_HEADER, Answer, PluginClient, RemoteError, token_file
from .config import StrictModel, load_config
from .errors import BackendUnavailable, ConfigError, Forbidden, NotFound, Unauthorized, is_final
from .guards import BodyLimit, JsonOnly, add_error_handlers
from .kubenames import check_pod_names
from .models import (
    JSON,
    POD_LIST,
    CreateStruct,
    LogStruct,
    Pod,
    PodCreateRequests,
    PodStatus,
    RetrievedContainer,
    RetrievedPodData,
    digest_uid,
    dump,
    pod_meta,
    pod_state,
    pod_uids,
    status_containers,
    status_uids,
    validation_message,
)
from .podspec import object_refs
from .serve import Listen, run
from .tenancy import TenantRegistry
from .tenants import load_tenants, pod_cpus
from .tlsfiles import ca_problem, cert_pair_problem, file_problem, problems

log = logging.getLogger("interlink.api")
TENANT_HEADER = "InterLink-Tenant"
SUBJECT_HEADER = "InterLink-Subject"
STATUS_BODY: JSON = {
    "required": True,
    "content": {"application/json": {"schema": {**POD_LIST.json_schema(), "title": "Pods"}}},
}
"""OpenAPI request body of ``/status`` (read by hand there, so FastAPI cannot derive it)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# --- configuration ------------------------------------------------------------------------------


class TLSConfig(StrictModel):
    """The API server's own certificate."""

    cert: Path
    key: Path


class ListenConfig(StrictModel):
    """Where the API server listens: TCP (with optional TLS) or a unix socket."""

    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=0, le=65535)
    socket: Path | None = None
    tls: TLSConfig | None = None


class PluginEndpoint(StrictModel):
    """How to reach the plugin."""

    url: str = Field(
        default="unix://~/.local/state/interlink/plugin/plugin.sock",
        description="unix:///path/to.sock (default) or http(s)://host:port",
    )
    timeout_seconds: float = Field(default=120.0, gt=0)
    ca_file: Path | None = None
    token_file: Path | None = Field(
        default=None,
        description="A plugin on TCP with token_file: the same token, sent as a bearer token "
        "(re-read at each call, so it can be rotated on disk).",
    )
    client_cert: Path | None = Field(
        default=None, description="A plugin on TCP with mTLS: our client certificate (PEM)."
    )
    client_key: Path | None = Field(default=None, description="The client certificate's key.")

    @model_validator(mode="after")
    def _cert_pair(self) -> PluginEndpoint:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together: give both or neither")
        if self.client_cert is not None and not self.url.startswith("https://"):
            raise ValueError(
                f"client_cert needs an https:// plugin url (it is {self.url}): a client "
                "certificate is presented over TLS only"
            )
        return self

    def client_pair(self) -> tuple[Path, Path] | None:
        """The client certificate and key, if configured."""
        if self.client_cert is None or self.client_key is None:
            return None
        return self.client_cert.expanduser(), self.client_key.expanduser()

    def resolved_url(self) -> str:
        """The URL with ``~`` expanded in a socket path."""
        if self.url.startswith("unix://"):
            return "unix://" + str(Path(self.url.removeprefix("unix://")).expanduser())
        return self.url


class ApiServerConfig(StrictModel):
    """Configuration of ``interlink api`` (YAML, validated once at start-up)."""

    listen: ListenConfig = Field(default_factory=ListenConfig)
    plugin: PluginEndpoint = Field(default_factory=PluginEndpoint)
    auth: AuthConfig
    state_dir: Path = Path("~/.local/state/interlink/api")
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    tenants_file: Path | None = Field(
        default=None,
        description="The site's tenant map (docs/tenants.md): who each tenant is, its quota. "
        "Without it every caller is its own tenant.",
    )

    @model_validator(mode="after")
    def _mtls_needs_tls(self) -> ApiServerConfig:
        if self.auth.mtls is not None and self.listen.tls is None:
            raise ValueError(
                "auth.mtls is set but listen.tls is not: client certificates are only seen "
                "over TLS; set listen.tls.cert and listen.tls.key (or remove auth.mtls)"
            )
        return self

    def file_problems(self) -> list[str]:
        """Files this configuration names that are missing or do not parse, one line each
        with the key and the fix (checked at start-up and by ``interlink doctor``)."""
        tls = self.listen.tls
        plugin = self.plugin
        return problems(
            cert_pair_problem(tls.cert, tls.key, "listen.tls") if tls else None,
            *self.auth.file_problems(),
            ca_problem(plugin.ca_file, "plugin.ca_file"),
            file_problem(self.tenants_file, "tenants_file", "the tenant map"),
            file_problem(plugin.token_file, "plugin.token_file", "the plugin's token file"),
            cert_pair_problem(plugin.client_cert, plugin.client_key, "plugin.client")
            if plugin.client_cert
            else None,
        )

    def listen_spec(self) -> Listen:
        """The :class:`Listen` for the server."""
        if self.listen.socket:
            return Listen(socket=self.listen.socket.expanduser())
        tls = self.listen.tls
        return Listen(
            host=self.listen.host,
            port=self.listen.port,
            certfile=tls.cert if tls else None,
            keyfile=tls.key if tls else None,
            client_ca=self.auth.mtls.client_ca if self.auth.mtls else None,
        )


# --- observing requests ---------------------------------------------------------------------


class Observe:
    """ASGI middleware: a session id on every request and response (``InterLink-Http-Session``,
    made up if the caller sent none), and request count / latency metrics."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        wanted = SESSION_HEADER.lower().encode()
        session = next((v for k, v in scope["headers"] if k == wanted), b"") or (
            uuid.uuid4().hex.encode()
        )
        scope.setdefault("state", {})["session"] = session.decode(errors="replace")
        route = scope["path"] if scope["path"] in _ROUTES else "other"
        status = 500

        async def tagged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (wanted, session)]
            await send(message)

        try:
            await self.app(scope, receive, tagged)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)


# --- metrics ------------------------------------------------------------------------------------


class _PodStates:
    """Collector of ``interlink_api_pods{state}``: the last known containers of each pod.

    A status call does no work for it: the plugin's answer is kept as it came and read when
    Prometheus scrapes (or once ``max_unread`` answers wait, after a response has been sent),
    so metrics never compete with the caller for the CPU on the status path."""

    def __init__(self, max_unread: int = 8) -> None:
        self.latest: dict[str, Sequence[Mapping[str, Any]]] = {}
        self.unread: list[bytes] = []
        self.max_unread = max_unread

    def keep(self, answer: bytes) -> bool:
        """Keep a ``/status`` answer to read later; True when the unread ones are due."""
        self.unread.append(answer)
        return len(self.unread) >= self.max_unread

    async def read_later(self) -> None:
        """:meth:`read` as a background task (async: Starlette runs plain functions in a
        thread, and these structures belong to the event loop)."""
        self.read()

    def read(self) -> None:
        """Read the kept answers, oldest first (an answer whose containers are not lists is
        left out, with a warning: its UIDs were checked before it was passed on)."""
        unread, self.unread = self.unread, []
        for answer in unread:
            try:
                self.latest.update(status_containers(answer))
            except msgspec.MsgspecError as exc:
                log.warning("pod states not updated from a plugin's /status answer: %s", exc)

    def update(self, statuses: Iterable[Mapping[str, Any]]) -> None:
        """Remember each pod's containers from pod statuses (after the kept answers)."""
        self.read()
        for s in statuses:
            self.latest[digest_uid(s)] = s.get("containers") or []

    def forget(self, uid: str) -> None:
        """Drop a deleted pod (after the kept answers, which may still name it)."""
        self.read()
        self.latest.pop(uid, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.read()
        counts = dict.fromkeys(("pending", "running", "succeeded", "failed"), 0)
        for containers in list(self.latest.values()):
            state = pod_state(containers)
            counts[state] = counts.get(state, 0) + 1
        family = GaugeMetricFamily(
            "interlink_api_pods", "Pods by last known state", labels=["state"]
        )
        for state, n in counts.items():
            family.add_metric([state], n)
        yield family


@dataclass
class Metrics:
    """Prometheus metrics of one API server (a registry of its own, no globals)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    pods: _PodStates = field(default_factory=_PodStates)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "interlink_api_requests",
            "Requests by route and status code",
            ["route", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "interlink_api_request_seconds",
            "Request latency by route",
            ["route"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.plugin_errors = Counter(
            "interlink_api_plugin_errors",
            "Failed calls to the plugin by route",
            ["route"],
            registry=r,
        )
        r.register(self.pods)

    def observe_statuses(self, statuses: Iterable[Mapping[str, Any]]) -> None:
        """Remember each pod's containers from pod statuses (whole or digests)."""
        self.pods.update(statuses)

    def forget(self, uid: str) -> None:
        """Drop a deleted pod."""
        self.pods.forget(uid)


def invalid_body(errors: Sequence[Mapping[str, Any]]) -> JSONResponse:
    """The answer to a body that fails validation: 400 when it is not JSON, else 422; each
    problem names its field by the dotted path inside the body."""
    problems = []
    status = 422
    for err in errors:
        if err["type"] == "json_invalid":
            status = 400
            problems.append(f"the body is not valid JSON ({err.get('ctx', {}).get('error')})")
            continue
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        problems.append(f"{loc}: {str(err['msg']).removeprefix('Value error, ')}")
    return JSONResponse({"error": "; ".join(problems)}, status_code=status)


# --- pod → plugin request -----------------------------------------------------------------------


def retrieved_pod_data(req: PodCreateRequests) -> RetrievedPodData:
    """Split a VK create request into the plugin's form: one entry per init container, then
    per container, each with the ConfigMaps, Secrets and projected volumes it uses."""
    pod = req.pod
    spec = pod.get("spec") or {}
    volumes = {v.get("name"): v for v in spec.get("volumes") or [] if isinstance(v, dict)}
    cms = {c.get("metadata", {}).get("name"): c for c in req.configmaps}
    secrets = {s.get("metadata", {}).get("name"): s for s in req.secrets}
    projected = {p.get("metadata", {}).get("name"): p for p in req.projectedvolumesmaps}
    out = []
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        mounted = [
            volumes[m.get("name")] for m in c.get("volumeMounts") or [] if m.get("name") in volumes
        ]
        refs = object_refs([c], mounted)
        cm_names, secret_names = set(refs.configmaps), set(refs.secrets)
        proj_names = {str(v.get("name")) for v in mounted if "projected" in v}
        empty = [str(v.get("name")) for v in mounted if "emptyDir" in v]
        out.append(
            RetrievedContainer(
                name=str(c.get("name", "")),
                configMaps=[cms[n] for n in sorted(cm_names) if n in cms],
                secrets=[secrets[n] for n in sorted(secret_names) if n in secrets],
                projectedvolumemaps=[projected[n] for n in sorted(proj_names) if n in projected],
                emptyDirs=empty,
            )
        )
    return RetrievedPodData(pod=pod, container=out)


# --- the app ------------------------------------------------------------------------------------


@dataclass
class Edge:
    """What the running API server holds (one per app; no module-level state)."""

    config: ApiServerConfig
    auth: Authenticator
    plugin: PluginClient
    registry: TenantRegistry
    metrics: Metrics


bearer = HTTPBearer(auto_error=False, description="An OIDC access token for this API server")


def get_edge(request: Request) -> Edge:
    """The running API server's state."""
    edge: Edge = request.app.state.edge
    return edge


async def edge_dependency(request: Request) -> Edge:
    """:func:`get_edge` as a dependency (async: FastAPI runs plain functions in a thread)."""
    return get_edge(request)


async def identify(
    request: Request,
    _token: Annotated[Any, Depends(bearer)] = None,
) -> Identity:
    """Authenticate the caller (bearer token or TLS client certificate)."""
    edge = get_edge(request)
    cert = getattr(request.state, "tls_client_cert", None)
    return await edge.auth.identify(request.headers.get("authorization"), cert or None)


Caller = Annotated[Identity, Depends(identify)]
EdgeDep = Annotated[Edge, Depends(edge_dependency)]


def plugin_headers(who: Identity) -> dict[str, str]:
    """The caller's identity for the plugin."""
    return {TENANT_HEADER: who.tenant, SUBJECT_HEADER: who.subject}


async def forward(edge: Edge, request: Request, call: Awaitable[Any]) -> Any:
    """Await a plugin call; plugin failures become 502 and are counted (the plugin's own
    refusal, 4xx, or "cannot", 501, goes to the caller as it is: not a failure)."""
    try:
        return await call
    except (RemoteError, BackendUnavailable) as exc:
        if isinstance(exc, RemoteError) and exc.status_code == 401:
            # the plugin refuses *our* credentials: an operator's fix, not the caller's
            edge.metrics.plugin_errors.labels(_route(request)).inc()
            raise BackendUnavailable(
                f"the plugin refused the API server: {exc.message} (set plugin.token_file "
                "or plugin.client_cert to what the plugin expects)",
                502,
            ) from None
        if isinstance(exc, RemoteError) and is_final(exc.status_code):
            raise
        edge.metrics.plugin_errors.labels(_route(request)).inc()
        raise BackendUnavailable(f"the plugin failed: {exc.message}", 502) from None


def owned_or_refuse(edge: Edge, who: Identity, uids: list[str]) -> dict[str, Any]:
    """The registry entries of these pods; 403 when one belongs to another tenant."""
    owners = edge.registry.lookup(uids)
    foreign = sorted(u for u, o in owners.items() if o.tenant != who.tenant)
    if foreign:
        raise Forbidden(f"pods {', '.join(foreign)} belong to another tenant")
    return dict(owners)


# --- routes -------------------------------------------------------------------------------------


async def create(
    request: Request, body: PodCreateRequests, who: Caller, edge: EdgeDep
) -> JSONResponse:
    """Create one pod on the remote side (idempotent per pod UID)."""
    check_pod_names(body.pod)
    namespace, name, uid = pod_meta(body.pod)
    tenants = edge.auth.tenants
    quota = tenants.quota_of(who.tenant) if tenants is not None else None
    owned = edge.registry.claim(uid, who.tenant, namespace, name, pod_cpus(body.pod), quota)
    if owned.job_id:
        return JSONResponse(dump(CreateStruct(PodUID=uid, PodJID=owned.job_id)))
    data = retrieved_pod_data(body)
    try:
        answer: CreateStruct = await forward(
            edge,
            request,
            edge.plugin.create(data, session=request.state.session, headers=plugin_headers(who)),
        )
    except RemoteError as exc:
        if exc.status_code >= 400 and is_final(exc.status_code):  # nothing was submitted
            edge.registry.release(uid)
        raise
    edge.registry.set_job(uid, answer.PodJID)
    return JSONResponse(dump(CreateStruct(PodUID=uid, PodJID=answer.PodJID)))


async def delete(
    request: Request, pod: Annotated[Pod, Body()], who: Caller, edge: EdgeDep
) -> Response:
    """Delete a pod remotely; answers when the plugin confirmed it."""
    _, _, uid = pod_meta(pod)
    owners = owned_or_refuse(edge, who, [uid])
    if uid not in owners:
        raise NotFound(f"pod uid {uid} is not known to this API server")
    await forward(
        edge,
        request,
        edge.plugin.delete(pod, session=request.state.session, headers=plugin_headers(who)),
    )
    edge.registry.release(uid)
    edge.metrics.forget(uid)
    return PlainTextResponse("deleted")


async def status(request: Request, who: Caller, edge: EdgeDep) -> Response:
    """Statuses of all these pods in one call (pods of other tenants are refused).

    Thousands of pods travel in one call, so the body goes to the plugin as it came and is
    read for the UIDs while the plugin works; the plugin's answer is used only once they
    passed the ownership check. The answer is read for its UIDs and passed through as it
    came (see :func:`~interlink_core.models.pod_uids`)."""
    body = await request.body()
    sent = asyncio.Event()
    call = asyncio.ensure_future(
        forward(
            edge,
            request,
            edge.plugin.wire.call(
                "GET",
                "/status",
                None,
                content=body,
                session=request.state.session,
                headers=plugin_headers(who),
                sent=sent,
            ),
        )
    )
    try:
        await sent.wait()  # the plugin has the body: check it meanwhile
        try:
            uids = pod_uids(body)
        except ValidationError as exc:
            return invalid_body(exc.errors())
        owners = owned_or_refuse(edge, who, uids)
        if not owners:
            return JSONResponse([])
        resp: Answer = await call
    finally:
        if not call.done():
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
    try:
        answered = status_uids(resp.content)
    except ValidationError as exc:
        raise BackendUnavailable(
            f"the plugin's /status answer is not a list of pod statuses: {validation_message(exc)}",
            502,
        ) from None
    if not answered:  # also a Go plugin's ``null``: ours is always a list
        return JSONResponse([])
    if all(uid in owners for uid in answered):  # nothing to hide: pass the bytes through
        # pod states for /metrics: read at the next scrape (or after this answer was sent)
        due = edge.metrics.pods.keep(resp.content)
        later = BackgroundTask(edge.metrics.pods.read_later) if due else None
        return Response(resp.content, media_type="application/json", background=later)
    # statuses of pods this API server does not know for this tenant (asked for with the
    # known ones, or answered unasked) are left out
    kept = [s for s, uid in zip(resp.json(), answered, strict=True) if uid in owners]
    edge.metrics.observe_statuses(kept)
    return JSONResponse(kept)


async def update_cache(
    pod: Annotated[Pod, Body()], who: Caller, edge: EdgeDep
) -> PlainTextResponse:
    """Forget the cached state of a pod the caller no longer has (upstream's VK calls it
    when a status names a pod that was replaced); the pod stays deletable. Another
    tenant's pod or an unknown one is left alone, with the same answer."""
    _, _, uid = pod_meta(pod)
    owner = edge.registry.lookup([uid]).get(uid)
    if owner is not None and owner.tenant == who.tenant:
        edge.metrics.forget(uid)
    return PlainTextResponse("Updated cache")


async def update_volumes(
    request: Request, body: PodCreateRequests, who: Caller, edge: EdgeDep
) -> Response:
    """Rewrite the volume files of a running pod (our addition: the VK refreshes
    service-account tokens before they expire); 501 when the plugin cannot."""
    check_pod_names(body.pod)
    namespace, name, uid = pod_meta(body.pod)
    if uid not in owned_or_refuse(edge, who, [uid]):
        raise NotFound(f"pod {namespace}/{name} is not known to this API server")
    await forward(
        edge,
        request,
        edge.plugin.update_volumes(
            retrieved_pod_data(body),
            session=request.state.session,
            headers=plugin_headers(who),
        ),
    )
    return PlainTextResponse("updated")


async def get_logs(
    request: Request, req: Annotated[LogStruct, Body()], who: Caller, edge: EdgeDep
) -> Response:
    """A container's log as text, streamed from the plugin as it comes (never held here
    whole); while the container runs when Opts.Follow."""
    owners = owned_or_refuse(edge, who, [req.PodUID])
    if req.PodUID not in owners:
        raise NotFound(f"pod {req.Namespace}/{req.PodName} is not known to this API server")
    stream = await forward(
        edge,
        request,
        edge.plugin.open_log_stream(
            req,
            session=request.state.session,
            headers=plugin_headers(who),
            follow=req.Opts.Follow,
        ),
    )
    return StreamingResponse(stream, media_type="text/plain")


async def pinglink(request: Request, who: Caller, edge: EdgeDep) -> JSONResponse:
    """Check the whole path to the plugin; answers the plugin's ping (status, capacity)."""
    answer = await forward(
        edge,
        request,
        edge.plugin.ping(session=request.state.session, headers=plugin_headers(who)),
    )
    return JSONResponse(dump(answer))


async def healthz() -> dict[str, str]:
    """Liveness of the API server itself (does not call the plugin)."""
    return {"status": "ok"}


async def prometheus(edge: EdgeDep) -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(edge.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def add_routes(app: FastAPI) -> None:
    """The routes of the API server (upstream's POST aliases left out of the schema)."""
    vk: list[str | Enum] = ["VK → API server"]
    ops: list[str | Enum] = ["operations"]
    app.add_api_route("/create", create, methods=["POST"], response_model=CreateStruct, tags=vk)
    app.add_api_route("/delete", delete, methods=["DELETE"], tags=vk)
    app.add_api_route("/delete", delete, methods=["POST"], include_in_schema=False)
    app.add_api_route(
        "/status",
        status,
        methods=["GET"],
        response_model=list[PodStatus],
        tags=vk,
        openapi_extra={"requestBody": STATUS_BODY},
    )
    app.add_api_route("/status", status, methods=["POST"], include_in_schema=False)
    app.add_api_route("/updateCache", update_cache, methods=["POST"], tags=vk)
    app.add_api_route("/updateVolumes", update_volumes, methods=["POST"], tags=vk)
    app.add_api_route(
        "/getLogs", get_logs, methods=["GET"], response_class=PlainTextResponse, tags=vk
    )
    app.add_api_route("/getLogs", get_logs, methods=["POST"], include_in_schema=False)
    app.add_api_route("/pinglink", pinglink, methods=["POST"], tags=vk)
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=ops)
    app.add_api_route(
        "/metrics",
        prometheus,
        methods=["GET"],
        response_class=PlainTextResponse,
        tags=ops,
    )


def _lifespan(config: ApiServerConfig, metrics: Metrics) -> Any:
    """Open the plugin client and tenant registry for the app's life."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = config.state_dir.expanduser()
        state.mkdir(parents=True, exist_ok=True)
        plugin = config.plugin
        edge = Edge(
            config=config,
            auth=Authenticator(config.auth, load_tenants(config.tenants_file)),
            plugin=PluginClient(
                plugin.resolved_url(),
                ca_file=plugin.ca_file,
                client_cert=plugin.client_pair(),
                token=token_file(plugin.token_file.expanduser()) if plugin.token_file else None,
                timeout=plugin.timeout_seconds,
            ),
            registry=TenantRegistry(state / "tenants.sqlite"),
            metrics=metrics,
        )
        app.state.edge = edge
        try:
            yield
        finally:
            await edge.plugin.aclose()
            edge.registry.close()

    return lifespan


def _add_error_handlers(app: FastAPI) -> None:
    """``{"error": ...}`` for everything; a 401 with ``WWW-Authenticate``; validation errors
    naming their fields."""
    add_error_handlers(app)

    @app.exception_handler(Unauthorized)
    async def _unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        return JSONResponse({"error": exc.message}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid_body([{**err, "loc": err["loc"][1:]} for err in exc.errors()])


def make_app(config: ApiServerConfig) -> Any:
    """The API server as an ASGI app: FastAPI inside the body-size limit, the metrics and
    session middleware and the JSON Content-Type check."""
    metrics = Metrics()
    app = FastAPI(
        title="interLink API server",
        version=__version__,
        lifespan=_lifespan(config, metrics),
        description=(
            "The edge of an interLink deployment. Wire-compatible with upstream interLink: "
            "routes carry no version prefix and only HTTP 200 means success. Our additions are "
            "/healthz, /metrics and the InterLink-Tenant / InterLink-Subject headers passed to "
            "the plugin."
        ),
    )
    _add_error_handlers(app)
    add_routes(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return BodyLimit(Observe(JsonOnly(app, BODY_ROUTES), metrics), config.max_request_bytes)


def _route(request: Request) -> str:
    """The route label of a request for metrics (``other`` for unknown paths)."""
    return request.url.path if request.url.path in _ROUTES else "other"


BODY_ROUTES = ("/create", "/delete", "/status", "/getLogs", "/updateVolumes", "/updateCache")
"""Routes that read a JSON body (a request without a JSON Content-Type gets a 415)."""
_ROUTES = {
    "/create",
    "/delete",
    "/status",
    "/getLogs",
    "/updateVolumes",
    "/updateCache",
    "/pinglink",
    "/healthz",
    "/metrics",
}


# --- command line -------------------------------------------------------------------------------


def register_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``interlink api``: run the API server."""
    p = sub.add_parser("api", help="run the interLink API server (the edge)")
    p.add_argument("--config", "-c", type=Path, help="YAML configuration file")
    p.add_argument("--host", help="listen address (listen.host)")
    p.add_argument("--port", type=int, help="listen port (listen.port)")
    p.add_argument("--socket", type=Path, help="listen on a unix socket (listen.socket)")
    p.add_argument("--plugin", help="plugin URL, unix:///path.sock or http(s)://... (plugin.url)")
    p.add_argument("--state-dir", type=Path, help="state directory (state_dir)")
    p.add_argument(
        "--insecure-dev-token",
        help="accept this fixed token as tenant 'dev' (local demos only; warns loudly)",
    )
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    config = load_config(
        ApiServerConfig,
        args.config,
        {
            "listen.host": args.host,
            "listen.port": args.port,
            "listen.socket": str(args.socket) if args.socket else None,
            "plugin.url": args.plugin,
            "state_dir": str(args.state_dir) if args.state_dir else None,
            "auth.insecure_dev_token": args.insecure_dev_token,
        },
    )
    found = config.file_problems()
    if found:
        raise ConfigError("refusing to start:\n  " + "\n  ".join(found))
    load_tenants(config.tenants_file)  # a bad map is refused here, naming its keys
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    listen = config.listen_spec()
    log.info("interLink API server on %s, plugin at %s", listen.describe(), config.plugin.url)
    run(make_app(config), listen, log_level=args.log_level)
    return 0


__all__ = ["ApiServerConfig", "make_app", "register_command", "retrieved_pod_data"]
