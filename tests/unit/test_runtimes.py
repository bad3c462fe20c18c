"""Container runtime command lines: podman for the SLURM and local plugins (checked as argv
here; run for real in tests/integration/test_podman_runtime.py), the host runtime's default
PATH, and the OOM marker read back by status assembly."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from interlink_core.config import build_config
from interlink_core.errors import BadRequest
from interlink_core.jobfiles import container_files, event_lines, exit_reason
from interlink_core.models import RetrievedPodData
from interlink_core.podrunner import EventLog
from interlink_core.store import JobRecord
from interlink_plugins.runtimes import WRAPPER, env_file, run_as
from interlink_plugins.slurm.commands import JobState
from interlink_plugins.slurm.plugin import SlurmPlugin, SlurmPluginConfig
from interlink_plugins.slurm.script import build_job, record_data

UID = "5f0c0a3e-1111-2222-3333-444455556666"
STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def pod(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "w", "namespace": "ns", "uid": UID},
        "spec": {"containers": containers, "restartPolicy": "Never", **spec},
    }


def job(tmp_path: Path, p: dict[str, Any], **kw: Any) -> tuple[list[list[str]], dict[str, str]]:
    """The il_run argv of each container of the pod's job (after il_run NAME WORKDIR), and the
    files written next to the script."""
    cfg = build_config(SlurmPluginConfig, {"state_dir": str(tmp_path), **kw})
    plan, files = build_job(RetrievedPodData(pod=p), cfg, tmp_path / UID)
    body = plan.script[plan.script.index("il_pids=()") :]  # the bash path (no supervision)
    lexer = shlex.shlex(body, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lines: list[list[str]] = []
    current: list[str] | None = None
    for token in lexer:
        if token == "il_run":
            current = []
            lines.append(current)
        elif token in ("&", "||"):
            current = None
        elif current is not None:
            current.append(token)
    lines = [argv[2:] for argv in lines]  # after il_run NAME WORKDIR
    return lines, files


def podman_part(argv: list[str]) -> list[str]:
    """``podman run ...`` out of the wrapper's command line."""
    assert argv[:3] == ["bash", "-c", WRAPPER]
    return argv[4:]


def test_podman_on_slurm_command_env_mounts_limits_user(tmp_path: Path) -> None:
    p = pod(
        [
            {
                "name": "main",
                "image": "localhost/tools:1",
                "command": ["sh", "-c"],
                "args": ["echo $(GREETING) $GREETING"],
                "env": [
                    {"name": "GREETING", "value": "it's here"},
                    {"name": "PEM", "value": "line1\nline2"},
                ],
                "workingDir": "/data",
                "volumeMounts": [
                    {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True},
                    {"name": "scratch", "mountPath": "/data"},
                ],
                "resources": {"limits": {"memory": "100Mi", "cpu": "500m"}},
                "securityContext": {"runAsUser": 1000},
            },
            {"name": "entry", "image": "busybox", "args": ["serve", "--port=1"]},
            {"name": "plain", "image": "docker.io/library/busybox:1.36"},
        ],
        securityContext={"runAsUser": 0, "runAsGroup": 100},
        volumes=[
            {"name": "cfg", "configMap": {"name": "settings", "optional": True}},
            {"name": "scratch", "emptyDir": {}},
        ],
    )
    lines, files = job(tmp_path, p, runtime="podman", podman={"image_prefix": "docker.io/"})
    d = tmp_path / UID
    main = lines[0]
    assert main[4:8] == ["podman", f"il-{UID}-main", f"{d}/containers/main", "2"]
    assert podman_part(main) == [
        "podman",
        f"il-{UID}-main",
        f"{d}/containers/main",
        "2",
        "run",
        "--rm",
        "--replace",
        "--name",
        f"il-{UID}-main",
        "--network=host",
        "--env-file",
        f"{d}/containers/main/env",
        "--env",
        "PEM=line1\nline2",
        "-v",
        f"{d}/volumes/cfg:/etc/cfg:ro",
        "-v",
        f"{d}/volumes/scratch:/data:rw",
        "-w",
        "/data",
        "--memory=104857600",
        "--memory-swap=104857600",
        "--cpus=0.5",
        "--user",
        "1000:100",
        "--entrypoint",
        '["sh", "-c"]',
        "--",
        "localhost/tools:1",
        "echo it's here $GREETING",  # $(VAR) expanded by Kubernetes' rules, $VAR left alone
    ]
    # values literally, one per line (podman's env-file format has no quoting)
    assert files["containers/main/env"] == "GREETING=it's here\n"
    entry = podman_part(lines[1])
    # the pod's user and group, no entrypoint: the image's runs with the pod's args
    assert entry[-6:] == ["--user", "0:100", "--", "docker.io/busybox", "serve", "--port=1"]
    assert "--entrypoint" not in entry
    plain = podman_part(lines[2])
    assert plain[-2:] == ["--", "docker.io/library/busybox:1.36"]
    assert "--memory=104857600" not in plain


def test_podman_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    cases = [
        ({"name": "a", "command": ["x"]}, r"spec.containers\[0\].image: required"),
        (
            {"name": "a", "image": "i", "securityContext": {"runAsUser": "root"}},
            r"spec.containers\[0\].securityContext.runAsUser: 'root' must be a non-negative",
        ),
        (
            {"name": "a", "image": "i", "env": [{"name": "A B", "value": "1"}]},
            r"spec.containers\[0\].env: 'A B' is not a valid",
        ),
        (
            {"name": "a", "image": "i", "volumeMounts": [{"name": "v", "mountPath": "/x:y"}]},
            r"spec.containers\[0\].volumeMounts: '/x:y' cannot be mounted by podman",
        ),
        (
            {"name": "a", "image": "i", "resources": {"limits": {"memory": "0"}}},
            r"spec.containers\[0\].resources.limits.memory: '0' must be positive",
        ),
    ]
    for container, message in cases:
        p = pod([container], volumes=[{"name": "v", "emptyDir": {}}])
        with pytest.raises(BadRequest, match=message):
            job(tmp_path, p, runtime="podman")


def test_run_as_group_needs_user() -> None:
    c = {"name": "a", "securityContext": {"runAsGroup": 5}}
    with pytest.raises(BadRequest, match=r"c.securityContext.runAsGroup: podman needs runAsUser"):
        run_as({"spec": {}}, c, "c")
    assert run_as({"spec": {"securityContext": {"runAsUser": 7}}}, {"name": "a"}, "c") == "7"
    assert run_as({"spec": {}}, {"name": "a"}, "c") is None


def test_env_file_keeps_values_literally() -> None:
    content, multi = env_file({"A": "x=y z", "B": "", "C": "a\r\nb"}, "c")
    assert content == "A=x=y z\nB=\n"
    assert multi == {"C": "a\r\nb"}


def test_host_runtime_on_slurm_has_the_standard_path_unless_the_pod_sets_one(
    tmp_path: Path,
) -> None:
    p = pod(
        [
            {"name": "a", "image": "i", "command": ["printenv", "PATH"]},
            {
                "name": "b",
                "image": "i",
                "command": ["printenv", "PATH"],
                "env": [{"name": "PATH", "value": "/opt/x/bin"}],
            },
        ]
    )
    lines, _ = job(tmp_path, p, runtime="host")
    assert lines[0][:3] == ["env", "-i", f"PATH={STANDARD_PATH}"]
    assert "PATH=/opt/x/bin" in lines[1]
    assert f"PATH={STANDARD_PATH}" not in lines[1]


def test_oom_marker_makes_exit_137_oomkilled(tmp_path: Path) -> None:
    cdir = tmp_path / "pod" / "containers" / "main"
    cdir.mkdir(parents=True)
    (cdir / "started").write_text("100\n")
    (cdir / "exit").write_text(json.dumps({"exitCode": 137, "finishedAt": 101}))
    record = JobRecord(
        uid="u", namespace="ns", name="p", job_id="1", data={"dir": str(tmp_path / "pod")}
    )
    assert container_files(record, "main", "x")[1]["reason"] == "Error"  # type: ignore[index]
    (cdir / "oom").write_text("")
    assert container_files(record, "main", "x")[1]["reason"] == "OOMKilled"  # type: ignore[index]
    pod_dir = tmp_path / "pod"
    assert exit_reason(pod_dir, "main", 1, "Error") == "Error"  # the marker counts with 137 only
    assert exit_reason(pod_dir, "main", 137, "Killed") == "OOMKilled"


def test_slurm_out_of_memory_job_makes_exit_137_oomkilled(tmp_path: Path) -> None:
    """A site whose SLURM enforces memory (task/cgroup): the container's exit file says 137
    and the job ended OUT_OF_MEMORY."""
    plugin = SlurmPlugin(build_config(SlurmPluginConfig, {"state_dir": str(tmp_path / "st")}))
    cdir = tmp_path / "pod" / "containers" / "main"
    cdir.mkdir(parents=True)
    (cdir / "started").write_text("100\n")
    (cdir / "exit").write_text(json.dumps({"exitCode": 137, "finishedAt": 101}))
    record = JobRecord(
        uid="u",
        namespace="ns",
        name="p",
        job_id="42",
        data={"dir": str(tmp_path / "pod"), "containers": ["main"], "init": []},
    )
    status = plugin._status(record, JobState("42", "OUT_OF_MEMORY"))
    term = status.containers[0]["state"]["terminated"]
    assert (term["reason"], term["exitCode"]) == ("OOMKilled", 137)
    other = SlurmPlugin(build_config(SlurmPluginConfig, {"state_dir": str(tmp_path / "st2")}))
    term = other._status(record, JobState("42", "FAILED", exit_code=137)).containers[0]["state"]
    assert term["terminated"]["reason"] == "Error"


def test_var_references_are_expanded_on_every_slurm_runtime(tmp_path: Path) -> None:
    c = {
        "name": "a",
        "image": "img",
        "command": ["echo", "$(WHO)", "$(UNSET)", "$$(WHO)"],
        "env": [{"name": "WHO", "value": "world"}],
    }
    expected = ["echo", "world", "$(UNSET)", "$(WHO)"]  # unknown kept, $$ is a literal $
    for runtime in ("host", "apptainer", "enroot"):
        lines, _ = job(tmp_path / runtime, pod([c]), runtime=runtime)
        assert lines[0][-4:] == expected, runtime
    lines, _ = job(tmp_path / "podman", pod([c]), runtime="podman")
    entrypoint = '["echo", "world", "$(UNSET)", "$(WHO)"]'
    assert lines[0][-4:] == ["--entrypoint", entrypoint, "--", "img"]


def test_enroot_refuses_a_working_dir_it_cannot_set(tmp_path: Path) -> None:
    p = pod([{"name": "a", "image": "img", "command": ["ls"], "workingDir": "/data"}])
    with pytest.raises(BadRequest, match=r"spec.containers\[0\].workingDir: enroot cannot"):
        job(tmp_path, p, runtime="enroot")


def test_host_runtime_says_in_an_event_that_read_only_is_not_enforced(tmp_path: Path) -> None:
    containers = [
        {
            "name": "main",
            "image": "i",
            "command": ["true"],
            "volumeMounts": [
                {"name": "token", "mountPath": "/var/run/token", "readOnly": True},
                {"name": "scratch", "mountPath": "/scratch"},
            ],
        },
        {"name": "side", "image": "i", "command": ["true"]},
    ]
    p = pod(
        containers, volumes=[{"name": "token", "emptyDir": {}}, {"name": "scratch", "emptyDir": {}}]
    )
    cfg = build_config(SlurmPluginConfig, {"state_dir": str(tmp_path), "runtime": "host"})
    plan, files = build_job(RetrievedPodData(pod=p), cfg, tmp_path / UID)
    events = [json.loads(line) for line in files["kube-events"].splitlines()]
    assert [(e["seq"], e["type"], e["reason"], e["container"]) for e in events] == [
        (1, "Warning", "FieldNotEnforced", "main"),  # the image (tests/unit/test_conformance.py)
        (2, "Warning", "FieldNotEnforced", "side"),
        (3, "Warning", "ReadOnlyNotEnforced", "main"),
    ]
    events = events[2:]
    assert events[0]["message"].startswith(
        "spec.containers[0].volumeMounts: readOnly is not enforced by this node's runtime (host:"
    )
    assert "token at /var/run/token" in events[0]["message"]
    assert "scratch" not in events[0]["message"]
    assert record_data(plan, tmp_path / UID)["events"] is True
    # a runtime that enforces it says nothing
    cfg = build_config(SlurmPluginConfig, {"state_dir": str(tmp_path), "runtime": "podman"})
    _, files = build_job(RetrievedPodData(pod=p), cfg, tmp_path / "podman")
    assert "kube-events" not in files


def test_pod_runner_numbers_its_events_after_the_plugins(tmp_path: Path) -> None:
    (tmp_path / "kube-events").write_text(
        event_lines(
            [("main", "ReadOnlyNotEnforced", "m1"), ("side", "ReadOnlyNotEnforced", "m2")], 5.0
        )
    )
    log = EventLog(tmp_path)
    log.add("main", "Unhealthy", "Readiness probe failed")
    seqs = [json.loads(line)["seq"] for line in (tmp_path / "kube-events").read_text().splitlines()]
    assert seqs == [1, 2, 3]


def test_podman_job_removes_its_containers_when_cancelled(tmp_path: Path) -> None:
    p = pod([{"name": "a", "image": "i", "command": ["x"]}, {"name": "b", "image": "i"}])
    cfg = build_config(SlurmPluginConfig, {"state_dir": str(tmp_path), "runtime": "podman"})
    plan, _ = build_job(RetrievedPodData(pod=p), cfg, tmp_path / UID)
    body = plan.script[plan.script.index("il_pids=()") :].splitlines()
    assert body[1] == (
        f"trap 'podman rm --force --ignore --time 2 il-{UID}-a il-{UID}-b >/dev/null 2>&1; "
        "exit 143' TERM INT"
    )
    assert body.index(body[1]) < min(i for i, x in enumerate(body) if x.startswith("il_run "))


def test_pod_runner_job_removes_podman_containers_at_its_end(tmp_path: Path) -> None:
    p = pod([{"name": "a", "image": "i", "command": ["x"]}], restartPolicy="Always")
    cfg = build_config(SlurmPluginConfig, {"state_dir": str(tmp_path), "runtime": "podman"})
    plan, files = build_job(RetrievedPodData(pod=p), cfg, tmp_path / UID)
    assert plan.runner
    assert json.loads(files["spec.json"])["cleanup"] == [
        ["podman", "rm", "--force", "--ignore", "--time", "0", f"il-{UID}-a"]
    ]
