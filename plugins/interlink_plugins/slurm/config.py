"""Configuration of the SLURM plugin (``interlink plugin slurm --config slurm.yaml``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from interlink_core.config import StrictModel
from interlink_core.sdk import PluginConfig

from ..runtimes import PodmanConfig

# sbatch options a pod annotation may set unless the admin says otherwise; options that change
# identity, output, working directory or the script itself (--uid, --gid, --wrap, --output,
# --error, --chdir, --export, ...) are never in it by default, nor is --account (who pays: a
# site adds it, or lists each tenant's accounts in the tenant map).
DEFAULT_ALLOWED_FLAGS = [
    "--time",
    "--partition",
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


# sbatch options the plugin sets itself when the work directory is not shared (job comment:
# container states; output/error: container logs) and a site's flags may not override
SCRATCH_RESERVED_FLAGS = ("--comment", "--output", "--error", "--open-mode", "-o", "-e")
SLURM_MAX_SCRIPT_BYTES = 4 * 1024 * 1024
"""SLURM's default limit on the size of a batch script (SchedulerParameters=max_script_size)."""
# a path the job's shell expands: literal path characters, $NAME, ${NAME} or ${NAME:-default}
_LITERAL = r"[A-Za-z0-9_./@%+=,:~-]"
_SCRATCH_PATTERN = re.compile(
    rf"^(?:{_LITERAL}|\$[A-Za-z_][A-Za-z0-9_]*"
    rf"|\$\{{[A-Za-z_][A-Za-z0-9_]*(?::?-{_LITERAL}*)?\}})+$"
)


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
        description="Root of the per-pod working directories (default <state_dir>/jobs); must be "
        "on a filesystem shared with the compute nodes unless shared_filesystem is false.",
    )
    runtime: Literal["apptainer", "singularity", "enroot", "podman", "host"] = "apptainer"
    apptainer: ApptainerConfig = Field(default_factory=ApptainerConfig)
    enroot: EnrootConfig = Field(default_factory=EnrootConfig)
    podman: PodmanConfig = Field(default_factory=PodmanConfig)
    partition: str | None = None
    account: str | None = None
    announce_cpu: int | None = Field(
        default=None,
        ge=1,
        description="CPUs the virtual node announces to Kubernetes. Default: what SLURM can run "
        "at once (the partition's CPUs, times N under OverSubscribe=FORCE:N); Kubernetes "
        "schedules no more pods than that, the others wait unscheduled. Larger lets pods wait in "
        "SLURM's queue instead (its priorities and fair share order them).",
    )
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
        default=False,
        description="Run the pod annotation slurm-job.vk.io/pre-exec at the start of the job "
        "(shell lines from the pod's author, run as the job's user).",
    )
    tenants_file: Path | None = Field(
        default=None,
        description="The site's tenant map (docs/tenants.md): each tenant's jobs run as its "
        "Unix user with its SLURM accounts, QOS, partitions and flags. Needs work_dir.",
    )
    submit_as: Literal["sbatch-uid", "sudo"] = Field(
        default="sbatch-uid",
        description="With a tenant map: how jobs become the tenant's: sbatch --uid/--gid (the "
        "plugin runs as root) or sudo -u <user> sbatch/scancel (see docs/tenants.md for the "
        "sudo rule).",
    )
    sudo: str = Field(default="sudo", description="The sudo command (submit_as: sudo).")
    host_path_prefixes: list[Path] = Field(
        default_factory=list,
        description="Host directories pods may mount as hostPath volumes (below these "
        "prefixes, symlinks resolved); any other hostPath volume is refused.",
    )
    keep_work_dirs: bool = False
    shared_filesystem: bool = Field(
        default=True,
        description="Whether work_dir is visible on the compute nodes. With false, each job is "
        "self-contained: the volume files travel inside the batch script and are unpacked into "
        "a fresh directory under scratch_dir on the node, container states come back through "
        "the job's SLURM Comment (read with squeue/sacct), and container logs through the job's "
        "output file in log_dir.",
    )
    scratch_dir: str = Field(
        default="${TMPDIR:-/tmp}",
        description="shared_filesystem: false only. Where the job works on the compute node: "
        "each job unpacks its files into a new private directory below it and removes it at the "
        "end (unless keep_work_dirs). Expanded by the job's shell, so it may use environment "
        "variables of the job ($TMPDIR, ${SCRATCH}, ${TMPDIR:-/tmp}); an unset variable fails "
        "the job. Only path characters and such variable references are accepted.",
    )
    log_dir: Path | None = Field(
        default=None,
        description="shared_filesystem: false only. The directory where SLURM writes each job's "
        "--output (container logs) and --error (the job wrapper's own messages). It is the one "
        "path that must be writable by the jobs on the compute nodes AND readable by the "
        "plugin, e.g. a directory in a shared home or spool. The default, work_dir, works only "
        "when the plugin runs where the jobs run.",
    )
    max_script_bytes: int = Field(
        default=SLURM_MAX_SCRIPT_BYTES,
        ge=64 * 1024,
        description="shared_filesystem: false only. Largest batch script (volume files "
        "included) the plugin submits; pods above it are refused with a 400. Keep it at or "
        "below SLURM's SchedulerParameters=max_script_size (default 4 MB).",
    )
    sbatch: str = "sbatch"
    squeue: str = "squeue"
    sacct: str = "sacct"
    scancel: str = "scancel"
    sinfo: str = "sinfo"
    scontrol: str = Field(
        default="scontrol",
        description="scontrol as the job calls it on the compute node (shared_filesystem: false "
        "reports container states with `scontrol update JobId=... Comment=...`).",
    )
    taints: list[dict[str, str]] = Field(default_factory=list)
    _flags_key: str = PrivateAttr(default="allowed_flags")

    @property
    def flags_key(self) -> str:
        """The configuration key of the flag allow-list in force (named in refusals)."""
        return self._flags_key

    @flags_key.setter
    def flags_key(self, key: str) -> None:
        self._flags_key = key

    @field_validator("scratch_dir")
    @classmethod
    def _scratch_is_a_path(cls, value: str) -> str:
        if not _SCRATCH_PATTERN.match(value):
            raise ValueError(
                f"{value!r} is not usable: give an absolute path that may use variables of the "
                "job's environment, e.g. /scratch/$USER or ${TMPDIR:-/tmp} (letters, digits, "
                "'/._-@%+=,:~' and $NAME / ${NAME} / ${NAME:-default} only)"
            )
        if not value.startswith(("/", "$")):
            raise ValueError(f"{value!r} must be an absolute path (or start with a variable)")
        return value

    @field_validator("scontrol")
    @classmethod
    def _scontrol_is_a_command(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_./+-]+", value):
            raise ValueError(f"{value!r} must be a command name or path (no spaces or quotes)")
        return value

    @model_validator(mode="after")
    def _scratch_flags(self) -> SlurmConfig:
        if self.shared_filesystem:
            return self
        sources = [("default_flags", self.default_flags)]
        sources += [(f"flavors.{n}.flags", f.flags) for n, f in self.flavors.items()]
        for key, flags in sources:
            for flag in flags:
                if flag.split("=", 1)[0] in SCRATCH_RESERVED_FLAGS or flag.startswith(("-o", "-e")):
                    raise ValueError(
                        f"{key}: {flag!r} cannot be used with shared_filesystem: false (the "
                        "plugin sets the job's --comment, --output, --error and --open-mode "
                        "itself to carry container states and logs); remove it"
                    )
        return self

    @property
    def jobs_path(self) -> Path:
        """Where per-pod directories live."""
        return (self.work_dir or self.state_path / "jobs").expanduser()

    @property
    def logs_path(self) -> Path:
        """Where SLURM writes the jobs' output files (``shared_filesystem: false``)."""
        return (self.log_dir or self.jobs_path).expanduser()
