"""Options of an :class:`~interlink_dask.InterLinkCluster`: dask config under ``interlink:``,
overridden by keyword arguments, validated once before anything is created."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any, Literal

import dask.config
from dask.utils import parse_bytes
from pydantic import Field, ValidationInfo, field_validator, model_validator

from interlink_core.client import TokenSource, static_token, token_file
from interlink_core.config import StrictModel, build_config
from interlink_core.podspec import NAME_PATTERN

_NESTED = ("heartbeat", "scheduler", "direct")


class HeartbeatOptions(StrictModel):
    """How the client proves it is alive (Kubernetes mode: a Lease it renews)."""

    interval: float = Field(default=10.0, gt=0, description="Seconds between renewals.")
    timeout: int = Field(
        default=60, ge=5, description="Seconds without renewal after which workers are removed."
    )


class SchedulerOptions(StrictModel):
    """Where the scheduler listens (in the client process) and how workers reach it."""

    host: str | None = Field(
        default=None,
        description="Interface to listen on (default: 0.0.0.0 in Kubernetes mode, the address "
        "on the route to the edge in direct mode).",
    )
    port: int = Field(default=0, ge=0, le=65535, description="0: a free port.")
    protocol: Literal["tcp", "tls", "ws", "wss"] = "tcp"
    dashboard_address: str = ":0"
    contact_address: str | None = Field(
        default=None,
        description="The address workers dial, e.g. a tunnel or proxy endpoint "
        "(tcp://login01.example.org:8786); default: this machine's address on the route to "
        "the edge or the Kubernetes API.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments of distributed.Scheduler."
    )


class DirectOptions(StrictModel):
    """How direct mode reaches an interLink API server (no Kubernetes involved)."""

    url: str | None = Field(default=None, description="API server URL (http, https, unix).")
    token: str | None = Field(default=None, description="Bearer token.")
    token_file: Path | None = Field(default=None, description="File holding the bearer token.")
    ca_file: Path | None = None
    namespace: str = Field(default="default", description="Namespace written on the pods.")

    def token_source(self) -> TokenSource | None:
        """The bearer token to send: the file (re-read on every request) wins over ``token``."""
        if self.token_file:
            return token_file(self.token_file.expanduser())
        return static_token(self.token) if self.token else None


class ClusterOptions(StrictModel):
    """Everything an InterLinkCluster is made of (see docs/dask.md for the YAML)."""

    mode: Literal["kubernetes", "direct"] = "kubernetes"
    name: str | None = Field(default=None, max_length=40, pattern=NAME_PATTERN.pattern)
    namespace: str | None = Field(default=None, pattern=NAME_PATTERN.pattern)
    kubeconfig: Path | None = None
    node: str | None = Field(default=None, description="Virtual node name; none: any.")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    image: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    worker_command: list[str] = Field(default_factory=lambda: ["dask", "worker"], min_length=1)
    worker_extra_args: list[str] = Field(default_factory=list)
    processes: int = Field(default=1, ge=1, le=256)
    nthreads: int | None = Field(default=None, ge=1)
    cpu: float = Field(default=1.0, gt=0)
    memory: str = "2GiB"
    gpus: int = Field(default=0, ge=0)
    env: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    death_timeout: float = Field(default=60.0, gt=0)
    status_interval: float = Field(default=2.0, gt=0)
    shutdown_on_close: bool = True
    state_dir: Path = Path("~/.local/state/interlink/dask")
    heartbeat: HeartbeatOptions = Field(default_factory=HeartbeatOptions)
    scheduler: SchedulerOptions = Field(default_factory=SchedulerOptions)
    direct: DirectOptions = Field(default_factory=DirectOptions)

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        try:
            if parse_bytes(value) <= 0:
                raise ValueError
        except (ValueError, TypeError):
            raise ValueError(f"{value!r} is not a size; write e.g. 4GiB or 500MB") from None
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return value

    @model_validator(mode="after")
    def _mode_needs(self, info: ValidationInfo) -> ClusterOptions:
        if (info.context or {}).get("attach"):
            return self  # reconnecting: the owner made the pods
        if self.mode == "kubernetes" and not self.image:
            raise ValueError(
                "image: a worker image is required in Kubernetes mode; pass image=... "
                "(e.g. ghcr.io/dask/dask:latest) or set interlink.image in your dask config"
            )
        if self.mode == "direct" and not self.direct.url:
            raise ValueError(
                "direct.url: direct mode needs the interLink API server's URL; pass "
                "direct={'url': ...} or set interlink.direct.url in your dask config"
            )
        if self.processes > 1 and self.nthreads is None and self.cpu < self.processes:
            raise ValueError(
                f"processes: {self.processes} worker processes need cpu >= {self.processes} "
                f"(cpu is {self.cpu:g}) or an explicit nthreads"
            )
        return self

    @property
    def memory_bytes(self) -> int:
        """The pod's memory, in bytes."""
        return int(parse_bytes(self.memory))

    @property
    def threads_per_process(self) -> int:
        """Threads of each worker process."""
        return self.nthreads or max(1, int(self.cpu) // self.processes)

    @property
    def cluster_name(self) -> str:
        """The cluster's name (a fresh one when none was given)."""
        assert self.name is not None  # set by load_options
        return self.name

    @property
    def state_path(self) -> Path:
        """``state_dir`` with ``~`` expanded."""
        return self.state_dir.expanduser()


def _canonical(data: dict[str, Any], nested: bool = True) -> dict[str, Any]:
    """Dask config keys use dashes, Python keyword arguments underscores: accept both."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        k = str(key).replace("-", "_")
        if nested and k in _NESTED and isinstance(value, dict):
            value = _canonical(value, nested=False)
        out[k] = value
    return out


def load_options(attach: bool = False, **overrides: Any) -> ClusterOptions:
    """Options from dask config (``interlink:``) updated by ``overrides``; a
    :class:`ConfigError` names every bad key before any pod or scheduler exists. With
    ``attach`` (``from_name``), what only creating pods needs is not required."""
    base = _canonical(dict(dask.config.get("interlink", default={}) or {}))
    given = _canonical({k: v for k, v in overrides.items() if v is not None})
    for key in _NESTED:
        if isinstance(base.get(key), dict) and isinstance(given.get(key), dict):
            given[key] = {**base[key], **given[key]}
    data = {k: v for k, v in {**base, **given}.items() if v is not None}
    if not data.get("name"):
        data["name"] = f"interlink-dask-{secrets.token_hex(3)}"
    return build_config(
        ClusterOptions,
        data,
        "InterLinkCluster options (dask config interlink:)",
        context={"attach": attach},
    )


def holder_identity() -> str:
    """Who owns a cluster: host and process."""
    return f"{os.uname().nodename}:{os.getpid()}"
