"""The pod of one Dask worker job: the same manifest in Kubernetes and in direct mode."""

from __future__ import annotations

from typing import Any

from interlink_core.models import JSON
from interlink_core.names import HEARTBEAT_ANNOTATION, VK_TAINT_KEY, VK_TYPE_LABEL, VK_TYPE_VALUE

from .config import ClusterOptions

CLUSTER_LABEL = "interlink.eu/dask-cluster"
SCHEDULER_ANNOTATION = "interlink.eu/dask-scheduler"
DASHBOARD_ANNOTATION = "interlink.eu/dask-dashboard"
WORKER_CONTAINER = "worker"
_MI = 1024 * 1024


def quantity(n_bytes: int) -> str:
    """A memory size as Kubernetes writes it (``Mi`` when exact)."""
    return f"{n_bytes // _MI}Mi" if n_bytes % _MI == 0 else str(n_bytes)


def worker_names(pod_name: str, processes: int) -> list[str]:
    """The names the worker processes of one pod register with (``dask worker --nworkers``)."""
    return [pod_name] if processes == 1 else [f"{pod_name}-{i}" for i in range(processes)]


def worker_argv(opts: ClusterOptions, pod_name: str, scheduler: str) -> list[str]:
    """The worker command line: the configured command, then what ties it to this cluster."""
    return [
        *opts.worker_command,
        scheduler,
        "--name",
        pod_name,
        "--nworkers",
        str(opts.processes),
        "--nthreads",
        str(opts.threads_per_process),
        "--memory-limit",
        str(opts.memory_bytes // opts.processes),
        "--death-timeout",
        f"{opts.death_timeout:g}",
        *opts.worker_extra_args,
    ]


def cluster_labels(opts: ClusterOptions) -> dict[str, str]:
    """Labels of every object of the cluster (what ``kubectl get -l`` selects on)."""
    return {
        **opts.labels,
        "app.kubernetes.io/name": "dask",
        "app.kubernetes.io/managed-by": "interlink-dask",
        CLUSTER_LABEL: opts.cluster_name,
    }


def node_placement(opts: ClusterOptions) -> JSON:
    """``nodeSelector`` and tolerations that put the pod on the (chosen) virtual node."""
    selector = {VK_TYPE_LABEL: VK_TYPE_VALUE, **opts.node_selector}
    if opts.node:
        selector["kubernetes.io/hostname"] = opts.node
    tolerations = [{"key": VK_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]
    return {"nodeSelector": selector, "tolerations": [*tolerations, *opts.tolerations]}


def worker_pod(
    opts: ClusterOptions,
    pod_name: str,
    scheduler: str,
    *,
    namespace: str,
    owner: JSON | None = None,
    uid: str | None = None,
) -> JSON:
    """The manifest of worker pod ``pod_name``; ``owner`` is the cluster's Lease (Kubernetes
    mode), ``uid`` the pod's UID (direct mode, where no API server assigns one)."""
    resources: dict[str, Any] = {
        "cpu": f"{opts.cpu:g}",
        "memory": quantity(opts.memory_bytes),
    }
    if opts.gpus:
        resources["nvidia.com/gpu"] = str(opts.gpus)
    container: JSON = {
        "name": WORKER_CONTAINER,
        "image": opts.image or "",
        "args": worker_argv(opts, pod_name, scheduler),
        "env": [{"name": k, "value": v} for k, v in sorted(opts.env.items())],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
    }
    if opts.image_pull_policy:
        container["imagePullPolicy"] = opts.image_pull_policy
    annotations = {**opts.annotations, SCHEDULER_ANNOTATION: scheduler}
    metadata: JSON = {
        "name": pod_name,
        "namespace": namespace,
        "labels": {**cluster_labels(opts), "app.kubernetes.io/component": "worker"},
        "annotations": annotations,
    }
    if owner is not None:
        annotations[HEARTBEAT_ANNOTATION] = owner["metadata"]["name"]
        metadata["ownerReferences"] = [
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
            }
        ]
    if uid is not None:
        metadata["uid"] = uid
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            # A Dask worker never talks to Kubernetes: no service-account token is minted for
            # it and shipped to the batch site.
            "automountServiceAccountToken": False,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "containers": [container],
            **node_placement(opts),
        },
    }
