"""The interLink virtual nodes of the user's Kubernetes cluster (health, edge connectivity,
capacity, taints, pods per phase) and the direct-mode edge of the dask config (its ping)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from kr8s import ServerError

from interlink_core.client import InterLinkClient, RemoteError, Retry
from interlink_core.kube import KubeJSON, status_code
from interlink_core.models import JSON
from interlink_core.names import CONNECTIVITY_CONDITION, VK_NODE_SELECTOR
from interlink_dask.config import ClusterOptions

from .errors import Problem

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
RBAC_HINT = (
    "ask your administrator for read access (get, list, watch) to nodes and pods; "
    "docs/jupyter.md lists the ClusterRole"
)
KUBECONFIG_HINT = (
    "set KUBECONFIG (or interlink.kubeconfig in your dask config) to a kubeconfig of the "
    "cluster that runs the virtual kubelets; with direct mode only, set interlink.mode: direct"
)
EDGE_HINT = "check interlink.direct.url and the token in your dask config, and that the edge runs"
EDGE_TIMEOUT = 5.0

Publish = Callable[[str, JSON], None]


def kube_configured(kubeconfig: Path | None) -> bool:
    """Whether any Kubernetes cluster is configured (kubeconfig given or found, in-cluster)."""
    if kubeconfig or os.environ.get("KUBECONFIG"):
        return True
    if Path("~/.kube/config").expanduser().exists():
        return True
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _condition(node: JSON, kind: str) -> JSON:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def _truth(cond: JSON) -> bool | None:
    return {"True": True, "False": False}.get(str(cond.get("status")))


def node_info(node: JSON, pods: Counter[str]) -> JSON:
    """What the sidebar shows of one virtual node."""
    meta = node.get("metadata") or {}
    status = node.get("status") or {}
    ready = _condition(node, "Ready")
    edge = _condition(node, CONNECTIVITY_CONDITION)
    return {
        "name": meta.get("name", ""),
        "ready": _truth(ready),
        "ready_message": str(ready.get("message") or ready.get("reason") or ""),
        "edge": {
            "connected": _truth(edge),
            "message": str(edge.get("message") or edge.get("reason") or ""),
        },
        "capacity": dict(status.get("capacity") or {}),
        "allocatable": dict(status.get("allocatable") or {}),
        "taints": [
            {k: t[k] for k in ("key", "value", "effect") if k in t}
            for t in (node.get("spec") or {}).get("taints") or []
        ],
        "pods": {phase: pods.get(phase, 0) for phase in PHASES},
        "created": meta.get("creationTimestamp"),
    }


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ServerError) and exc.response is not None:
        with contextlib.suppress(Exception):
            return str(exc.response.json().get("message") or exc)
    return str(exc) or type(exc).__name__


class NodeBoard:
    """The nodes answer, refreshed on demand; changes are published."""

    def __init__(self, publish: Publish, options: Callable[[], ClusterOptions]) -> None:
        self.publish = publish
        self.options = options
        self.answer: JSON = {"nodes": [], "edges": [], "problems": [], "kubernetes": True}
        self._kube: tuple[KubeJSON, str] | None = None
        self._lock = asyncio.Lock()

    async def refresh(self) -> JSON:
        """Read the nodes and edges once; publish if anything changed."""
        async with self._lock:
            opts = self.options()
            problems: list[Problem] = []
            nodes = await self._nodes(opts, problems)
            edges = [await self._edge(opts)] if opts.direct.url else []
            answer = {
                "nodes": nodes,
                "edges": edges,
                "problems": [p.as_json() for p in problems],
                "kubernetes": kube_configured(opts.kubeconfig),
            }
            if answer != self.answer:
                self.answer = answer
                self.publish("nodes", answer)
            return answer

    async def _connect(self, opts: ClusterOptions) -> tuple[KubeJSON, str]:
        if self._kube is None:
            from interlink_dask.kubernetes import connect

            self._kube = await connect(opts)
        return self._kube

    async def _nodes(self, opts: ClusterOptions, problems: list[Problem]) -> list[JSON]:
        if not kube_configured(opts.kubeconfig):
            if opts.mode == "kubernetes":
                problems.append(
                    Problem("kubernetes", "no Kubernetes cluster is configured", KUBECONFIG_HINT)
                )
            return []
        try:
            kube, namespace = await self._connect(opts)
            answer = await kube.call("GET", "nodes", params={"labelSelector": VK_NODE_SELECTOR})
        except Exception as exc:
            if self._kube is not None:
                await self._kube[0].aclose()
            self._kube = None
            problems.append(_kube_problem(exc, "list nodes"))
            return []
        items = sorted(answer.get("items") or [], key=lambda n: n["metadata"]["name"])
        phases = await self._phases(
            kube, namespace, [n["metadata"]["name"] for n in items], problems
        )
        return [node_info(n, phases.get(n["metadata"]["name"], Counter())) for n in items]

    async def _phases(
        self, kube: KubeJSON, namespace: str, names: list[str], problems: list[Problem]
    ) -> dict[str, Counter[str]]:
        """Pods per phase on each node: all namespaces, or the user's when that is all the
        user may list (said in a problem)."""

        async def count(node: str, ns: str | None) -> Counter[str]:
            answer = await kube.call(
                "GET", "pods", namespace=ns, params={"fieldSelector": f"spec.nodeName={node}"}
            )
            return Counter(
                str((p.get("status") or {}).get("phase") or "Unknown")
                for p in answer.get("items") or []
            )

        for ns in (None, namespace):
            try:
                counts = await asyncio.gather(*(count(n, ns) for n in names))
            except ServerError as exc:
                if ns is None and status_code(exc) == 403:
                    problems.append(
                        Problem(
                            "kubernetes",
                            f"pod counts show namespace {namespace} only: you may not list "
                            f"pods in all namespaces ({_reason(exc)})",
                            RBAC_HINT,
                        )
                    )
                    continue
                problems.append(_kube_problem(exc, "list pods"))
                return {}
            except Exception as exc:
                problems.append(_kube_problem(exc, "list pods"))
                return {}
            return dict(zip(names, counts, strict=True))
        return {}

    async def _edge(self, opts: ClusterOptions) -> JSON:
        d = opts.direct
        assert d.url is not None
        info: JSON = {"url": d.url, "ok": False, "message": "", "resources": None}
        client = InterLinkClient(
            d.url,
            token=d.token_source(),
            ca_file=d.ca_file,
            timeout=EDGE_TIMEOUT,
            retry=Retry(attempts=1),
        )
        try:
            ping = await asyncio.wait_for(client.ping(), EDGE_TIMEOUT)
            info["ok"] = True
            if ping.resources is not None:
                info["resources"] = ping.resources.model_dump(mode="json", exclude_none=True)
        except RemoteError as exc:
            info["message"] = f"the edge answered {exc.status_code}: {exc}"
        except Exception as exc:
            info["message"] = f"cannot reach the edge: {_reason(exc)}"
        finally:
            await client.aclose()
        return info


def _kube_problem(exc: BaseException, what: str) -> Problem:
    code = status_code(exc)
    if code in (401, 403):
        return Problem("kubernetes", f"you may not {what}: {_reason(exc)}", RBAC_HINT)
    if code is not None:
        return Problem(
            "kubernetes",
            f"cannot {what}: the Kubernetes API answered {code}: {_reason(exc)}",
            RBAC_HINT,
        )
    return Problem(
        "kubernetes",
        f"cannot reach the Kubernetes API to {what}: {_reason(exc)}",
        KUBECONFIG_HINT,
    )
