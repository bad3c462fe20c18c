"""Pod → sbatch options and job script (the runtime command lines are checked as argv; the
host runtime and the script itself run for real in the integration tests)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from interlink_core.config import build_config
from interlink_core.errors import BadRequest
from interlink_core.models import RetrievedPodData
from interlink_plugins.slurm.commands import parse_sacct, parse_sbatch, parse_sinfo, parse_squeue
from interlink_plugins.slurm.plugin import SlurmPluginConfig
from interlink_plugins.slurm.script import build_job, user_flags

UID = "5f0c0a3e-1111-2222-3333-444455556666"


def pod(
    containers: list[dict[str, Any]],
    init: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    restart: str = "Never",
) -> dict[str, Any]:
    """A pod; ``restartPolicy: Never`` (the plain bash wrapper) unless ``restart`` says else."""
    return {
        "metadata": {"name": "w", "namespace": "ns", "uid": UID, "annotations": annotations or {}},
        "spec": {
            "containers": containers,
            "initContainers": init or [],
            "volumes": volumes or [],
            "restartPolicy": restart,
        },
    }


def cfg(tmp_path: Path, **kw: Any) -> SlurmPluginConfig:
    return build_config(SlurmPluginConfig, {"state_dir": str(tmp_path), **kw})


def run_lines(script: str) -> list[list[str]]:
    """The il_run command lines of a script, split as the shell would."""
    return [
        shlex.split(line.removesuffix(" &").removesuffix(" || exit $?"))[1:]
        for line in script.splitlines()
        if line.startswith("il_run ")
    ]


def test_resources_become_sbatch_options(tmp_path: Path) -> None:
    p = pod(
        [
            {
                "name": "a",
                "image": "img",
                "command": ["x"],
                "resources": {"limits": {"cpu": "1500m", "memory": "2Gi", "nvidia.com/gpu": "1"}},
            },
            {
                "name": "b",
                "image": "img",
                "command": ["y"],
                "resources": {"requests": {"cpu": "1", "memory": "512Mi"}},
            },
        ],
        init=[
            {"name": "i", "image": "img", "command": ["z"], "resources": {"limits": {"cpu": "4"}}}
        ],
    )
    plan, _ = build_job(RetrievedPodData(pod=p), cfg(tmp_path, partition="debug"), tmp_path / UID)
    # cpu: max(init 4, 1.5 + 1) = 4; memory: 2Gi + 512Mi; one GPU
    assert "--cpus-per-task=4" in plan.options
    assert "--mem=2560M" in plan.options
    assert "--gres=gpu:1" in plan.options
    assert "--partition=debug" in plan.options
    assert f"--output={tmp_path / UID / 'job.out'}" in plan.options
    assert plan.init == ["i"] and plan.containers == ["a", "b"]


def test_flavors_by_annotation_and_by_gpu(tmp_path: Path) -> None:
    c = cfg(
        tmp_path,
        flavors={"gpu": {"flags": ["--qos=gpu"]}, "big": {"flags": ["--mem=200G"]}},
        gpu_flavor="gpu",
        default_flavor="big",
    )
    gpu_pod = pod(
        [
            {
                "name": "a",
                "image": "i",
                "command": ["x"],
                "resources": {"limits": {"nvidia.com/gpu": 2}},
            }
        ]
    )
    assert "--qos=gpu" in build_job(RetrievedPodData(pod=gpu_pod), c, tmp_path / "1")[0].options
    plain = pod([{"name": "a", "image": "i", "command": ["x"]}])
    assert "--mem=200G" in build_job(RetrievedPodData(pod=plain), c, tmp_path / "2")[0].options
    chosen = pod(
        [{"name": "a", "image": "i", "command": ["x"]}],
        annotations={"slurm-job.vk.io/flavor": "gpu"},
    )
    assert "--qos=gpu" in build_job(RetrievedPodData(pod=chosen), c, tmp_path / "3")[0].options
    unknown = pod(
        [{"name": "a", "image": "i", "command": ["x"]}],
        annotations={"slurm-job.vk.io/flavor": "nope"},
    )
    with pytest.raises(BadRequest, match="no flavor 'nope'; this site offers: big, gpu"):
        build_job(RetrievedPodData(pod=unknown), c, tmp_path / "4")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("--time=01:00:00 -p debug", ["--time=01:00:00", "--partition=debug"]),
        ("-t 10 --qos long --exclusive", ["--time=10", "--qos=long", "--exclusive"]),
        ("-t5", ["--time=5"]),
    ],
)
def test_allowed_flags_are_normalised(flags: str, expected: list[str]) -> None:
    from interlink_plugins.slurm.config import DEFAULT_ALLOWED_FLAGS

    assert user_flags(flags, DEFAULT_ALLOWED_FLAGS) == expected


@pytest.mark.parametrize(
    "flags",
    [
        "--uid=0",
        "--wrap='rm -rf /'",
        "-o /etc/passwd",
        "--chdir=/",
        "--export=ALL",
        "--output=/tmp/x",
        "-D /",
        "--time",
        "debug",
        "--time='1\n#SBATCH --uid=0'",
    ],
)
def test_forbidden_or_malformed_flags_are_refused(flags: str) -> None:
    from interlink_plugins.slurm.config import DEFAULT_ALLOWED_FLAGS

    with pytest.raises(BadRequest, match=r"slurm-job\.vk\.io/flags"):
        user_flags(flags, DEFAULT_ALLOWED_FLAGS)


def test_admin_can_allow_more_flags(tmp_path: Path) -> None:
    p = pod(
        [{"name": "a", "image": "i", "command": ["x"]}],
        annotations={"slurm-job.vk.io/flags": "--wrap=hostname"},
    )
    with pytest.raises(BadRequest, match="--wrap is not allowed"):
        build_job(RetrievedPodData(pod=p), cfg(tmp_path), tmp_path / "a")
    plan, _ = build_job(
        RetrievedPodData(pod=p), cfg(tmp_path, allowed_flags=["--wrap"]), tmp_path / "b"
    )
    assert plan.options[-1] == "--wrap=hostname"


def test_apptainer_exec_run_binds_env_and_image_prefix(tmp_path: Path) -> None:
    p = pod(
        [
            {
                "name": "with-cmd",
                "image": "python:3.11",
                "command": ["python", "-c"],
                "args": ["1"],
                "env": [{"name": "MODE", "value": "it's fast"}],
                "workingDir": "/work",
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True}],
            },
            {"name": "entry", "image": "/cvmfs/unpacked.cern.ch/img", "args": ["--serve"]},
            {"name": "url", "image": "oras://reg/img:1", "command": ["true"]},
        ],
        volumes=[{"name": "cfg", "configMap": {"name": "settings"}}],
    )
    data = RetrievedPodData.model_validate(
        {
            "pod": p,
            "container": [
                {
                    "name": "with-cmd",
                    "configMaps": [{"metadata": {"name": "settings"}, "data": {"k": "v"}}],
                }
            ],
        }
    )
    d = tmp_path / UID
    plan, files = build_job(data, cfg(tmp_path), d)
    lines = run_lines(plan.script)
    name, wd, *argv = lines[0]
    assert (name, wd) == ("with-cmd", str(d))
    assert argv == [
        "apptainer",
        "exec",
        "--cleanenv",
        "--containall",
        "--no-home",
        "--env-file",
        str(d / "containers/with-cmd/env"),
        "--bind",
        f"{d / 'volumes/cfg'}:/etc/cfg:ro",
        "--pwd",
        "/work",
        "docker://python:3.11",
        "python",
        "-c",
        "1",
    ]
    assert lines[1][2:] == [
        "apptainer",
        "run",
        "--cleanenv",
        "--containall",
        "--no-home",
        "--env-file",
        str(d / "containers/entry/env"),
        "/cvmfs/unpacked.cern.ch/img",
        "--serve",
    ]
    assert lines[2][-2:] == ["oras://reg/img:1", "true"]
    assert files["containers/with-cmd/env"] == "MODE='it'\"'\"'s fast'\n"
    assert (d / "volumes/cfg/k").read_text() == "v"


def test_singularity_and_enroot_argv(tmp_path: Path) -> None:
    p = pod(
        [
            {
                "name": "a",
                "image": "ubuntu:24.04",
                "command": ["ls"],
                "env": [{"name": "A", "value": "1"}],
            }
        ]
    )
    plan, _ = build_job(
        RetrievedPodData(pod=p), cfg(tmp_path, runtime="singularity"), tmp_path / "s"
    )
    assert run_lines(plan.script)[0][2:4] == ["singularity", "exec"]
    plan, _files = build_job(
        RetrievedPodData(pod=p), cfg(tmp_path, runtime="enroot"), tmp_path / "e"
    )
    assert run_lines(plan.script)[0][2:] == [
        "enroot",
        "start",
        "--rw",
        "--env",
        "A=1",
        "il-e-a",
        "ls",
    ]
    lines = plan.script.splitlines()
    d = tmp_path / "e"
    assert f"enroot import -o {d}/images/a.sqsh docker://ubuntu:24.04 || exit 125" in lines
    assert f"enroot create --force --name il-e-a {d}/images/a.sqsh || exit 125" in lines
    assert "enroot remove -f il-e-a >/dev/null 2>&1" in lines
    assert lines.index("enroot remove -f il-e-a >/dev/null 2>&1") > next(
        i for i, line in enumerate(lines) if line.startswith("il_run a ")
    )


def test_apptainer_refuses_env_names_a_shell_cannot_hold(tmp_path: Path) -> None:
    p = pod(
        [
            {
                "name": "a",
                "image": "i",
                "command": ["x"],
                "env": [{"name": "dotted.name", "value": "1"}],
            }
        ]
    )
    with pytest.raises(BadRequest, match=r"spec.containers\[0\].env: 'dotted.name'"):
        build_job(RetrievedPodData(pod=p), cfg(tmp_path), tmp_path / "x")
    # the host runtime passes it through env(1)
    plan, _ = build_job(RetrievedPodData(pod=p), cfg(tmp_path, runtime="host"), tmp_path / "y")
    assert "dotted.name=1" in run_lines(plan.script)[0]


def test_script_is_valid_bash_and_init_containers_fail_fast(tmp_path: Path) -> None:
    p = pod(
        [
            {"name": "m1", "image": "i", "command": ["true"]},
            {"name": "m2", "image": "i", "command": ["true"]},
        ],
        init=[{"name": "i1", "image": "i", "command": ["true"]}],
    )
    plan, _ = build_job(RetrievedPodData(pod=p), cfg(tmp_path, runtime="host"), tmp_path / "z")
    assert subprocess.run(["bash", "-n"], input=plan.script, text=True).returncode == 0
    body = plan.script.splitlines()
    i1 = next(i for i, line in enumerate(body) if line.startswith("il_run i1"))
    assert body[i1].endswith("|| exit $?")
    assert all(line.endswith(" &") for line in body if line.startswith("il_run m"))


def test_pre_exec_is_off_unless_the_site_allows_it(tmp_path: Path) -> None:
    p = pod(
        [{"name": "a", "image": "i", "command": ["x"]}],
        annotations={"slurm-job.vk.io/pre-exec": "module load cuda"},
    )
    plan, _ = build_job(RetrievedPodData(pod=p), cfg(tmp_path, allow_pre_exec=True), tmp_path / "a")
    assert "module load cuda" in plan.script
    with pytest.raises(BadRequest, match="allow_pre_exec is false"):
        build_job(RetrievedPodData(pod=p), cfg(tmp_path), tmp_path / "b")


def test_parsers() -> None:
    assert parse_sbatch("4242\n") == "4242"
    assert parse_sbatch("77;cluster\n") == "77"
    q = parse_squeue("12|PENDING|Priority|2026-11-25T10:00:00\n13|RUNNING|None|N/A\n")
    assert (q["12"].state, q["12"].reason, q["12"].start) == (
        "PENDING",
        "Priority",
        "2026-11-25T10:00:00",
    )
    assert (q["13"].reason, q["13"].start) == ("", "")
    a = parse_sacct(
        "12|COMPLETED|0:0|2026-11-25T10:00:00|2026-11-25T10:01:00\n"
        "13|CANCELLED by 0|0:15|Unknown|Unknown\n14|FAILED|3:0|a|b\n"
    )
    assert a["12"].exit_code == 0 and a["13"].state == "CANCELLED" and a["13"].signal == 15
    assert a["14"].exit_code == 3
    assert parse_sinfo(
        "n1|64|16000|gpu:a100:4(S:0-1)\nn1|64|16000|gpu:a100:4\nn2|8|1000|(null)\n"
    ) == (72, 17000, 4)
    # OverSubscribe=FORCE:4 runs four jobs per CPU; YES:4 only jobs that ask, NO none
    assert parse_sinfo("vm|64|16000|(null)|FORCE:4\n") == (256, 16000, 0)
    assert parse_sinfo("a|8|100|(null)|YES:4\nb|8|100|(null)|NO\nc|2|100|(null)|FORCE\n") == (
        24,
        300,
        0,
    )
    # a node in two partitions counts once, with the most it can run
    assert parse_sinfo("vm|64|16000|(null)|NO\nvm|64|16000|(null)|FORCE:2\n") == (128, 16000, 0)
