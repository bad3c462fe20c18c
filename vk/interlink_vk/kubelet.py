"""The kubelet HTTPS API of a virtual node: ``kubectl logs`` (with ``-f``, ``--tail``,
``--since``, ``--since-time``, ``--timestamps``, ``--limit-bytes``, ``-c``) reaches the VK through
the apiserver and is answered from the edge; ``/metrics`` serves the VK's Prometheus metrics.

Like a real kubelet it lets no one in anonymously: a caller authenticates with a client
certificate signed by the cluster's client CA (the apiserver's kubelet-client identity) or a
bearer token checked by TokenReview, and is authorized by SubjectAccessReview on this node, with
the kubelet's own mapping: ``get`` on ``nodes/proxy`` for ``/containerLogs``, on ``nodes/metrics``
for ``/metrics``. The serving certificate is the configured one, or one issued through a
``kubernetes.io/kubelet-serving`` CSR.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import logging
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import ValidationError

from interlink_core.client import InterLinkClient, RemoteError
from interlink_core.errors import InterLinkError
from interlink_core.models import ContainerLogOpts, LogStruct, validation_message
from interlink_core.serve import PeerCertProtocol

from .config import VKConfig
from .kube import Kube
from .metrics import VKMetrics

log = logging.getLogger("interlink.vk.kubelet")


@dataclass(frozen=True)
class Caller:
    """Who called the kubelet API."""

    user: str
    groups: tuple[str, ...]


class KubeletAuth:
    """Client certificate or TokenReview, then SubjectAccessReview."""

    def __init__(self, kube: Kube, node: str) -> None:
        self.kube = kube
        self.node = node

    async def authenticate(self, request: Request) -> Caller | None:
        cert = getattr(request.state, "tls_client_cert", None)
        if cert:
            subject = {k: v for rdn in cert.get("subject", ()) for k, v in rdn}
            orgs = tuple(
                v for rdn in cert.get("subject", ()) for k, v in rdn if k == "organizationName"
            )
            return Caller(user=str(subject.get("commonName", "")), groups=orgs)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        review = await self.kube.call(
            "POST",
            "tokenreviews",
            version="authentication.k8s.io/v1",
            body={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token.strip()},
            },
        )
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return None
        user = status.get("user") or {}
        return Caller(user=str(user.get("username", "")), groups=tuple(user.get("groups") or []))

    async def authorized(self, caller: Caller, verb: str, subresource: str) -> bool:
        review = await self.kube.call(
            "POST",
            "subjectaccessreviews",
            version="authorization.k8s.io/v1",
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": caller.user,
                    "groups": list(caller.groups),
                    "resourceAttributes": {
                        "verb": verb,
                        "resource": "nodes",
                        "subresource": subresource,
                        "name": self.node,
                    },
                },
            },
        )
        return bool((review.get("status") or {}).get("allowed"))

    async def refusal(self, request: Request, subresource: str) -> Response | None:
        """``None`` if the caller may ``get`` ``nodes/<subresource>``, else the 401/403."""
        caller = await self.authenticate(request)
        if caller is None:
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        if not await self.authorized(caller, "get", subresource):
            return JSONResponse(
                {
                    "error": f"Forbidden (user={caller.user}, verb=get, resource=nodes, "
                    f"subresource={subresource})"
                },
                status_code=403,
            )
        return None


def _int(value: str | None) -> int:
    try:
        return max(0, int(value)) if value else 0
    except ValueError:
        return 0


def make_kubelet_app(
    config: VKConfig, kube: Kube, edge: InterLinkClient, metrics: VKMetrics
) -> FastAPI:
    """The kubelet API app (``/containerLogs``, ``/metrics``, ``/healthz``)."""
    auth = KubeletAuth(kube, config.node_name)
    app = FastAPI(
        title=f"interLink virtual kubelet {config.node_name}",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        refused = await auth.refusal(request, "metrics")
        if refused is not None:
            return refused
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/containerLogs/{namespace}/{pod}/{container}")
    async def container_logs(
        namespace: str, pod: str, container: str, request: Request
    ) -> Response:
        refused = await auth.refusal(request, "proxy")
        if refused is not None:
            return refused
        obj = await kube.get("pods", namespace, pod)
        if obj is None or (obj.get("spec") or {}).get("nodeName") != config.node_name:
            return JSONResponse(
                {"error": f"pod {namespace}/{pod} is not on this node"}, status_code=404
            )
        q = request.query_params
        opts: dict[str, Any] = {
            "Tail": _int(q.get("tailLines")),
            "Bytes": _int(q.get("limitBytes")),
            "SinceSeconds": _int(q.get("sinceSeconds")),
            "Timestamps": q.get("timestamps") in ("true", "1"),
            "Follow": q.get("follow") in ("true", "1"),
            "Previous": q.get("previous") in ("true", "1"),
        }
        if q.get("sinceTime"):
            opts["SinceTime"] = q["sinceTime"]
        if opts["Tail"] and opts["Bytes"]:
            opts["Tail"] = 0  # kubectl may send both; the byte limit is the stricter contract
        try:
            req = LogStruct(
                Namespace=namespace,
                PodUID=obj["metadata"]["uid"],
                PodName=pod,
                ContainerName=container,
                Opts=ContainerLogOpts.model_validate(opts),
            )
        except ValidationError as exc:
            return JSONResponse({"error": validation_message(exc)}, status_code=400)
        try:
            async with metrics.edge_call("logs"):
                if not req.Opts.Follow:
                    return Response(await edge.logs(req), media_type="text/plain")
                stream = await edge.open_log_stream(req)
        except RemoteError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status_code)
        except InterLinkError as exc:
            return JSONResponse({"error": exc.message}, status_code=502)
        return StreamingResponse(stream, media_type="text/plain")

    return app


# --- serving certificate ------------------------------------------------------------------------


async def serving_certificate(
    config: VKConfig,
    kube: Kube,
    state_dir: Path,
    wait_seconds: float = 60.0,
    stop: asyncio.Event | None = None,
) -> tuple[Path, Path] | None:
    """The configured certificate, or one issued by the cluster through a
    ``kubernetes.io/kubelet-serving`` CSR (an admin or an approver must approve it), or, if
    none comes in time, a self-signed one (the apiserver will then refuse to use it)."""
    if config.kubelet_cert and config.kubelet_key:
        return config.kubelet_cert, config.kubelet_key
    cert_path, key_path = state_dir / "kubelet.crt", state_dir / "kubelet.key"
    if _reusable(cert_path, key_path):
        return cert_path, key_path
    key = _new_key(key_path)
    name = config.node_name
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{name}"),
                ]
            )
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address(config.internal_ip))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pem = csr.public_bytes(serialization.Encoding.PEM)
    csr_name = f"{name}-serving-{int(dt.datetime.now(dt.UTC).timestamp())}"
    await kube.call(
        "POST",
        "certificatesigningrequests",
        version="certificates.k8s.io/v1",
        body={
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": csr_name, "labels": {"interlink.eu/node": name}},
            "spec": {
                "request": base64.b64encode(pem).decode(),
                "signerName": "kubernetes.io/kubelet-serving",
                "usages": ["digital signature", "server auth"],
            },
        },
    )
    log.info(
        "requested a serving certificate: CSR %s (approve it: kubectl certificate approve %s)",
        csr_name,
        csr_name,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    while loop.time() < deadline:
        if stop is not None and stop.is_set():
            return None  # shutting down before the certificate came
        obj = await kube.call(
            "GET", f"certificatesigningrequests/{csr_name}", version="certificates.k8s.io/v1"
        )
        issued = (obj.get("status") or {}).get("certificate")
        if issued:
            cert_path.write_bytes(base64.b64decode(issued))
            return cert_path, key_path
        await asyncio.sleep(1)
    log.warning(
        "CSR %s was not approved in %.0f s; serving with a self-signed certificate "
        "(kubectl logs will fail until a signed one is configured)",
        csr_name,
        wait_seconds,
    )
    _self_signed(key, name, config.internal_ip, cert_path)
    return cert_path, key_path


def _reusable(cert_path: Path, key_path: Path) -> bool:
    """A certificate from an earlier run that is still valid for more than a day."""
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    if not (cert_path.exists() and key_path.exists()):
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1)


def _new_key(key_path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return key


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _self_signed(key: ec.EllipticCurvePrivateKey, name: str, ip: str, path: Path) -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address(ip))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


async def client_ca(config: VKConfig, kube: Kube, state_dir: Path) -> Path:
    """The CA that signs the apiserver's kubelet-client certificate: configured, or the
    cluster's ``kube-system/extension-apiserver-authentication`` client CA."""
    if config.kubelet_client_ca:
        return config.kubelet_client_ca
    cm = await kube.get("configmaps", "kube-system", "extension-apiserver-authentication")
    pem = ((cm or {}).get("data") or {}).get("client-ca-file")
    if not pem:
        raise InterLinkError("no client CA: set kubelet_client_ca in the VK configuration")
    return _write(state_dir / "client-ca.crt", pem)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the VK stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_kubelet(
    config: VKConfig,
    kube: Kube,
    edge: InterLinkClient,
    stop: asyncio.Event,
    state_dir: Path | None,
    metrics: VKMetrics,
) -> None:
    """Serve the kubelet API on ``internal_ip:kubelet_port`` until ``stop``."""
    state = state_dir or Path(tempfile.gettempdir()) / f"interlink-vk-{config.node_name}"
    issued = await serving_certificate(config, kube, state, stop=stop)
    if issued is None:
        return
    cert, key = issued
    ca = await client_ca(config, kube, state)
    server = _Server(
        uvicorn.Config(
            make_kubelet_app(config, kube, edge, metrics),
            host=config.internal_ip,
            port=config.kubelet_port,
            ssl_certfile=str(cert),
            ssl_keyfile=str(key),
            ssl_ca_certs=str(ca),
            ssl_cert_reqs=ssl.CERT_OPTIONAL,
            http=PeerCertProtocol,
            log_level="warning",
            lifespan="off",
        )
    )
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task
