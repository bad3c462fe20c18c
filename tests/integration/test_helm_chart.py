"""The interlink-vk Helm chart installed for real into the test world's control plane.

There is no container runtime here: the chart's VK pod is sent to a virtual node backed by the
`local` plugin (the "real node"), which runs its container's command, the repository's
`interlink`, as a host process. The pod's service-account volume, ConfigMap and Secret become
files there and their mount paths in the command line are rewritten (docs/plugins/local.md);
the apiserver is reached at its loopback address (values `kubernetesAPI`), as there is no
kube-proxy for the `kubernetes` Service. The chart's VK then serves a node of its own backed by
the real SLURM."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from interlink_vk.config import JOB_ID_ANNOTATION, VK_TAINT_KEY
from tests.helpers.helm import CHART, helm
from tests.helpers.k8s import K8sInfo, kubectl
from tests.helpers.slurm import SlurmInfo, squeue_field, wait_finished
from tests.helpers.vk import RunningVK, approve_csr, running_vk
from tests.helpers.world import INTERLINK, Issuer, start_api, start_plugin

pytestmark = pytest.mark.integration

TOKEN = "helm-edge-dev-token"


async def kc(k8s: K8sInfo, *args: str, input: str | None = None) -> Any:
    """kubectl off the event loop (the real node's VK answers in this loop); JSON if asked."""
    out = await asyncio.to_thread(kubectl, k8s, *args, input=input)
    if "-o" in args and "json" in args:
        return json.loads(out.stdout) if out.returncode == 0 else None
    return out


async def wait_for(what: str, probe: Callable[[], Any], timeout: float = 90) -> Any:
    """Poll the coroutine function ``probe`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"never happened within {timeout} s: {what} (last: {last!r})")


async def run_helm(k8s: K8sInfo, *args: str) -> str:
    out = await asyncio.to_thread(helm, *args, timeout=360, kubeconfig=k8s.kubeconfig)
    assert out.returncode == 0, f"helm {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


@asynccontextmanager
async def real_node(k8s: K8sInfo, root: Path, prefix: str) -> AsyncIterator[RunningVK]:
    """The world's stand-in for a real node: a VK backed by the local plugin, whose pod IPs come
    from the loopback /16 ``prefix``.0.0 (a VK pod binds its kubelet port there; other tests on
    this host give their local pods 127.1.x.x, the plugin's default)."""
    plugin = start_plugin(root / "plugin", "local", config={"ip_range": f"{prefix}.0.0/16"})
    api = start_api(
        root / "api", {"plugin": {"url": plugin.url}, "auth": {"insecure_dev_token": TOKEN}}
    )
    try:
        async with running_vk(k8s, api.url, TOKEN, root / "vk", "vk-real") as vk:
            yield vk
    finally:
        api.stop()
        plugin.stop()


@asynccontextmanager
async def slurm_edge(
    root: Path, slurm: SlurmInfo, auth: dict[str, Any] | None = None
) -> AsyncIterator[str]:
    """The SLURM plugin (host runtime) behind an API server with a development token (or
    ``auth``)."""
    plugin = start_plugin(
        root / "plugin", "slurm", config={"runtime": "host", "partition": slurm.partition}
    )
    api = start_api(
        root / "api",
        {"plugin": {"url": plugin.url}, "auth": auth or {"insecure_dev_token": TOKEN}},
    )
    try:
        yield api.url
    finally:
        api.stop()
        plugin.stop()


def loopback_16() -> str:
    """``127.N``: a loopback /16 for one test's local pods."""
    return f"127.{random.randint(50, 250)}"


def serving_certificate(k8s: K8sInfo, ips: list[str], root: Path) -> tuple[Path, Path]:
    """A kubelet serving certificate for these IPs, signed by the cluster's CA (which the
    apiserver checks kubelet certificates against), as a site admin would issue it."""
    ca = x509.load_pem_x509_certificate(k8s.ca.read_bytes())
    ca_key = serialization.load_pem_private_key((k8s.ca.parent / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "interlink-vk")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(i)) for i in ips]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    crt, pem = root / "tls.crt", root / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return crt, pem


def chart_values(k8s: K8sInfo, real: RunningVK, node: str, edge_url: str, stage: str) -> str:
    """Values a site admin would write, plus where this world's VK pod runs and how it reaches
    the apiserver."""
    server = urlsplit(k8s.server)
    values = {
        "node": {"name": node, "labels": {"stage": stage}},
        "edge": {"url": edge_url, "auth": "token", "credentials": {"token": TOKEN}},
        "settings": {"status_interval_seconds": 1, "ping_interval_seconds": 1},
        "command": [*INTERLINK],
        "kubernetesAPI": {"host": server.hostname, "port": server.port},
        "nodeSelector": {"kubernetes.io/hostname": real.node},
        "tolerations": [{"key": VK_TAINT_KEY, "operator": "Exists"}],
        "removeNodeOnUninstall": {"timeoutSeconds": 120},
    }
    return yaml.safe_dump(values)


async def vk_pod(k8s: K8sInfo, ns: str) -> dict[str, Any] | None:
    """The chart's running VK pod (not one being deleted), if any."""
    pods = await kc(
        k8s, "get", "pods", "-n", ns, "-l", "app.kubernetes.io/component=virtual-kubelet",
        "-o", "json",
    )  # fmt: skip
    live = [
        p for p in (pods or {"items": []})["items"]
        if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running"
    ]  # fmt: skip
    return live[0] if len(live) == 1 else None


async def ready_node(k8s: K8sInfo, node: str) -> dict[str, Any] | None:
    obj = await kc(k8s, "get", "node", node, "-o", "json")
    if obj is None:
        return None
    ready = [c for c in obj["status"].get("conditions", []) if c["type"] == "Ready"]
    return obj if ready and ready[0]["status"] == "True" else None


async def probe_healthz(ip: str) -> httpx.Response | None:
    """``GET https://<pod IP>:10250/healthz``, as the chart's liveness and readiness probes
    (``None`` while nothing listens)."""
    async with httpx.AsyncClient(verify=False, timeout=10) as client:
        try:
            return await client.get(f"https://{ip}:10250/healthz")
        except httpx.ConnectError:
            return None


def internal_ip(node: dict[str, Any]) -> str:
    return str(next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"))


def job_pod(node: str, ns: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "job", "namespace": ns},
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": node},
                "tolerations": [{"key": VK_TAINT_KEY, "operator": "Exists"}],
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "command": ["sh", "-c", "echo hello from slurm; sleep 600"],
                    }
                ],
            },
        }
    )


async def logs_say_hello(k8s: K8sInfo, ns: str) -> bool:
    out = await kc(k8s, "logs", "job", "-n", ns)
    return bool(out.returncode == 0 and out.stdout == "hello from slurm\n")


async def test_install_upgrade_uninstall(k8s: K8sInfo, slurm: SlurmInfo, tmp_path: Path) -> None:
    release = f"vkh-{uuid.uuid4().hex[:5]}"
    ns = f"t-{release}"
    node = f"vk-{release}"
    values = tmp_path / "values.yaml"
    stop = asyncio.Event()
    approver = asyncio.create_task(approve_csr(k8s, node, stop))
    try:
        async with (
            real_node(k8s, tmp_path / "real", loopback_16()) as real,
            slurm_edge(tmp_path / "slurm", slurm) as edge_url,
        ):
            await kc(k8s, "create", "namespace", ns)
            values.write_text(chart_values(k8s, real, node, edge_url, stage="one"))
            notes = await run_helm(k8s, "install", release, str(CHART), "-n", ns, "-f", str(values))
            assert f"kubectl get node {node}" in notes
            assert f"kubectl get csr -l interlink.eu/node={node}" in notes

            # The VK pod runs on the real node and registers its own node, Ready, at its pod IP.
            first = await wait_for("the VK pod runs", lambda: vk_pod(k8s, ns), timeout=120)
            assert first["spec"]["nodeName"] == real.node
            registered: dict[str, Any] = await wait_for(
                "the chart's node is Ready", lambda: ready_node(k8s, node)
            )
            assert internal_ip(registered) == first["status"]["podIP"]
            # What the probes ask (a kubelet does not check the certificate of a probe); the
            # kubelet API listens once its certificate is issued.
            health = await wait_for(
                "/healthz answers", lambda: probe_healthz(first["status"]["podIP"])
            )
            assert (health.status_code, health.json()) == (200, {"status": "ok"})
            assert registered["metadata"]["labels"]["stage"] == "one"

            # A pod on that node runs through the SLURM edge; its logs come through the chart's VK.
            await kc(k8s, "apply", "-f", "-", input=job_pod(node, ns))

            async def running() -> dict[str, Any] | None:
                pod = await kc(k8s, "get", "pod", "job", "-n", ns, "-o", "json")
                ok = pod and pod["status"].get("phase") == "Running"
                return (
                    pod
                    if ok and pod["metadata"].get("annotations", {}).get(JOB_ID_ANNOTATION)
                    else None
                )

            pod = await wait_for("the pod runs on SLURM", running, timeout=120)
            job = pod["metadata"]["annotations"][JOB_ID_ANNOTATION]
            assert squeue_field(job, "%T") == "RUNNING"
            await wait_for("kubectl logs through the chart's VK", lambda: logs_say_hello(k8s, ns))

            # helm upgrade with another label: a new VK pod, the same pod and job, re-adopted.
            values.write_text(chart_values(k8s, real, node, edge_url, stage="two"))
            await run_helm(k8s, "upgrade", release, str(CHART), "-n", ns, "-f", str(values))

            async def new_vk() -> dict[str, Any] | None:
                pod = await vk_pod(k8s, ns)
                return pod if pod and pod["metadata"]["uid"] != first["metadata"]["uid"] else None

            second = await wait_for("a new VK pod runs", new_vk, timeout=120)

            async def relabelled() -> dict[str, Any] | None:
                obj = await ready_node(k8s, node)
                if obj is None or obj["metadata"]["labels"].get("stage") != "two":
                    return None
                return obj if internal_ip(obj) == second["status"]["podIP"] else None

            await wait_for("the node is relabelled by the new VK", relabelled)
            after = await kc(k8s, "get", "pod", "job", "-n", ns, "-o", "json")
            assert after["metadata"]["uid"] == pod["metadata"]["uid"]
            assert after["metadata"]["annotations"][JOB_ID_ANNOTATION] == job
            assert after["status"]["phase"] == "Running"
            assert squeue_field(job, "%T") == "RUNNING"
            await wait_for("kubectl logs through the new VK", lambda: logs_say_hello(k8s, ns))

            # helm uninstall: the pod and its job are deleted, then the VK, then the node.
            await run_helm(k8s, "uninstall", release, "-n", ns, "--wait", "--timeout", "5m")
            assert await kc(k8s, "get", "node", node, "-o", "json") is None
            assert await kc(k8s, "get", "pod", "job", "-n", ns, "-o", "json") is None
            assert wait_finished([job]) == {job: "CANCELLED"}
            assert (
                await kc(k8s, "get", "clusterrole", f"{release}-interlink-vk", "-o", "json") is None
            )
            left = await kc(k8s, "get", "pods", "-n", ns, "-o", "json")
            assert left["items"] == []
    finally:
        stop.set()
        await approver
        await asyncio.to_thread(
            helm, "uninstall", release, "-n", ns, "--no-hooks", kubeconfig=k8s.kubeconfig
        )
        await kc(k8s, "delete", "namespace", ns, "--wait=false")
        await kc(k8s, "delete", "node", node, "--ignore-not-found")


async def test_a_supplied_kubelet_certificate_needs_no_csr(
    k8s: K8sInfo, slurm: SlurmInfo, tmp_path: Path
) -> None:
    """kubeletCert.existingSecret: a certificate for the addresses the VK pod may get; `kubectl
    logs` works at once, and the VK asks for no certificate."""
    release = f"vkc-{uuid.uuid4().hex[:5]}"
    ns, node, prefix = f"t-{release}", f"vk-{release}", loopback_16()
    crt, key = serving_certificate(k8s, [f"{prefix}.0.{i}" for i in range(1, 9)], tmp_path)
    values = tmp_path / "values.yaml"
    try:
        async with (
            real_node(k8s, tmp_path / "real", prefix) as real,
            slurm_edge(tmp_path / "slurm", slurm) as edge_url,
        ):
            await kc(k8s, "create", "namespace", ns)
            created = await kc(
                k8s, "create", "secret", "tls", "vk-serving", "-n", ns,
                f"--cert={crt}", f"--key={key}",
            )  # fmt: skip
            assert created.returncode == 0, created.stderr
            settings = yaml.safe_load(chart_values(k8s, real, node, edge_url, stage="one"))
            settings["kubeletCert"] = {"existingSecret": "vk-serving"}
            values.write_text(yaml.safe_dump(settings))
            notes = await run_helm(k8s, "install", release, str(CHART), "-n", ns, "-f", str(values))
            assert "certificate approve" not in notes
            await wait_for("the chart's node is Ready", lambda: ready_node(k8s, node))
            await kc(k8s, "apply", "-f", "-", input=job_pod(node, ns))
            await wait_for("kubectl logs through the chart's VK", lambda: logs_say_hello(k8s, ns))
            csrs = await kc(k8s, "get", "csr", "-l", f"interlink.eu/node={node}", "-o", "json")
            assert csrs["items"] == []
            await run_helm(k8s, "uninstall", release, "-n", ns, "--wait", "--timeout", "5m")
            assert await kc(k8s, "get", "node", node, "-o", "json") is None
    finally:
        await asyncio.to_thread(
            helm, "uninstall", release, "-n", ns, "--no-hooks", kubeconfig=k8s.kubeconfig
        )
        await kc(k8s, "delete", "namespace", ns, "--wait=false")
        await kc(k8s, "delete", "node", node, "--ignore-not-found")


async def test_oidc_client_credentials_from_the_real_issuer(
    k8s: K8sInfo, slurm: SlurmInfo, issuer: Issuer, tmp_path: Path
) -> None:
    """edge.auth=oidc: the chart's VK gets its tokens from the world's issuer (client-credentials
    grant, the issuer's CA from the chart's Secret) and the edge, which accepts nothing else,
    takes its pods."""
    release = f"vko-{uuid.uuid4().hex[:5]}"
    ns, node = f"t-{release}", f"vk-{release}"
    values = tmp_path / "values.yaml"
    stop = asyncio.Event()
    approver = asyncio.create_task(approve_csr(k8s, node, stop))
    try:
        async with (
            real_node(k8s, tmp_path / "real", loopback_16()) as real,
            slurm_edge(tmp_path / "slurm", slurm, {"oidc": issuer.oidc_config()}) as edge_url,
        ):
            await kc(k8s, "create", "namespace", ns)
            settings = yaml.safe_load(chart_values(k8s, real, node, edge_url, stage="one"))
            settings["edge"] = {
                "url": edge_url,
                "auth": "oidc",
                "oidc": {
                    "issuer": issuer.url,
                    "clientId": "vk-cluster-a",
                    "audience": issuer.audience,
                },
                "credentials": {
                    "clientSecret": issuer.info["clients"]["vk-cluster-a"],
                    "caCrt": issuer.ca_file.read_text(),
                },
            }
            values.write_text(yaml.safe_dump(settings))
            await run_helm(k8s, "install", release, str(CHART), "-n", ns, "-f", str(values))
            await wait_for("the chart's node is Ready", lambda: ready_node(k8s, node))
            await kc(k8s, "apply", "-f", "-", input=job_pod(node, ns))
            await wait_for("kubectl logs through the chart's VK", lambda: logs_say_hello(k8s, ns))
            await run_helm(k8s, "uninstall", release, "-n", ns, "--wait", "--timeout", "5m")
    finally:
        stop.set()
        await approver
        await asyncio.to_thread(
            helm, "uninstall", release, "-n", ns, "--no-hooks", kubeconfig=k8s.kubeconfig
        )
        await kc(k8s, "delete", "namespace", ns, "--wait=false")
        await kc(k8s, "delete", "node", node, "--ignore-not-found")
