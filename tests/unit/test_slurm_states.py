"""SLURM job states → Kubernetes container states (timeouts, OOM, cancellation, node failure,
queue reasons), with and without the exit files the job script writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interlink_core.config import build_config
from interlink_core.store import JobRecord
from interlink_plugins.slurm.commands import JobState
from interlink_plugins.slurm.plugin import SlurmPlugin, SlurmPluginConfig


def plugin(tmp_path: Path) -> SlurmPlugin:
    return SlurmPlugin(build_config(SlurmPluginConfig, {"state_dir": str(tmp_path / "st")}))


def record(tmp_path: Path, init: list[str] | None = None) -> JobRecord:
    d = tmp_path / "pod"
    d.mkdir(exist_ok=True)
    return JobRecord(
        uid="u1",
        namespace="ns",
        name="p",
        job_id="42",
        data={"dir": str(d), "init": init or [], "containers": ["main"], "images": {"main": "img"}},
    )


def write(
    tmp_path: Path, container: str, started: float | None = None, exit_code: int | None = None
) -> None:
    d = tmp_path / "pod" / "containers" / container
    d.mkdir(parents=True, exist_ok=True)
    if started is not None:
        (d / "started").write_text(f"{started}\n")
    if exit_code is not None:
        (d / "exit").write_text(json.dumps({"exitCode": exit_code, "finishedAt": started or 0}))


@pytest.mark.parametrize(
    ("state", "reason", "code"),
    [
        ("TIMEOUT", "DeadlineExceeded", 143),
        ("OUT_OF_MEMORY", "OOMKilled", 137),
        ("CANCELLED", "Cancelled", 143),
        ("NODE_FAIL", "NodeFailure", 255),
        ("PREEMPTED", "Preempted", 143),
    ],
)
def test_job_end_without_exit_file(tmp_path: Path, state: str, reason: str, code: int) -> None:
    p, r = plugin(tmp_path), record(tmp_path)
    write(tmp_path, "main", started=1_700_000_000.0)
    term = p._status(r, JobState("42", state)).containers[0]["state"]["terminated"]
    assert (term["reason"], term["exitCode"]) == (reason, code)
    assert f"SLURM job 42 ended {state}" == term["message"]
    assert term["startedAt"] == "2023-11-14T22:13:20Z"


def test_failed_job_takes_its_exit_code(tmp_path: Path) -> None:
    p, r = plugin(tmp_path), record(tmp_path)
    term = p._status(r, JobState("42", "FAILED", exit_code=9)).containers[0]["state"]
    assert term["terminated"]["exitCode"] == 9


def test_exit_file_wins_over_job_state(tmp_path: Path) -> None:
    p, r = plugin(tmp_path), record(tmp_path)
    write(tmp_path, "main", started=1.0, exit_code=3)
    term = p._status(r, JobState("42", "FAILED", exit_code=3)).containers[0]["state"]
    assert term["terminated"]["reason"] == "Error" and term["terminated"]["exitCode"] == 3


def test_pending_job_shows_slurm_reason_and_expected_start(tmp_path: Path) -> None:
    p, r = plugin(tmp_path), record(tmp_path)
    job = JobState("42", "PENDING", "Resources", "2026-11-25T12:00:00")
    waiting = p._status(r, job).containers[0]["state"]["waiting"]
    assert waiting["reason"] == "Queued: Resources"
    assert waiting["message"] == ("SLURM job 42 is PENDING; expected start 2026-11-25T12:00:00")


def test_running_job_before_and_after_container_start(tmp_path: Path) -> None:
    p, r = (
        plugin(
            tmp_path,
        ),
        record(tmp_path, init=["setup"]),
    )
    running = JobState("42", "RUNNING")
    s = p._status(r, running)
    assert s.initContainers[0]["state"]["waiting"]["reason"] == "PodInitializing"
    assert s.containers[0]["state"]["waiting"]["reason"] == "PodInitializing"
    write(tmp_path, "setup", started=1.0, exit_code=0)
    write(tmp_path, "main", started=2.0)
    s = p._status(r, running)
    assert s.containers[0]["state"] == {"running": {"startedAt": "1970-01-01T00:00:02Z"}}
    assert s.containers[0]["ready"] is True


def test_end_state_is_cached_and_unknown_job_is_said_plainly(tmp_path: Path) -> None:
    p, r = plugin(tmp_path), record(tmp_path)
    unknown = p._status(r, None).containers[0]["state"]["waiting"]
    assert unknown["reason"] == "JobStateUnknown" and "42" in unknown["message"]
    done = p._status(r, JobState("42", "COMPLETED"))
    assert p._status(r, None) is done  # final: no more files read, no SLURM call needed
