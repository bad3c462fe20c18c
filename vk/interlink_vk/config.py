"""Configuration of the virtual kubelet (``interlink vk --config vk.yaml``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from interlink_core.client import ClientCredentials, TokenSource, static_token, token_file
from interlink_core.config import StrictModel
from interlink_core.names import (
    HEARTBEAT_ANNOTATION,
    HEARTBEAT_LABEL,
    JOB_ID_ANNOTATION,
    UPSTREAM_JOB_ID_ANNOTATION,
    VK_TAINT_KEY,
)

__all__ = [
    "HEARTBEAT_ANNOTATION",
    "HEARTBEAT_LABEL",
    "JOB_ID_ANNOTATION",
    "UPSTREAM_JOB_ID_ANNOTATION",
    "VK_TAINT_KEY",
    "VKConfig",
]


class OIDCClient(StrictModel):
    """Client-credentials grant against the edge's OIDC issuer."""

    issuer: str
    client_id: str
    client_secret_file: Path
    audience: str | None = None
    scope: str | None = None
    ca_file: Path | None = None


class EdgeConfig(StrictModel):
    """How to reach the interLink API server."""

    url: str = Field(description="https://edge.example:3000, or unix:///path.sock")
    token: str | None = Field(default=None, description="A fixed bearer token (demos).")
    token_file: Path | None = Field(default=None, description="A token file rotated on disk.")
    oidc: OIDCClient | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    timeout_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _one_credential(self) -> EdgeConfig:
        given = [k for k in ("token", "token_file", "oidc") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of edge.token, edge.token_file, edge.oidc ({given})")
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("edge.client_cert and edge.client_key go together")
        return self

    def token_source(self) -> TokenSource | None:
        """The bearer-token source this configuration describes."""
        if self.token is not None:
            return static_token(self.token)
        if self.token_file is not None:
            return token_file(self.token_file)
        if self.oidc is not None:
            o = self.oidc
            return ClientCredentials(
                o.issuer,
                o.client_id,
                o.client_secret_file.read_text().strip(),
                audience=o.audience,
                scope=o.scope,
                ca_file=o.ca_file,
            )
        return None


class Taint(StrictModel):
    """A node taint."""

    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class Capacity(StrictModel):
    """What the node announces until (and unless) the plugin's ping says otherwise."""

    cpu: str = "100"
    memory: str = "1Ti"
    pods: str = "1000"
    accelerators: dict[str, int] = Field(
        default_factory=dict, description="e.g. {nvidia.com/gpu: 4}"
    )


class VKConfig(StrictModel):
    """Configuration of one virtual node."""

    node_name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    kubeconfig: Path | None = Field(
        default=None, description="Kubeconfig file; default: in-cluster or ~/.kube/config."
    )
    service_account_dir: Path | None = Field(
        default=None,
        description="Talk to Kubernetes as the pod's service account only: the token, ca.crt "
        "and namespace in this directory and the apiserver at $KUBERNETES_SERVICE_HOST:"
        "$KUBERNETES_SERVICE_PORT, never a kubeconfig (what the Helm chart sets).",
    )
    edge: EdgeConfig
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)
    capacity: Capacity = Field(default_factory=Capacity)
    internal_ip: str = Field(
        default="127.0.0.1", description="The node's InternalIP (also where the kubelet API binds)."
    )
    kubelet_port: int = Field(default=10250, ge=1, le=65535)
    kubelet_cert: Path | None = Field(
        default=None, description="Serving certificate of the kubelet API (default: by CSR)."
    )
    kubelet_key: Path | None = None
    kubelet_client_ca: Path | None = Field(
        default=None,
        description="CA of the apiserver's kubelet-client certificate (default: the cluster's "
        "kube-system/extension-apiserver-authentication client CA).",
    )
    state_dir: Path = Field(
        default=Path("~/.local/state/interlink/vk"),
        description="Where the VK keeps its serving certificate.",
    )
    status_interval_seconds: float = Field(
        default=5.0, gt=0, description="One status call for all non-terminal pods this often."
    )
    pending_status_interval_seconds: float = Field(
        default=0.5,
        gt=0,
        description="One status call for the pods not Running yet this often (while any).",
    )
    pending_status_seconds: float = Field(
        default=120.0,
        ge=0,
        description="How long after its creation a pod not Running yet is asked about every "
        "pending_status_interval_seconds; afterwards (a job waiting in the batch queue) only "
        "in the full cycle.",
    )
    status_pods: Literal["slim", "full"] = Field(
        default="slim",
        description="What a /status call sends of each pod: 'slim' (name, namespace, UID, "
        "annotations, container names and phase: all that our API server and plugins, and "
        "upstream's API server and SLURM plugin, read; 10,000 pods in one call of ~3 MB) or "
        "'full' (the whole pod, as upstream's VK sends it, for a plugin that reads more).",
    )
    status_call_max_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest /status request body: pods beyond it go in a further call of the "
        "same cycle (about 30,000 slim pods, or 4,000 full pods of 2 KB). Keep it below the "
        "API server's max_request_bytes (16 MiB by default).",
    )
    fresh_status_interval_seconds: float = Field(
        default=0.1,
        gt=0,
        description="... this often instead while one of them was submitted less than "
        "fresh_status_seconds ago (never more often than twice the last status call took).",
    )
    fresh_status_seconds: float = Field(
        default=3.0,
        ge=0,
        description="How long after its submission a pod counts as fresh (0: never).",
    )
    token_refresh_fraction: float = Field(
        default=0.8,
        gt=0,
        lt=1,
        description="Refresh the service-account tokens of a running pod once they have lived "
        "this fraction of their lifetime (or a day), as a kubelet does (0.8).",
    )
    heartbeat_check_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often pods with an interlink.eu/heartbeat-lease have their Lease checked.",
    )
    lost_after_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A pod the edge's status answers leave out this long, and that a status "
        "call for it alone leaves out too, is Failed with reason ProviderLost (until then it "
        "keeps its last state: upstream plugins answer from a cache that leaves new pods out "
        "for about 10 s).",
    )
    ping_interval_seconds: float = Field(default=10.0, gt=0)
    lease_duration_seconds: int = Field(default=40, ge=10)
    create_concurrency: int = Field(default=16, ge=1)

    @model_validator(mode="after")
    def _one_kube_identity(self) -> VKConfig:
        if self.kubeconfig is not None and self.service_account_dir is not None:
            raise ValueError("give only one of kubeconfig, service_account_dir")
        return self

    def kubeconfig_problem(self, env: Mapping[str, str]) -> str | None:
        """Why the VK cannot reach Kubernetes with this configuration and environment (no
        kubeconfig file where one is needed), with what to do; ``None`` if it can try."""
        if self.service_account_dir is not None:
            return None
        fix = (
            "give the cluster's kubeconfig with --kubeconfig FILE or kubeconfig: FILE (e.g. "
            "kubectl config view --raw --minify > FILE), or run the VK in the cluster"
        )
        if self.kubeconfig is not None:
            if not self.kubeconfig.expanduser().is_file():
                return f"kubeconfig: {self.kubeconfig} does not exist; {fix}"
            return None
        if env.get("KUBERNETES_SERVICE_HOST"):
            return None  # in a pod: kr8s takes the service account
        named = [p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
        if named:
            if any(Path(p).expanduser().is_file() for p in named):
                return None
            return f"$KUBECONFIG names {', '.join(named)}, which does not exist; {fix}"
        default = Path("~/.kube/config").expanduser()
        if default.is_file():
            return None
        return (
            f"no kubeconfig: {default} does not exist, $KUBECONFIG is not set and this is not "
            f"a pod; {fix}"
        )
