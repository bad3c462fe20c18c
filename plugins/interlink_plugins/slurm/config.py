"""Configuration of the SLURM plugin (``interlink plugin slurm --config slurm.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from interlink_core.config import StrictModel
from interlink_core.sdk import PluginConfig

# sbatch options a pod annotation may set unless the admin says otherwise; options that change
# identity, output, working directory or the script itself (--uid, --gid, --wrap, --output,
# --error, --chdir, --export, ...) are never in it by default.
DEFAULT_ALLOWED_FLAGS = [
    "--time",
    "--partition",
    "--account",
    "--qos",
    "--constraint",
    "--nodes",
    "--ntasks",
    "--ntasks-per-node",
    "--cpus-per-task",
    "--mem",
    "--mem-per-cpu",
    "--gres",
    "--gpus",
    "--exclusive",
    "--reservation",
    "--comment",
    "--licenses",
    "--begin",
    "--deadline",
    "--nice",
    "--signal",
    "--hold",
]


class Flavor(StrictModel):
    """A site's named set of sbatch flags (e.g. ``gpu``, ``large-mem``)."""

    flags: list[str] = Field(default_factory=list, description="sbatch options, trusted as is.")
    description: str = ""


class ApptainerConfig(StrictModel):
    """How containers run under Apptainer / Singularity."""

    binary: str = "apptainer"
    options: list[str] = Field(
        default_factory=lambda: ["--cleanenv", "--containall", "--no-home"],
        description="Options put after `exec`/`run` for every container.",
    )
    image_prefix: str = Field(
        default="docker://",
        description="Prefix for image names; absolute paths and URLs with :// are used as is.",
    )


class EnrootConfig(StrictModel):
    """How containers run under enroot."""

    binary: str = "enroot"
    image_prefix: str = "docker://"
    options: list[str] = Field(default_factory=lambda: ["--rw"])


class SlurmConfig(PluginConfig):
    """Settings of the SLURM plugin."""

    work_dir: Path | None = Field(
        default=None,
        description="Root of the per-pod working directories; must be on a filesystem shared "
        "with the compute nodes (default <state_dir>/jobs).",
    )
    runtime: Literal["apptainer", "singularity", "enroot", "host"] = "apptainer"
    apptainer: ApptainerConfig = Field(default_factory=ApptainerConfig)
    enroot: EnrootConfig = Field(default_factory=EnrootConfig)
    partition: str | None = None
    account: str | None = None
    default_flags: list[str] = Field(default_factory=list, description="Trusted sbatch options.")
    flavors: dict[str, Flavor] = Field(default_factory=dict)
    default_flavor: str | None = None
    gpu_flavor: str | None = Field(
        default=None, description="Flavor for pods that request nvidia.com/gpu."
    )
    allowed_flags: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_FLAGS),
        description="sbatch options the pod annotation slurm-job.vk.io/flags may use.",
    )
    allow_pre_exec: bool = Field(
        default=True,
        description="Run the pod annotation slurm-job.vk.io/pre-exec at the start of the job.",
    )
    keep_work_dirs: bool = False
    sbatch: str = "sbatch"
    squeue: str = "squeue"
    sacct: str = "sacct"
    scancel: str = "scancel"
    sinfo: str = "sinfo"
    taints: list[dict[str, str]] = Field(default_factory=list)

    @property
    def jobs_path(self) -> Path:
        """Where per-pod directories live."""
        return (self.work_dir or self.state_path / "jobs").expanduser()
