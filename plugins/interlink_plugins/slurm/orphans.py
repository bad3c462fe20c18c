"""Jobs whose create the plugin did not live to record.

Killed while ``sbatch`` runs, the plugin never learns the job id, but ``sbatch`` outlives it and
the job is submitted. The retried create (the API server retries until the plugin answers) then
finds the pod's directory left behind: before ``sbatch`` the plugin writes into it what it
meant to record (:func:`remember`), and :func:`orphan_job` looks for a job working in that
directory (``squeue %Z``) to adopt instead of submitting the pod a second time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from interlink_core.errors import BackendUnavailable
from interlink_core.jobfiles import read_text
from interlink_core.sdk import Submitted

from .commands import run

PENDING = "submitting.json"
"""What the plugin records for the pod once its job id is known (written before sbatch)."""


def remember(pod_dir: Path, data: dict[str, Any]) -> None:
    """Write what is recorded with the job id, before ``sbatch`` runs."""
    path = pod_dir / PENDING
    path.write_text(json.dumps(data))
    path.chmod(0o600)


async def orphan_job(squeue: str, pod_dir: Path) -> Submitted | None:
    """The job a killed create submitted for this pod directory, if there is one."""
    pending = read_text(pod_dir / PENDING)
    if pending is None:
        return None  # no sbatch ran for it: a fresh create may clear the directory
    rc, out, err = await run([squeue, "-h", "-t", "all", "-o", "%i|%Z"])
    if rc != 0:  # submitting again could run the pod twice: the create is retried later
        raise BackendUnavailable(f"squeue failed: {err.strip() or rc}")
    for line in out.splitlines():
        job_id, _, work_dir = line.partition("|")
        if work_dir == str(pod_dir):
            return Submitted(job_id=job_id, data=json.loads(pending))
    return None
