"""The test world's real SLURM (tests/world/slurm-up): real jobs through sbatch, accounted in
sacct; many small jobs run at once; a held job stays pending until cancelled."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.slurm import (
    SlurmInfo,
    sacct_states,
    sbatch,
    scancel,
    squeue_field,
    wait_finished,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def name(slurm: SlurmInfo) -> Iterator[str]:
    """A unique job name for this test; every job still queued under it is cancelled after."""
    job_name = f"ilk-world-{uuid.uuid4().hex[:8]}"
    yield job_name
    scancel("--name", job_name)


def test_batch_job_completes_and_writes_output(slurm: SlurmInfo, name: str, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text(
        "#!/bin/sh\n"
        'echo "hello from $SLURM_JOB_ID on $SLURMD_NODENAME" > "$1"\n'
        'echo "stdout of $SLURM_JOB_ID"\n'
    )
    result = tmp_path / "result.txt"
    job = sbatch(
        f"--job-name={name}",
        f"--partition={slurm.partition}",
        f"--chdir={tmp_path}",
        f"--output={tmp_path}/slurm-%j.out",
        str(script),
        str(result),
    )
    assert job.isdigit()
    assert wait_finished([job], timeout=30) == {job: "COMPLETED"}
    assert result.read_text() == f"hello from {job} on {slurm.node}\n"
    assert (tmp_path / f"slurm-{job}.out").read_text() == f"stdout of {job}\n"


def test_twenty_jobs_run_at_the_same_time(slurm: SlurmInfo, name: str, tmp_path: Path) -> None:
    """Each job marks itself started, then waits (up to 60 s, else exit 3) until all twenty
    have: they complete only if SLURM runs them all at once."""
    barrier = (
        f"touch {tmp_path}/started-$1; n=0; "
        f'while [ "$(ls {tmp_path} | grep -c ^started-)" -lt 20 ]; do '
        "n=$((n+1)); [ $n -gt 600 ] && exit 3; sleep 0.1; done; echo done-$1"
    )
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/sh\n{barrier}\n")
    jobs = [
        sbatch(f"--job-name={name}", f"--output={tmp_path}/out-{i}.txt", str(script), str(i))
        for i in range(20)
    ]
    states = wait_finished(jobs, timeout=90)
    assert set(states.values()) == {"COMPLETED"}, states
    for i in range(20):
        assert (tmp_path / f"out-{i}.txt").read_text() == f"done-{i}\n"


def test_held_job_pends_until_cancelled(slurm: SlurmInfo, name: str) -> None:
    job = sbatch("--hold", f"--job-name={name}", "--wrap=true")
    assert squeue_field(job, "%T|%r") == "PENDING|JobHeldUser"
    scancel(job)
    deadline = time.monotonic() + 15
    while squeue_field(job, "%T") not in ("", "CANCELLED"):
        assert time.monotonic() < deadline, "cancelled job still queued"
        time.sleep(0.2)
    deadline = time.monotonic() + 15
    while sacct_states([job]).get(job) != "CANCELLED":
        assert time.monotonic() < deadline, f"sacct state: {sacct_states([job])}"
        time.sleep(0.2)
