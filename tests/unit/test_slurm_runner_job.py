"""A SLURM job for a pod that needs a kubelet's supervision (probes, hooks, restarts): the
script hands the pod to the pod runner under the node's plain ``python3``, from a copy of its
standard-library modules; the job script is run here with bash (no SLURM) to show that copy
works outside this project's virtualenv."""

from __future__ import annotations

import ast
import json
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from interlink_core import podrunner
from interlink_core.config import build_config
from interlink_core.errors import BadRequest
from interlink_core.jobfiles import write_job_files
from interlink_core.logs import format_line
from interlink_core.models import RetrievedPodData
from interlink_core.podrunner import STANDALONE_MODULES
from interlink_plugins.htcondor.config import HTCondorConfig
from interlink_plugins.htcondor.submit import build_submit
from interlink_plugins.slurm.plugin import SlurmPluginConfig
from interlink_plugins.slurm.script import build_job, record_data

UID = "5f0c0a3e-1111-2222-3333-444455556666"


def data(containers: list[dict[str, Any]], **spec: Any) -> RetrievedPodData:
    pod = {
        "metadata": {"name": "w", "namespace": "ns", "uid": UID},
        "spec": {"containers": containers, **spec},
    }
    return RetrievedPodData.model_validate({"pod": pod, "container": []})


def cfg(tmp_path: Path, **kw: Any) -> SlurmPluginConfig:
    return build_config(SlurmPluginConfig, {"state_dir": str(tmp_path), "runtime": "host", **kw})


PROBED = {
    "name": "main",
    "command": ["sh", "-c", "touch $MARK; sleep 30"],
    "env": [{"name": "MARK", "value": "made"}],
    "readinessProbe": {"exec": {"command": ["test", "-f", "made"]}, "periodSeconds": 1},
}


def test_probed_pod_runs_the_pod_runner_with_the_containers_env(tmp_path: Path) -> None:
    pod_dir = tmp_path / "jobs" / UID
    plan, files = build_job(data([PROBED], restartPolicy="Always"), cfg(tmp_path), pod_dir)
    last = shlex.split(plan.script.splitlines()[-1])
    assert last[:4] == ["exec", "python3", "-I", "-c"]
    assert last[5:] == [f"{pod_dir}/lib", str(pod_dir)]
    assert set(files) >= {
        "spec.json",
        "lib/interlink_core/__init__.py",
        "lib/interlink_core/probes.py",
        "lib/interlink_core/podrunner.py",
    }
    spec = json.loads(files["spec.json"])
    (main,) = spec["containers"]
    assert main["argv"][:2] == ["env", "-i"] and main["argv"][-3:] == PROBED["command"]
    assert main["exec_prefix"] == main["argv"][:-3]  # probes see the container's env
    assert "MARK=made" in main["exec_prefix"]
    assert main["supervision"]["restartPolicy"] == "Always"
    assert main["supervision"]["probes"]["readiness"]["command"] == ["test", "-f", "made"]
    assert record_data(plan, pod_dir)["runner"] is True


def test_plain_pods_keep_the_bash_wrapper(tmp_path: Path) -> None:
    plain = {"name": "main", "command": ["true"]}
    plan, files = build_job(data([plain], restartPolicy="Never"), cfg(tmp_path), tmp_path / UID)
    assert "python3" not in plan.script and "il_run main" in plan.script
    assert "spec.json" not in files
    assert "runner" not in record_data(plan, tmp_path / UID)


def test_without_a_shared_filesystem_probes_are_refused_naming_the_field(tmp_path: Path) -> None:
    c = cfg(tmp_path, shared_filesystem=False)
    with pytest.raises(BadRequest, match=r"^spec\.containers\[0\]\.readinessProbe: .*shared_fi"):
        build_job(data([PROBED], restartPolicy="Never"), c, tmp_path / UID)


def test_the_job_script_runs_the_runner_with_plain_python3(tmp_path: Path) -> None:
    pod_dir = tmp_path / "jobs" / UID
    pod_dir.mkdir(parents=True)
    plan, files = build_job(data([PROBED], restartPolicy="Always"), cfg(tmp_path), pod_dir)
    write_job_files(pod_dir, {"job.sh": plan.script, **files}, ("job.sh",))
    job = subprocess.Popen(["bash", str(pod_dir / "job.sh")], cwd=pod_dir)
    try:
        status = pod_dir / "containers" / "main" / "status"
        deadline = time.monotonic() + 20
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline and not seen.get("ready"):
            try:
                seen = json.loads(status.read_text())
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        assert seen.get("ready") is True, seen
        assert seen["restartCount"] == 0
    finally:
        job.terminate()  # what scancel --batch --signal=TERM does
        assert job.wait(timeout=20) == 1  # the runner's status: a container failed (143)
    done = json.loads((pod_dir / "containers" / "main" / "exit").read_text())
    assert done["exitCode"] == 143  # sleep got SIGTERM from the runner


def test_the_runner_copy_reads_as_python_3_8_and_logs_as_the_plugins_read() -> None:
    core = Path(podrunner.__file__).parent
    for module in STANDALONE_MODULES:
        ast.parse((core / module).read_text(), module, feature_version=(3, 8))
    t = 1796067959.741821
    assert podrunner.format_line(t, "stderr", b"x", partial=True) == format_line(
        t, "stderr", b"x", partial=True
    )
    assert (
        podrunner.format_line(t, "stdout", b"hi") == b"2026-11-30T19:45:59.741821000Z stdout F hi\n"
    )


def test_htcondor_refuses_probes_and_keeps_the_plain_wrapper(tmp_path: Path) -> None:
    htc = build_config(HTCondorConfig, {"state_dir": str(tmp_path / "st"), "runtime": "host"})
    with pytest.raises(BadRequest, match=r"^spec\.containers\[0\]\.readinessProbe: the HTCondor"):
        build_submit(data([PROBED], restartPolicy="Always"), htc, tmp_path / UID)
    plain = {"name": "main", "command": ["true"]}
    plan, files, _ = build_submit(data([plain], restartPolicy="Always"), htc, tmp_path / UID)
    assert "python3" not in plan.script and "spec.json" not in files
