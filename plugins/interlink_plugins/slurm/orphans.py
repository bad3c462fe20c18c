"""Jobs whose create the plugin did not live to record.

Killed while ``sbatch`` runs, the plugin never learns the job id, but ``sbatch`` outlives it and
the job is submitted. The retried create (the API server retries until the plugin answers) then
finds the pod's directory left behind: before ``sbatch`` the plugin writes what it meant to
record (:func:`remember`) into its own state directory (not the pod directory, which a tenant's
job owns and could rewrite), and :func:`orphan_job` looks for a job working in that pod
directory (``squeue %Z``) to adopt instead of submitting the pod a second time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from interlink_core.errors import BackendUnavailable
from interlink_core.sdk import Submitted

from .commands import run

PENDING = "submitting"
"""The directory in the plugin's state directory of what each create will record (one
``<pod uid>.json``, written before sbatch, removed when the pod goes or sbatch fails)."""


def pending_path(state_dir: Path, uid: str) -> Path:
    """Where the create of pod ``uid`` writes what it will record."""
    return state_dir / PENDING / f"{uid}.json"


def remember(state_dir: Path, uid: str, data: dict[str, Any]) -> None:
    """Write what is recorded with the job id, before ``sbatch`` runs."""
    path = pending_path(state_dir, uid)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_text(json.dumps(data))
    path.chmod(0o600)


def forget(state_dir: Path, uid: str) -> None:
    """Drop what :func:`remember` wrote (the pod is gone, or its sbatch failed)."""
    pending_path(state_dir, uid).unlink(missing_ok=True)


async def orphan_job(squeue: str, state_dir: Path, pod_dir: Path) -> Submitted | None:
    """The job a killed create submitted for this pod directory, if there is one."""
    try:
        pending = pending_path(state_dir, pod_dir.name).read_text()
    except OSError:
        return None  # no sbatch ran for it: a fresh create may clear the directory
    rc, out, err = await run([squeue, "-h", "-t", "all", "-o", "%i|%Z"])
    if rc != 0:  # submitting again could run the pod twice: the create is retried later
        raise BackendUnavailable(f"squeue failed: {err.strip() or rc}")
    for line in out.splitlines():
        job_id, _, work_dir = line.partition("|")
        if work_dir == str(pod_dir):
            return Submitted(job_id=job_id, data=json.loads(pending))
    return None
