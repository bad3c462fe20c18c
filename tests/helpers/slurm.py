"""The test world's real SLURM (tests/world/slurm-up): start it once per session, and small
wrappers around the real client commands (sbatch, squeue, sacct, scancel) for tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass

from tests.helpers.world import REPO, in_ci, need

SLURM_UP = REPO / "tests/world/slurm-up"
USABLE = ("idle", "mixed", "alloc", "allocated", "completing")
FINISHED = (
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
)


@dataclass(frozen=True)
class SlurmInfo:
    """The running single-host cluster."""

    node: str
    partition: str
    cluster: str


_info: SlurmInfo | None = None
_failure: str | None = None  # why slurm-up failed this session (it is not retried)


def _run(*cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def slurm_available() -> bool:
    """True when the SLURM client works and the node can take jobs."""
    if shutil.which("sinfo") is None:
        return False
    try:
        out = _run("sinfo", "-h", "-o", "%T", timeout=10)
    except subprocess.TimeoutExpired:
        return False
    states = out.stdout.split()
    return out.returncode == 0 and any(s.rstrip("*~#$@^-!%").startswith(USABLE) for s in states)


def _discover() -> SlurmInfo:
    out = _run("sinfo", "-h", "-o", "%R|%N|%T")
    rows = [line.split("|") for line in out.stdout.splitlines() if line.count("|") == 2]
    default = _run("scontrol", "show", "partition", "-o").stdout
    partition = rows[0][0] if rows else "debug"
    for line in default.splitlines():
        if "Default=YES" in line:
            partition = line.split()[0].removeprefix("PartitionName=")
    node = next((r[1] for r in rows if r[0] == partition), rows[0][1] if rows else "")
    cluster = ""
    for line in _run("scontrol", "show", "config").stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ClusterName":
            cluster = value.strip()
    return SlurmInfo(node=node, partition=partition, cluster=cluster)


def ensure_slurm() -> SlurmInfo:
    """Start the world's SLURM (once per session) and describe it.

    As root, runs tests/world/slurm-up (idempotent; < 1 s when everything already runs). Without
    root, uses a SLURM that is already up. A failure fails the test in CI and skips it locally.
    """
    global _info, _failure
    if _info is not None:
        return _info
    if _failure is not None:
        need(False, _failure)
    if os.geteuid() == 0:
        try:
            proc = subprocess.run(
                [str(SLURM_UP)], capture_output=True, text=True, timeout=900, check=False
            )
            ok, why = proc.returncode == 0, f"tests/world/slurm-up exited {proc.returncode}"
            output = proc.stdout[-4000:] + proc.stderr[-4000:]
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, why, output = False, f"tests/world/slurm-up did not run: {exc}", ""
        if not ok:
            _failure = f"{why}:\n{output}"
            if in_ci():
                raise RuntimeError(_failure)
            need(False, _failure)
    else:
        need(slurm_available(), "SLURM is not running and starting it needs root")
    need(slurm_available(), "SLURM started but its node is not usable (see /var/log/slurm)")
    _info = _discover()
    return _info


def sbatch(*args: str) -> str:
    """``sbatch --parsable <args>``; returns the job id."""
    out = _run("sbatch", "--parsable", *args)
    if out.returncode != 0:
        raise RuntimeError(f"sbatch {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip().split(";")[0]


def sacct_states(job_ids: Iterable[str]) -> dict[str, str]:
    """The accounting state of each job (first word, e.g. ``CANCELLED by 0`` -> ``CANCELLED``)."""
    ids = list(job_ids)
    out = _run("sacct", "-n", "-X", "-P", "-j", ",".join(ids), "-o", "JobID,State")
    states: dict[str, str] = {}
    for line in out.stdout.splitlines():
        job, _, state = line.partition("|")
        if job in ids and state:
            states[job] = state.split()[0]
    return states


def wait_finished(job_ids: Iterable[str], timeout: float = 30.0) -> dict[str, str]:
    """Poll sacct until every job has a final state; returns the states (raises on timeout)."""
    ids = list(job_ids)
    deadline = time.monotonic() + timeout
    while True:
        states = sacct_states(ids)
        if len(states) == len(ids) and all(s in FINISHED for s in states.values()):
            return states
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs not finished after {timeout}s: {states}")
        time.sleep(0.25)


def squeue_field(job_id: str, fmt: str) -> str:
    """One ``squeue -h -j <id> -o <fmt>`` value ('' once the job has left the queue)."""
    return _run("squeue", "-h", "-j", job_id, "-o", fmt).stdout.strip()


def scancel(*args: str) -> None:
    """``scancel <args>`` (errors ignored: the job may already be gone)."""
    _run("scancel", *args)
