"""``shared_filesystem: false``: the job Comment encoding, the log records of the job's output
and their splitting, the script's checks (the job script itself runs here under bash, without
SLURM; the integration tests run it as a real job)."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re
import shlex
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from interlink_core.config import build_config
from interlink_core.errors import BadRequest, ConfigError, Unsupported
from interlink_core.models import RetrievedPodData
from interlink_core.store import JobRecord
from interlink_plugins.slurm.commands import JobState, parse_node_addr, parse_sacct, parse_squeue
from interlink_plugins.slurm.plugin import SlurmPlugin, SlurmPluginConfig
from interlink_plugins.slurm.scratch import (
    COMMENT_MAX,
    MAX_CONTAINERS,
    PIECE,
    ContainerReport,
    LogDemux,
    decode_comment,
    encode_comment,
    split_records,
)
from interlink_plugins.slurm.script import build_job

UID = "5f0c0a3e-1111-2222-3333-444455556666"
T0 = 1_700_000_000


def cfg(tmp_path: Path, **kw: Any) -> SlurmPluginConfig:
    settings = {"state_dir": str(tmp_path / "st"), "shared_filesystem": False, **kw}
    return build_config(SlurmPluginConfig, settings)


def pod(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "w", "namespace": "ns", "uid": UID, "annotations": {}},
        "spec": {"containers": containers, **spec},
    }


# --- the Comment --------------------------------------------------------------------------------


def test_comment_round_trip() -> None:
    reports = [
        ContainerReport(T0 + 0.0, T0 + 2.0, 0),
        ContainerReport(T0 + 3.0),
        ContainerReport(),
        ContainerReport(T0 + 3.0, T0 + 9.0, 137),
    ]
    text = encode_comment(T0, reports)
    assert text == "il1:1700000000:0,2,0;3;;3,9,137"
    decoded = decode_comment(text, ["a", "b", "c", "d"])
    assert decoded == {"a": reports[0], "b": reports[1], "d": reports[3]}


@pytest.mark.parametrize(
    "text",
    ["", "(null)", "a user's comment", "il2:1:0", "il1:x:0", "il1:", "il1:5:a,b;1,2"],
)
def test_foreign_or_broken_comments_are_ignored(text: str) -> None:
    assert decode_comment(text, ["a", "b"]) == {}


def test_broken_entries_are_skipped_and_extra_entries_dropped() -> None:
    assert decode_comment("il1:10:x;1,2;5;1,2,3", ["a", "b", "c"]) == {"c": ContainerReport(15.0)}


def test_the_largest_pod_always_fits_slurms_comment_limit() -> None:
    t0 = 9_999_999_999
    worst = [ContainerReport(t0 + 99_999_999, t0 + 99_999_999, 255)] * MAX_CONTAINERS
    assert len(encode_comment(t0, worst)) <= COMMENT_MAX
    assert MAX_CONTAINERS == 45


def test_pods_with_too_many_containers_are_refused(tmp_path: Path) -> None:
    many = [{"name": f"c{i}", "image": "i", "command": ["x"]} for i in range(MAX_CONTAINERS + 1)]
    with pytest.raises(BadRequest, match=f"at most {MAX_CONTAINERS}"):
        build_job(RetrievedPodData(pod=pod(many)), cfg(tmp_path), tmp_path / "p")


# --- the job script, run by bash (no SLURM: scontrol is a stand-in that records its argv) -------


def run_script(tmp_path: Path, p: dict[str, Any], **kw: Any) -> tuple[bytes, list[str]]:
    """Run the scratch job script of ``p``; the job's stdout and the Comments it set."""
    fake = tmp_path / "scontrol"
    calls = tmp_path / "scontrol.calls"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$3" >> {calls}\n')
    fake.chmod(0o755)
    c = cfg(tmp_path, runtime="host", scratch_dir=str(tmp_path / "scr"), scontrol=str(fake), **kw)
    (tmp_path / "p").mkdir()
    plan, files = build_job(RetrievedPodData(pod=p), c, tmp_path / "p")
    # nothing left on this side; the plugin keeps only the Events it writes at submit
    assert set(files) <= {"kube-events"} and list((tmp_path / "p").iterdir()) == []
    assert "/il-job-dir-" not in plan.script  # every placeholder became "$IL_DIR"
    env = {"PATH": os.environ["PATH"], "SLURM_JOB_ID": "42"}
    job = subprocess.run(
        ["bash", "-c", plan.script], env=env, capture_output=True, timeout=60, check=False
    )
    comments = [line.removeprefix("Comment=") for line in calls.read_text().splitlines()]
    return job.stdout, comments


def test_script_reports_every_container_and_removes_its_directory(tmp_path: Path) -> None:
    long_line = "é" * 3000  # 6,000 bytes: sent in pieces, cut inside characters
    p = pod(
        [
            {"name": "a", "image": "i", "command": ["sh", "-c", f"echo {long_line}"]},
            {"name": "b", "image": "i", "command": ["sh", "-c", "sleep 0.2; printf x; exit 3"]},
        ],
        initContainers=[{"name": "i", "image": "i", "command": ["echo", "init"]}],
    )
    out, comments = run_script(tmp_path, p)
    final = decode_comment(comments[-1], ["i", "a", "b"])
    assert {n: r.exit_code for n, r in final.items()} == {"i": 0, "a": 0, "b": 3}
    assert all(r.started is not None and r.finished is not None for r in final.values())
    assert comments[0].endswith(":0;;")  # the init container started, nothing else yet
    assert len(comments) >= 7  # 3 starts, 3 ends, 1 final report
    assert max(len(line) for line in out.splitlines()) <= PIECE + len("@il+a ")
    logs = split_records(out, {})
    assert logs["a"].split(b" ", 3)[3] == long_line.encode() + b"\n"
    assert logs["b"].split(b" ", 3)[2:] == [b"P", b"x\n"]  # partial: no newline in the output
    assert logs["i"].endswith(b" stdout F init\n")
    assert list((tmp_path / "scr").iterdir()) == []


def test_keep_work_dirs_keeps_the_scratch_directory(tmp_path: Path) -> None:
    p = pod([{"name": "a", "image": "i", "command": ["true"]}])
    run_script(tmp_path, p, keep_work_dirs=True)
    [kept] = (tmp_path / "scr").iterdir()
    assert kept.name.startswith(f"interlink-{UID}.")
    assert (kept / "containers/a/exit").exists()


def test_volume_files_keep_their_modes_and_stay_inside(tmp_path: Path) -> None:
    script = "stat -c '%a %n' /v/top /v/sub/deep; cat /v/sub/deep"
    p = pod(
        [
            {
                "name": "a",
                "image": "i",
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "cfg", "mountPath": "/v"}],
            }
        ],
        volumes=[
            {
                "name": "cfg",
                "configMap": {
                    "name": "cm",
                    "defaultMode": 0o640,
                    "items": [
                        {"key": "x", "path": "top"},
                        {"key": "y", "path": "sub/deep", "mode": 0o600},
                    ],
                },
            }
        ],
    )
    data = RetrievedPodData.model_validate(
        {
            "pod": p,
            "container": [
                {
                    "name": "a",
                    "configMaps": [{"metadata": {"name": "cm"}, "data": {"x": "1", "y": "2"}}],
                }
            ],
        }
    )
    (tmp_path / "p").mkdir()
    plan, _ = build_job(
        data, cfg(tmp_path, runtime="host", scratch_dir=str(tmp_path / "s")), tmp_path / "p"
    )
    job = subprocess.run(["bash", "-c", plan.script], capture_output=True, check=True, timeout=60)
    lines = [line.split(b" ", 3)[3] for line in split_records(job.stdout, {})["a"].splitlines()]
    assert lines[0].startswith(b"640 ") and lines[0].endswith(b"/volumes/cfg/top")
    assert lines[1].startswith(b"600 ") and lines[2] == b"2"
    escaping = pod(
        [{"name": "a", "image": "i", "command": ["true"]}],
        volumes=[
            {"name": "cfg", "configMap": {"name": "cm", "items": [{"key": "x", "path": "../../x"}]}}
        ],
    )
    data = RetrievedPodData.model_validate(
        {
            "pod": escaping,
            "container": [
                {"name": "a", "configMaps": [{"metadata": {"name": "cm"}, "data": {"x": "1"}}]}
            ],
        }
    )
    with pytest.raises(BadRequest, match=r"items\[0\].path.*'\.\.'"):
        build_job(data, cfg(tmp_path), tmp_path / "q")
    assert not (tmp_path / "q" / "stage").exists()


def test_script_size_limit_names_the_volumes(tmp_path: Path) -> None:
    p = pod(
        [{"name": "a", "image": "i", "command": ["x"]}],
        volumes=[{"name": "blob", "secret": {"secretName": "s"}}, {"name": "e", "emptyDir": {}}],
    )
    data = RetrievedPodData.model_validate(
        {
            "pod": p,
            "container": [
                {
                    "name": "a",
                    "secrets": [{"metadata": {"name": "s"}, "data": {"k": _random_b64(100_000)}}],
                }
            ],
        }
    )
    with pytest.raises(BadRequest, match=r"spec.volumes: .*max_script_bytes.*'blob' 100,000 bytes"):
        build_job(data, cfg(tmp_path, max_script_bytes=65536), tmp_path / "p")
    assert not (tmp_path / "p" / "stage").exists()
    plan, _ = build_job(data, cfg(tmp_path), tmp_path / "p2")  # fits the default 4 MB
    assert len(plan.script) > 100_000


def _random_b64(n: int) -> str:
    return base64.b64encode(os.urandom(n)).decode()


def test_scratch_options_and_reserved_flags(tmp_path: Path) -> None:
    c = cfg(tmp_path, log_dir=str(tmp_path / "logs"))
    p = pod([{"name": "a", "image": "i", "command": ["x"]}])
    plan, _ = build_job(RetrievedPodData(pod=p), c, tmp_path / "p")
    assert plan.options[1:5] == [
        f"--output={tmp_path / 'logs' / UID}.out",
        f"--error={tmp_path / 'logs' / UID}.err",
        "--open-mode=append",
        f"--chdir={tmp_path / 'logs'}",
    ]
    assert (plan.output, plan.error) == (plan.options[1][9:], plan.options[2][8:])
    p["metadata"]["annotations"] = {"slurm-job.vk.io/flags": "--comment=mine"}
    with pytest.raises(BadRequest, match=r"slurm-job\.vk\.io/flags.*--comment cannot be used"):
        build_job(RetrievedPodData(pod=p), c, tmp_path / "q")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"scratch_dir": "/tmp/$(id)"}, "scratch_dir"),
        ({"scratch_dir": "/tmp/`id`"}, "scratch_dir"),
        ({"scratch_dir": '/tmp/"x'}, "scratch_dir"),
        ({"scratch_dir": "relative/dir"}, "absolute"),
        ({"default_flags": ["--comment=x"]}, "default_flags"),
        ({"flavors": {"f": {"flags": ["-o", "/x"]}}}, "flavors.f.flags"),
        ({"max_script_bytes": 1000}, "max_script_bytes"),
        ({"scontrol": "scontrol; rm"}, "scontrol"),
    ],
)
def test_config_is_checked_at_start(tmp_path: Path, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cfg(tmp_path, **settings)


def test_reserved_flags_are_fine_with_a_shared_filesystem(tmp_path: Path) -> None:
    assert cfg(tmp_path, shared_filesystem=True, default_flags=["--comment=x"]).default_flags


# --- log records --------------------------------------------------------------------------------


def test_records_split_per_container_with_pieces_across_reads() -> None:
    pending: dict[str, bytes] = {}
    first = (
        b"@il:a T stdout F one\n"
        b"@il+b T stdout F lo\n"
        b"stray line from somewhere\n"
        b"@il:a T stdout F two\n"
        b"@il+b ng-\n"
    )
    assert split_records(first, pending) == {"a": b"T stdout F one\nT stdout F two\n"}
    assert pending == {"b": b"T stdout F long-"}
    assert split_records(b"@il:b line\n@il:c T stdout P x\n@il:\n@il:d\n", pending) == {
        "b": b"T stdout F long-line\n",
        "c": b"T stdout P x\n",
    }
    assert pending == {}


def test_demux_appends_only_whole_records_and_rebuilds_after_restart(tmp_path: Path) -> None:
    out = tmp_path / "job.out"
    out.write_bytes(b"@il:a 2024-01-01T00:00:00.0Z stdout F one\n@il:a 2024-01-01T00:00:01.0Z std")
    demux = LogDemux(out, tmp_path / "pod", ["a", "b"])
    demux.update()
    assert not (tmp_path / "pod").exists()  # no pod directory (deleted): nothing written
    (tmp_path / "pod").mkdir()
    demux.update()
    log = tmp_path / "pod/containers/a/0.log"
    assert log.read_bytes() == b"2024-01-01T00:00:00.0Z stdout F one\n"
    assert (tmp_path / "pod/containers/b/0.log").read_bytes() == b""
    with out.open("ab") as fh:
        fh.write(b"out F two\n@il:zz unknown container\n")
    demux.update()
    demux.update()
    assert log.read_bytes().endswith(b"stdout F one\n2024-01-01T00:00:01.0Z stdout F two\n")
    again = LogDemux(out, tmp_path / "pod", ["a", "b"])  # a restarted plugin: same result
    again.update()
    assert log.read_bytes().count(b"\n") == 2


def test_missing_output_file_is_no_log_yet(tmp_path: Path) -> None:
    (tmp_path / "pod").mkdir()
    demux = LogDemux(tmp_path / "nothing.out", tmp_path / "pod", ["a"])
    demux.update()
    assert (tmp_path / "pod/containers/a/0.log").read_bytes() == b""


# --- SLURM's answers and the plugin's states ----------------------------------------------------


def test_parsers_read_the_comment_whole() -> None:
    q = parse_squeue(
        "7|RUNNING|None|2026-01-01T00:00:00|cn01|il1:5:0;1|x\n8|PENDING|Priority|N/A|n/a|(null)\n"
    )
    assert q["7"].comment == "il1:5:0;1|x" and q["8"].comment == ""
    assert (q["7"].host, q["8"].host) == ("cn01", "")
    assert parse_squeue("9|RUNNING|None|N/A\n")["9"].comment == ""  # older format
    node = "NodeName=cn01 Arch=x86_64 CoresPerSocket=1 NodeAddr=10.1.2.3 NodeHostName=cn01 Port=0"
    assert parse_node_addr(node) == "10.1.2.3"
    assert parse_node_addr("") == ""
    a = parse_sacct("7|COMPLETED|0:0|a|b|il1:5:0,1,0\n8|FAILED|1:0|a|b|\n")
    assert a["7"].comment == "il1:5:0,1,0" and a["8"].comment == ""


def record(tmp_path: Path) -> JobRecord:
    return JobRecord(
        uid="u1",
        namespace="ns",
        name="p",
        job_id="42",
        data={
            "dir": str(tmp_path / "pod"),
            "init": ["i"],
            "containers": ["a", "b"],
            "images": {},
            "scratch": {"output": str(tmp_path / "u1.out"), "error": str(tmp_path / "u1.err")},
        },
    )


def plugin(tmp_path: Path) -> SlurmPlugin:
    return SlurmPlugin(cfg(tmp_path))


def test_states_come_from_the_comment(tmp_path: Path) -> None:
    p, r = plugin(tmp_path), record(tmp_path)
    running = JobState("42", "RUNNING", comment="il1:1700000000:0,1,0;2;")
    s = p._status(r, running)
    assert s.initContainers[0]["state"]["terminated"]["exitCode"] == 0
    assert s.initContainers[0]["state"]["terminated"]["containerID"] == "slurm://42/i"
    assert s.containers[0]["state"] == {"running": {"startedAt": "2023-11-14T22:13:22Z"}}
    assert s.containers[1]["state"]["waiting"]["reason"] == "ContainerCreating"
    # accounting without job_comment: the last Comment seen still counts, the job's end fills in
    s = p._status(r, JobState("42", "CANCELLED"))
    assert s.containers[0]["state"]["terminated"]["reason"] == "Cancelled"
    assert s.containers[0]["state"]["terminated"]["startedAt"] == "2023-11-14T22:13:22Z"
    assert s.initContainers[0]["state"]["terminated"]["reason"] == "Completed"


def test_failed_container_in_the_comment(tmp_path: Path) -> None:
    p, r = plugin(tmp_path), record(tmp_path)
    s = p._status(r, JobState("42", "FAILED", exit_code=3, comment="il1:100:0,1,0;1,5,3;1,2,0"))
    a, b = (c["state"]["terminated"] for c in s.containers)
    assert (a["exitCode"], a["reason"]) == (3, "Error")
    assert (b["exitCode"], b["reason"]) == (0, "Completed")
    assert a["finishedAt"] == "1970-01-01T00:01:45Z"


def test_update_volumes_is_unsupported_without_a_shared_filesystem(tmp_path: Path) -> None:
    p, r = plugin(tmp_path), record(tmp_path)
    with pytest.raises(Unsupported, match="shared_filesystem: false"):
        asyncio.run(p.update_volumes(r, RetrievedPodData(pod=pod([]))))


def test_documented_scratch_config_is_valid() -> None:
    doc = Path(__file__).parents[2] / "docs/plugins/slurm.md"
    blocks = re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)
    config = build_config(SlurmPluginConfig, yaml.safe_load(blocks[1]), str(doc))
    assert not config.shared_filesystem and config.scratch_dir == "${TMPDIR:-/tmp}"
    assert config.max_script_bytes == 4 * 2**20


def test_apptainer_paths_point_into_the_job_directory(tmp_path: Path) -> None:
    p = pod(
        [
            {
                "name": "a",
                "image": "python:3.11",
                "command": ["python"],
                "env": [{"name": "MODE", "value": "it's"}],
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True}],
            }
        ],
        volumes=[{"name": "cfg", "secret": {"secretName": "s", "defaultMode": 0o400}}],
    )
    data = RetrievedPodData.model_validate(
        {
            "pod": p,
            "container": [
                {"name": "a", "secrets": [{"metadata": {"name": "s"}, "stringData": {"k": "v"}}]}
            ],
        }
    )
    plan, _ = build_job(data, cfg(tmp_path), tmp_path / "p")
    [run] = [line for line in plan.script.splitlines() if line.startswith("il_run a ")]
    assert '--env-file "$IL_DIR"/containers/a/env' in run
    assert '--bind "$IL_DIR"/volumes/cfg:/etc/cfg:ro' in run
    # the shell turns them into paths below the directory it made, the rest stays literal
    words = subprocess.run(
        ["bash", "-c", f'IL_DIR="/scr/x y"; printf "%s\\n" {run.removesuffix(" &")[7:]}'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert "/scr/x y/volumes/cfg:/etc/cfg:ro" in words and "/scr/x y" in words
    lines = plan.script.splitlines()
    start = next(i for i, line in enumerate(lines) if "<<'IL_PAYLOAD_END'" in line) + 1
    end = lines.index("IL_PAYLOAD_END")
    payload = base64.b64decode("".join(lines[start:end]))
    with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        env = tar.extractfile(members["containers/a/env"])
        assert env is not None and shlex.split(env.read().decode()) == ["MODE=it's"]
    assert members["volumes/cfg/k"].mode == 0o400 and members["containers/a/env"].mode == 0o600
    assert all(m.isdir() or m.isreg() for m in members.values())
    assert all(not m.name.startswith(("/", "..")) for m in members.values())
