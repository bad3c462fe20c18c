"""A pod as an HTCondor job: the submit description and the files next to it (pure functions,
no I/O except writing the pod's volumes).

The job's executable is the SLURM backend's job script (:func:`interlink_plugins.slurm.script.
build_job`: init containers in order, containers in parallel, per-container CRI logs and exit
files), so every value from the pod reaches the shell through :func:`shlex.quote` exactly as
there. The submit description carries no pod data but sanitised names, the resource requests,
and job attributes / requirements from pod annotations that pass the admin's allow-list; ``$``
(submit-language macro expansion, e.g. ``$ENV(...)``) and control characters are refused in them.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from interlink_core import conformance
from interlink_core.errors import BadRequest
from interlink_core.jobfiles import refuse_supervision
from interlink_core.models import JSON, RetrievedPodData
from interlink_core.podspec import checked_uid, pod_containers
from interlink_core.tenants import Tenant
from interlink_plugins.slurm.config import SlurmConfig
from interlink_plugins.slurm.script import GPU, JobPlan, _job_name, build_job, effective

from .config import HTCondorConfig

ATTRIBUTES_ANNOTATION = "htcondor-job.vk.io/attributes"
REQUIREMENTS_ANNOTATION = "htcondor-job.vk.io/requirements"
SLURM_ANNOTATIONS = "slurm-job.vk.io/"
POD_DIR_MARK = "@@IL_POD_DIR@@"
"""Stands for the pod directory in a job that runs with file transfer (the launcher puts the
job's scratch directory in its place)."""

_ATTR = re.compile(r'\s*(?:\+|MY\.)([A-Za-z_][A-Za-z0-9_]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s"]+)')
_LITERAL = re.compile(
    r'^(?:"(?:[^"\\\x00-\x1f]|\\["\\])*"'
    r"|[-+]?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
    r"|(?i:true|false|undefined))$"
)
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")

LAUNCHER = r"""#!/bin/bash
# interLink launcher (file transfer): point the job script at this job's scratch directory
set -u
il_d=${_CONDOR_SCRATCH_DIR:-$PWD}
case $il_d in
  *[!A-Za-z0-9_@%+=:,./-]*)
    echo "interLink: scratch directory path has unsafe characters: $il_d" >&2
    exit 125 ;;
esac
cd "$il_d" || exit 125
mkdir -p containers
il_mark='@@IL_POD_DIR@@'
il_s=$(<job.sh)
printf '%s\n' "${il_s//"$il_mark"/"$il_d"}" > job.run.sh
for il_f in containers/*/env; do
  [[ -f $il_f ]] || continue
  il_s=$(<"$il_f")
  printf '%s\n' "${il_s//"$il_mark"/"$il_d"}" > "$il_f"
done
exec /bin/bash job.run.sh
"""


def _annotations(pod: JSON) -> dict[str, Any]:
    return dict((pod.get("metadata") or {}).get("annotations") or {})


def _refuse_unsafe(annotation: str, text: str) -> None:
    if "$" in text:
        raise BadRequest(
            f"metadata.annotations[{annotation!r}]: '$' is not allowed (HTCondor would expand "
            "it as a submit macro)"
        )
    if any(ord(ch) < 32 for ch in text):
        raise BadRequest(f"metadata.annotations[{annotation!r}]: control characters")


def user_attributes(annotation: str, allowed: list[str]) -> dict[str, str]:
    """``+Name=value`` pairs from ``htcondor-job.vk.io/attributes``: names on the allow-list
    (ClassAd names are case-insensitive), values literals (string, number, boolean)."""
    _refuse_unsafe(ATTRIBUTES_ANNOTATION, annotation)
    where = f"metadata.annotations[{ATTRIBUTES_ANNOTATION!r}]"
    allowed_names = {a.lower(): a for a in allowed}
    out: dict[str, str] = {}
    pos = 0
    text = annotation.rstrip()
    while pos < len(text):
        m = _ATTR.match(text, pos)
        if m is None:
            raise BadRequest(
                f"{where}: cannot read {text[pos:].strip()[:60]!r}; write +Name=value pairs "
                'separated by spaces, e.g. +ProjectName="x" +MaxRuntime=3600'
            )
        name, value = m.group(1), m.group(2)
        if name.lower() not in allowed_names:
            raise BadRequest(
                f"{where}: attribute {name} is not allowed here (allowed: "
                f"{', '.join(allowed) or 'none'}); ask the site admin to add it to "
                "allowed_attributes"
            )
        if not _LITERAL.match(value):
            raise BadRequest(
                f"{where}: the value of {name} must be a string in double quotes, a number or "
                f"true/false, not {value!r}"
            )
        out[allowed_names[name.lower()]] = value
        pos = m.end()
    return out


def user_requirements(annotation: str, allowed: bool) -> str:
    """The expression from ``htcondor-job.vk.io/requirements``."""
    where = f"metadata.annotations[{REQUIREMENTS_ANNOTATION!r}]"
    if not allowed:
        raise BadRequest(
            f"{where}: this site does not accept requirements from pods "
            "(allow_requirements is false)"
        )
    _refuse_unsafe(REQUIREMENTS_ANNOTATION, annotation)
    if not annotation.strip():
        raise BadRequest(f"{where}: empty expression")
    if annotation.count("(") != annotation.count(")"):
        raise BadRequest(f"{where}: unbalanced parentheses")
    return annotation.strip()


def resource_requests(containers: list[tuple[str, str, JSON]]) -> dict[str, str]:
    """``request_cpus``, ``request_memory`` (MiB) and ``request_gpus`` from the pod's effective
    demand (the same rule as the SLURM backend: max(largest init container, sum of containers))."""
    out: dict[str, str] = {}
    cpus = effective(containers, "cpu")
    if cpus > 0:
        out["request_cpus"] = str(max(1, math.ceil(cpus)))
    mem = effective(containers, "memory")
    if mem > 0:
        out["request_memory"] = str(max(1, math.ceil(mem / Decimal(2**20))))
    gpus = math.ceil(effective(containers, GPU))
    if gpus > 0:
        out["request_gpus"] = str(gpus)
    return out


HTCONDOR_NO_PROBES = (
    "the HTCondor plugin does not run probes or lifecycle hooks (its jobs are not supervised); "
    "remove it, or use the SLURM or local node"
)


def _script_config(cfg: HTCondorConfig) -> SlurmConfig:
    """The settings the shared job-script generator reads (runtime and Apptainer only)."""
    return SlurmConfig(
        state_dir=cfg.state_dir,
        work_dir=cfg.work_dir,
        runtime=cfg.runtime,
        apptainer=cfg.apptainer,
        allowed_flags=[],
        allow_pre_exec=False,
    )


def _script(
    data: RetrievedPodData, cfg: HTCondorConfig, pod_dir: Path
) -> tuple[JobPlan, dict[str, str]]:
    """The SLURM job script for this pod, without the SLURM-only annotations and header."""
    meta = dict(data.pod.get("metadata") or {})
    meta["annotations"] = {
        k: v for k, v in _annotations(data.pod).items() if not k.startswith(SLURM_ANNOTATIONS)
    }
    refuse_supervision(data.pod, HTCONDOR_NO_PROBES)
    notices = conformance.check(data.pod, "htcondor", cfg.runtime)  # on the pod as sent
    # the plain wrapper: HTCondor jobs do not restart containers (the VK's message says so)
    spec = {**(data.pod.get("spec") or {}), "restartPolicy": "Never"}
    plan, files = build_job(
        data.model_copy(update={"pod": {**data.pod, "metadata": meta, "spec": spec}}),
        _script_config(cfg),
        pod_dir,
        notices,
    )
    lines = [
        "# HTCondor job: submit description in job.sub" if ln.startswith("# sbatch ") else ln
        for ln in plan.script.split("\n")
    ]
    plan.script = "\n".join(lines)
    plan.options = []
    return plan, files


def accounting(tenant: Tenant | None) -> dict[str, str]:
    """A tenant's ``accounting_group`` (and its Unix user as ``accounting_group_user``) for
    the submit description; nothing without a tenant or a group."""
    if tenant is None or not tenant.htcondor_accounting_group:
        return {}
    group = tenant.htcondor_accounting_group
    if not _ACCOUNTING.match(group):
        raise BadRequest(
            f"htcondor_accounting_group {group!r} of the tenant map is not usable in a submit "
            "description (letters, digits and '._-' only)"
        )
    return {"accounting_group": group, "accounting_group_user": tenant.unix_user}


_ACCOUNTING = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


def build_submit(
    data: RetrievedPodData, cfg: HTCondorConfig, pod_dir: Path, tenant: Tenant | None = None
) -> tuple[JobPlan, dict[str, str], dict[str, str]]:
    """The job plan (script), the files to write in ``pod_dir`` (relative path → content,
    ``job.sh`` included) and the submit description (without ``transfer_input_files``, which
    :func:`transfer_inputs` fills in once the files are written). A ``tenant`` of the tenant
    map adds its accounting group."""
    pod = data.pod
    uid = checked_uid(pod)
    meta = pod.get("metadata") or {}
    annotations = _annotations(pod)
    containers = pod_containers(pod)
    desc: dict[str, str] = {
        "universe": cfg.universe,
        "batch_name": _job_name(meta),
        "initialdir": str(pod_dir),
        "output": str(pod_dir / "job.out"),
        "error": str(pod_dir / "job.err"),
        "log": str(pod_dir / "job.log"),
        "getenv": "false",
        "+InterLinkPodUID": f'"{uid}"',
    }
    desc.update(resource_requests(containers))
    desc.update(accounting(tenant))
    requirements = [r for r in [cfg.requirements] if r]
    if REQUIREMENTS_ANNOTATION in annotations:
        requirements.append(
            user_requirements(str(annotations[REQUIREMENTS_ANNOTATION]), cfg.allow_requirements)
        )
    if requirements:
        desc["requirements"] = " && ".join(f"({r})" for r in requirements)
    attributes = dict(cfg.attributes)
    if ATTRIBUTES_ANNOTATION in annotations:
        attributes.update(
            user_attributes(str(annotations[ATTRIBUTES_ANNOTATION]), cfg.allowed_attributes)
        )
    for name, value in attributes.items():
        desc[f"+{name}"] = value

    plan, files = _script(data, cfg, pod_dir)
    if cfg.transfer:
        if not _SAFE_PATH.match(str(pod_dir)):
            raise BadRequest(f"work_dir {pod_dir} has characters unsafe for file transfer")
        base = str(pod_dir)
        plan.script = plan.script.replace(base, POD_DIR_MARK)
        files = {rel: text.replace(base, POD_DIR_MARK) for rel, text in files.items()}
        files["launch.sh"] = LAUNCHER
        desc.update(
            {
                "executable": str(pod_dir / "launch.sh"),
                "transfer_executable": "true",
                "should_transfer_files": "YES",
                "when_to_transfer_output": "ON_EXIT_OR_EVICT",
                "transfer_output_files": "containers",
            }
        )
    else:
        desc.update(
            {
                "executable": str(pod_dir / "job.sh"),
                "transfer_executable": "false",
                "should_transfer_files": "NO",
            }
        )
    files["job.sh"] = plan.script
    return plan, files, desc


def transfer_inputs(pod_dir: Path) -> str:
    """``transfer_input_files``: the pod directory's contents but the launcher (the
    executable, sent anyway) and HTCondor's own files."""
    skip = {"launch.sh", "job.sub", "job.out", "job.err", "job.log"}
    return ",".join(sorted(p.name for p in pod_dir.iterdir() if p.name not in skip))
