"""Configuration of the HTCondor plugin (``interlink plugin htcondor --config condor.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from interlink_core.sdk import PluginConfig
from interlink_plugins.slurm.config import ApptainerConfig

# Job ClassAd attributes a pod annotation may set (``+Name=value``) unless the admin says
# otherwise; attributes that change identity, accounting, the executable, the environment or
# where files go (Owner, AccountingGroup, Cmd, Iwd, Environment, ...) are never in it by default.
DEFAULT_ALLOWED_ATTRIBUTES = [
    "ProjectName",
    "MaxRuntime",
    "MaxWallTimeMins",
    "JobDescription",
]


class HTCondorConfig(PluginConfig):
    """Settings of the HTCondor plugin."""

    schedd_name: str | None = Field(
        default=None, description="Name of the schedd to submit to (default: the local schedd)."
    )
    collector: str | None = Field(
        default=None,
        description="Collector (host[:port]) to locate the schedd through (default: the pool's "
        "configured COLLECTOR_HOST).",
    )
    work_dir: Path | None = Field(
        default=None,
        description="Root of the per-pod working directories (default <state_dir>/jobs). Without "
        "`transfer` it must be on a filesystem shared with the execute nodes.",
    )
    transfer: bool = Field(
        default=False,
        description="Use HTCondor file transfer instead of a shared filesystem: the pod "
        "directory is sent with the job and the per-container logs and exit files come back "
        "when the job exits or is evicted.",
    )
    host_path_prefixes: list[Path] = Field(
        default_factory=list,
        description="Host directories pods may mount as hostPath volumes (below these "
        "prefixes, symlinks resolved); any other hostPath volume is refused (default: none).",
    )
    runtime: Literal["apptainer", "singularity", "host"] = "apptainer"
    apptainer: ApptainerConfig = Field(default_factory=ApptainerConfig)
    universe: str = "vanilla"
    requirements: str | None = Field(
        default=None, description="Trusted requirements expression for every job."
    )
    attributes: dict[str, str] = Field(
        default_factory=dict,
        description="Trusted job attributes for every job (name → ClassAd expression), e.g. "
        '{"AccountingGroup": "\\"group_k8s.user\\""}.',
    )
    allowed_attributes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_ATTRIBUTES),
        description="Attributes the pod annotation htcondor-job.vk.io/attributes may set.",
    )
    allow_requirements: bool = Field(
        default=True,
        description="Accept the pod annotation htcondor-job.vk.io/requirements (and-ed with "
        "`requirements`).",
    )
    keep_work_dirs: bool = False
    tenants_file: Path | None = Field(
        default=None,
        description="The site's tenant map (docs/tenants.md): each tenant's jobs carry its "
        "htcondor_accounting_group.",
    )
    remove_timeout: float = Field(
        default=60.0, ge=0, description="How long delete waits for a removed job to leave."
    )
    cpu: str = Field(default="100", description="CPUs announced to Kubernetes.")
    memory: str = Field(default="256Gi", description="Memory announced to Kubernetes.")
    gpus: int = Field(default=0, ge=0, description="nvidia.com/gpu announced to Kubernetes.")
    max_pods: int = Field(default=1000, ge=1)
    taints: list[dict[str, str]] = Field(default_factory=list)

    @property
    def jobs_path(self) -> Path:
        """Where per-pod directories live."""
        return (self.work_dir or self.state_path / "jobs").expanduser()
