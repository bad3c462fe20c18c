"""Pod → HTCondor submit description, annotation allow-list, job-status mapping and the number
of schedd calls per status cycle, against a fake schedd (no HTCondor pool can run here; the
htcondor bindings are not needed)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from interlink_core.config import build_config
from interlink_core.errors import BackendUnavailable, BadRequest
from interlink_core.models import RetrievedPodData, dump
from interlink_core.store import JobRecord
from interlink_plugins.htcondor.config import HTCondorConfig
from interlink_plugins.htcondor.plugin import HTCondorPlugin
from interlink_plugins.htcondor.schedd import Ad, BindingsSchedd
from interlink_plugins.htcondor.submit import (
    ATTRIBUTES_ANNOTATION,
    POD_DIR_MARK,
    REQUIREMENTS_ANNOTATION,
    build_submit,
)

UID = "5f0c0a3e-1111-2222-3333-444455556666"
HOSTILE = 'x\'; touch /tmp/pwned; echo "$(id)" `uname` $HOME'


class FakeSchedd:
    """Records every call; jobs are ads in ``queue`` / ``past``."""

    def __init__(self) -> None:
        self.queue: dict[int, dict[str, Any]] = {}
        self.past: dict[int, dict[str, Any]] = {}
        self.submitted: list[dict[str, str]] = []
        self.queries: list[str] = []
        self.histories: list[str] = []
        self.removed: list[list[int]] = []
        self.next = 100

    def submit(self, description: dict[str, str]) -> int:
        self.submitted.append(dict(description))
        self.next += 1
        self.queue[self.next] = {"ClusterId": self.next, "ProcId": 0, "JobStatus": 1}
        return self.next

    @staticmethod
    def _match(constraint: str, ads: dict[int, dict[str, Any]]) -> list[Ad]:
        inside = constraint.split("{")[1].split("}")[0] if "{" in constraint else ""
        ids = {int(x) for x in inside.split(",") if x.strip()}
        return [ad for c, ad in ads.items() if c in ids]

    def query(self, constraint: str, projection: list[str]) -> list[Ad]:
        self.queries.append(constraint)
        if constraint != "false":  # ping's liveness query projects only ClusterId
            assert "JobStatus" in projection and "HoldReason" in projection
        return self._match(constraint, self.queue)

    def history(self, constraint: str, projection: list[str]) -> list[Ad]:
        self.histories.append(constraint)
        return self._match(constraint, self.past)

    def remove(self, cluster_ids: list[int]) -> None:
        self.removed.append(list(cluster_ids))
        for c in cluster_ids:
            self.past[c] = {**self.queue.pop(c), "JobStatus": 3}


def cfg(tmp_path: Path, **kw: Any) -> HTCondorConfig:
    return build_config(HTCondorConfig, {"state_dir": str(tmp_path / "st"), **kw})


def pod(
    containers: list[dict[str, Any]] | None = None,
    init: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    uid: str = UID,
) -> dict[str, Any]:
    return {
        "metadata": {"name": "w", "namespace": "ns", "uid": uid, "annotations": annotations or {}},
        "spec": {
            "containers": containers
            or [{"name": "main", "image": "python:3.12", "command": ["python", "-c", "1"]}],
            "initContainers": init or [],
        },
    }


def data(p: dict[str, Any]) -> RetrievedPodData:
    return RetrievedPodData.model_validate({"pod": p, "container": []})


def build(
    tmp_path: Path, p: dict[str, Any], **kw: Any
) -> tuple[Any, dict[str, str], dict[str, str]]:
    d = tmp_path / "jobs" / str(p["metadata"]["uid"])
    d.mkdir(parents=True, exist_ok=True)
    return build_submit(data(p), cfg(tmp_path, **kw), d)


# --- the submit description ---------------------------------------------------------------------


def test_description_shared_filesystem(tmp_path: Path) -> None:
    p = pod(
        containers=[
            {
                "name": "a",
                "image": "img",
                "command": ["sleep", "1"],
                "resources": {"requests": {"cpu": "1500m", "memory": "1Gi"}},
            },
            {
                "name": "b",
                "image": "img",
                "resources": {"limits": {"cpu": "1", "memory": "512Mi", "nvidia.com/gpu": "1"}},
            },
        ],
        init=[{"name": "i", "image": "img", "resources": {"requests": {"cpu": "4"}}}],
        annotations={
            ATTRIBUTES_ANNOTATION: '+ProjectName="my project" +MaxRuntime=3600',
            REQUIREMENTS_ANNOTATION: 'OpSysAndVer == "AlmaLinux9"',
        },
    )
    plan, files, desc = build(tmp_path, p, requirements="HasSingularity")
    d = tmp_path / "jobs" / UID
    assert desc["executable"] == str(d / "job.sh")
    assert "arguments" not in desc
    assert desc["initialdir"] == str(d)
    assert (desc["output"], desc["error"], desc["log"]) == (
        str(d / "job.out"),
        str(d / "job.err"),
        str(d / "job.log"),
    )
    # effective demand: max(init 4, 1.5 + 1) CPUs; 1.5 GiB; one GPU
    assert desc["request_cpus"] == "4"
    assert desc["request_memory"] == "1536"
    assert desc["request_gpus"] == "1"
    assert desc["+ProjectName"] == '"my project"'
    assert desc["+MaxRuntime"] == "3600"
    assert desc["requirements"] == '(HasSingularity) && (OpSysAndVer == "AlmaLinux9")'
    assert desc["should_transfer_files"] == "NO"
    assert desc["getenv"] == "false"
    assert desc["batch_name"] == "ns-w"
    assert plan.init == ["i"] and plan.containers == ["a", "b"]
    # the shared job script: init in order, containers in parallel, per-container files
    script = files["job.sh"]
    assert script.startswith("#!/bin/bash\n") and "il_run i " in script
    assert "sbatch" not in script and "# HTCondor job" in script
    assert f"IL_DIR={d}" in script
    assert "apptainer exec" in script and "apptainer run" in script
    assert set(files) == {"job.sh", "containers/a/env", "containers/b/env", "containers/i/env"}


def test_no_resources_no_requests(tmp_path: Path) -> None:
    _, _, desc = build(tmp_path, pod())
    assert not any(k.startswith("request_") for k in desc)
    assert "requirements" not in desc


def test_description_with_file_transfer(tmp_path: Path) -> None:
    _, files, desc = build(tmp_path, pod(), transfer=True)
    d = tmp_path / "jobs" / UID
    assert desc["executable"] == str(d / "launch.sh")
    assert desc["should_transfer_files"] == "YES"
    assert desc["when_to_transfer_output"] == "ON_EXIT_OR_EVICT"
    assert desc["transfer_output_files"] == "containers"
    # the pod directory is replaced by the job's scratch directory at run time
    assert str(d) not in files["job.sh"] and f"IL_DIR={POD_DIR_MARK}" in files["job.sh"]
    assert str(d) not in files["containers/main/env"]
    assert "_CONDOR_SCRATCH_DIR" in files["launch.sh"]


def test_submit_writes_files_and_transfer_inputs(tmp_path: Path) -> None:
    fake = FakeSchedd()
    plugin = HTCondorPlugin(cfg(tmp_path, transfer=True, runtime="host"), schedd=fake)
    p = pod(containers=[{"name": "main", "command": ["echo", "hi"]}])
    p["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    p["spec"]["containers"][0]["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
    done = asyncio.run(plugin.submit(data(p)))
    assert done.job_id == "101" and done.data["transfer"] is True
    desc = fake.submitted[0]
    d = Path(desc["initialdir"])
    assert set(desc["transfer_input_files"].split(",")) == {"job.sh", "volumes"}
    assert (d / "launch.sh").stat().st_mode & 0o777 == 0o700
    assert "queue" in (d / "job.sub").read_text()


def test_hostile_values_stay_inside_the_quoted_script(tmp_path: Path) -> None:
    p = pod(
        containers=[
            {
                "name": "main",
                "image": "img",
                "command": ["sh", "-c", HOSTILE],
                "env": [{"name": "EVIL", "value": HOSTILE}, {"name": "TOKEN", "value": "s3cret"}],
            }
        ]
    )
    _, files, desc = build(tmp_path, p, runtime="host")
    flat = "\n".join(f"{k} = {v}" for k, v in desc.items())
    assert "s3cret" not in flat and "pwned" not in flat and "EVIL" not in flat
    # the value reaches the shell as one quoted word of the il_run line
    line = next(ln for ln in files["job.sh"].splitlines() if ln.startswith("il_run main "))
    words = shlex.split(line.removesuffix(" &"))
    assert f"EVIL={HOSTILE}" in words and HOSTILE in words


# --- annotations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "needle"),
    [
        ({ATTRIBUTES_ANNOTATION: '+Owner="root"'}, "attribute Owner is not allowed"),
        ({ATTRIBUTES_ANNOTATION: "+AccountingGroup=1"}, "AccountingGroup is not allowed"),
        ({ATTRIBUTES_ANNOTATION: "+ProjectName=Owner"}, "must be a string"),
        ({ATTRIBUTES_ANNOTATION: '+ProjectName="$ENV(HOME)"'}, "'$' is not allowed"),
        ({ATTRIBUTES_ANNOTATION: "executable=/bin/sh"}, "cannot read"),
        ({ATTRIBUTES_ANNOTATION: '+ProjectName="a"\nexecutable=/x'}, "control characters"),
        ({REQUIREMENTS_ANNOTATION: 'Machine == "$ENV(TOKEN)"'}, "'$' is not allowed"),
        ({REQUIREMENTS_ANNOTATION: "true\nexecutable = /bin/sh"}, "control characters"),
        ({REQUIREMENTS_ANNOTATION: "(Memory > 1"}, "unbalanced"),
    ],
)
def test_annotation_refused(tmp_path: Path, annotations: dict[str, str], needle: str) -> None:
    with pytest.raises(BadRequest) as err:
        build(tmp_path, pod(annotations=annotations))
    assert err.value.status_code == 400
    assert needle in err.value.message
    assert next(iter(annotations)) in err.value.message


def test_refusal_through_the_plugin_is_a_400_and_cleans_up(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from interlink_core.sdk import make_plugin_app

    fake = FakeSchedd()
    plugin = HTCondorPlugin(cfg(tmp_path), schedd=fake)
    with TestClient(make_plugin_app(plugin)) as client:
        r = client.post(
            "/create",
            json={"pod": pod(annotations={ATTRIBUTES_ANNOTATION: '+Owner="x"'}), "container": []},
        )
    assert r.status_code == 400
    assert ATTRIBUTES_ANNOTATION in r.json()["error"]
    assert fake.submitted == [] and not (tmp_path / "st" / "jobs" / UID).exists()


def test_allow_list_is_configurable(tmp_path: Path) -> None:
    ann = {ATTRIBUTES_ANNOTATION: '+accountinggroup="g.u"'}
    _, _, desc = build(tmp_path, pod(annotations=ann), allowed_attributes=["AccountingGroup"])
    assert desc["+AccountingGroup"] == '"g.u"'
    with pytest.raises(BadRequest, match="allow_requirements"):
        build(
            tmp_path, pod(annotations={REQUIREMENTS_ANNOTATION: "true"}), allow_requirements=False
        )


def test_slurm_annotations_are_ignored(tmp_path: Path) -> None:
    ann = {"slurm-job.vk.io/flags": "--uid=0", "slurm-job.vk.io/pre-exec": "touch /x"}
    _, files, _ = build(tmp_path, pod(annotations=ann))
    assert "touch /x" not in files["job.sh"]


# --- states -------------------------------------------------------------------------------------


def record(
    tmp_path: Path, job_id: str = "42", transfer: bool = False, uid: str = "u1"
) -> JobRecord:
    d = tmp_path / "pods" / uid
    d.mkdir(parents=True, exist_ok=True)
    return JobRecord(
        uid=uid,
        namespace="ns",
        name="p",
        job_id=job_id,
        data={
            "dir": str(d),
            "init": [],
            "containers": ["main"],
            "images": {"main": "img"},
            "transfer": transfer,
        },
    )


def write(rec: JobRecord, started: float | None = None, exit_code: int | None = None) -> None:
    d = Path(rec.data["dir"]) / "containers" / "main"
    d.mkdir(parents=True, exist_ok=True)
    if started is not None:
        (d / "started").write_text(f"{started}\n")
    if exit_code is not None:
        (d / "exit").write_text(json.dumps({"exitCode": exit_code, "finishedAt": started or 0}))


T0 = 1_700_000_000


@pytest.mark.parametrize(
    ("ad", "kind", "reason", "code"),
    [
        ({"JobStatus": 1}, "waiting", "Queued: Idle", None),
        (
            {"JobStatus": 1, "LastRejMatchReason": "no match found"},
            "waiting",
            "Queued: no match found",
            None,
        ),
        (
            {"JobStatus": 5, "HoldReason": "Error from slot1: out of disk"},
            "waiting",
            "Queued: Held: Error from slot1: out of disk",
            None,
        ),
        ({"JobStatus": 7}, "waiting", "Queued: Suspended", None),
        ({"JobStatus": 2, "JobCurrentStartDate": T0}, "waiting", "ContainerCreating", None),
        ({"JobStatus": 3, "RemoveReason": "via condor_rm"}, "terminated", "Cancelled", 143),
        ({"JobStatus": 4, "ExitCode": 0}, "terminated", "Completed", 0),
        ({"JobStatus": 4, "ExitCode": 3}, "terminated", "Error", 3),
        ({"JobStatus": 4, "ExitBySignal": True, "ExitSignal": 9}, "terminated", "Error", 137),
    ],
)
def test_state_without_files(
    tmp_path: Path, ad: dict[str, Any], kind: str, reason: str, code: int | None
) -> None:
    plugin = HTCondorPlugin(cfg(tmp_path), schedd=FakeSchedd())
    state = plugin._status(record(tmp_path), {"ClusterId": 42, **ad}).containers[0]["state"]
    assert list(state) == [kind]
    assert state[kind]["reason"] == reason
    if code is not None:
        assert state[kind]["exitCode"] == code


@pytest.mark.parametrize("status", [2, 6])
def test_running_and_transferring_with_started_file(tmp_path: Path, status: int) -> None:
    plugin = HTCondorPlugin(cfg(tmp_path), schedd=FakeSchedd())
    rec = record(tmp_path)
    write(rec, started=T0)
    c = plugin._status(rec, {"ClusterId": 42, "JobStatus": status}).containers[0]
    assert c["state"] == {"running": {"startedAt": "2023-11-14T22:13:20Z"}} and c["ready"]


def test_running_with_file_transfer_uses_job_start(tmp_path: Path) -> None:
    plugin = HTCondorPlugin(cfg(tmp_path), schedd=FakeSchedd())
    rec = record(tmp_path, transfer=True)
    ad = {"ClusterId": 42, "JobStatus": 2, "JobCurrentStartDate": T0}
    assert plugin._status(rec, ad).containers[0]["state"] == {
        "running": {"startedAt": "2023-11-14T22:13:20Z"}
    }


def test_exit_file_wins_over_job_exit_code(tmp_path: Path) -> None:
    plugin = HTCondorPlugin(cfg(tmp_path), schedd=FakeSchedd())
    rec = record(tmp_path)
    write(rec, started=T0, exit_code=7)
    term = plugin._status(rec, {"ClusterId": 42, "JobStatus": 4, "ExitCode": 0}).containers[0]
    assert term["state"]["terminated"]["exitCode"] == 7
    assert term["state"]["terminated"]["containerID"] == "htcondor://42/main"


def test_one_query_per_cycle_history_only_for_departed(tmp_path: Path) -> None:
    fake = FakeSchedd()
    plugin = HTCondorPlugin(cfg(tmp_path), schedd=fake)
    recs = [record(tmp_path, job_id=str(j), uid=f"u{j}") for j in (1, 2, 3)]
    fake.queue[1] = {"ClusterId": 1, "JobStatus": 1}
    fake.queue[2] = {"ClusterId": 2, "JobStatus": 2}
    fake.past[3] = {"ClusterId": 3, "JobStatus": 4, "ExitCode": 0}
    out = asyncio.run(plugin.poll(recs))
    assert fake.queries == ["member(ClusterId, {1, 2, 3})"]
    assert fake.histories == ["member(ClusterId, {3})"]
    assert out[2].containers[0]["state"]["terminated"]["reason"] == "Completed"
    # all in the queue: no history query; the finished pod costs nothing any more
    asyncio.run(plugin.poll(recs))
    assert fake.queries[-1] == "member(ClusterId, {1, 2})" and len(fake.histories) == 1
    # job 2 leaves the queue: history for it alone
    fake.past[2] = {**fake.queue.pop(2), "JobStatus": 4, "ExitCode": 1}
    out = asyncio.run(plugin.poll(recs))
    assert fake.histories[-1] == "member(ClusterId, {2})"
    assert out[1].containers[0]["state"]["terminated"]["exitCode"] == 1
    assert len(fake.queries) == 3 and len(fake.histories) == 2
    # only job 1 is open now
    asyncio.run(plugin.poll(recs))
    assert fake.queries[-1] == "member(ClusterId, {1})" and len(fake.histories) == 2


class RunningSchedd(FakeSchedd):
    """A fake schedd that runs each job: its executable on this host, in its ``initialdir``,
    into its ``output``/``error`` files; a job that ended moves to the history."""

    def __init__(self) -> None:
        super().__init__()
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def submit(self, description: dict[str, str]) -> int:
        cluster = super().submit(description)
        with open(description["output"], "wb") as out, open(description["error"], "wb") as err:
            self.procs[cluster] = subprocess.Popen(
                [description["executable"]], cwd=description["initialdir"], stdout=out, stderr=err
            )
        self.queue[cluster]["JobStatus"] = 2
        return cluster

    def query(self, constraint: str, projection: list[str]) -> list[Ad]:
        for cluster, proc in self.procs.items():
            code = proc.poll()
            if code is not None and cluster in self.queue:
                self.past[cluster] = {**self.queue.pop(cluster), "JobStatus": 4, "ExitCode": code}
        return super().query(constraint, projection)


def stamp_time(stamp: str) -> float:
    main, _, frac = stamp.rstrip("Z").partition(".")
    t = datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return t + float(f"0.{frac or 0}")


def container_state(resp: Any) -> dict[str, Any]:
    """The state of the first container of the one pod in a /status answer."""
    return dict(resp.json()[0]["containers"][0]["state"])


def test_logs_of_a_job_through_the_plugin(tmp_path: Path) -> None:
    """``/getLogs`` answers from the files the job script writes (host runtime, run by the
    fake schedd): whole, tail, timestamps, a time cut, follow of an ended container."""
    from fastapi.testclient import TestClient

    from interlink_core.sdk import make_plugin_app

    schedd = RunningSchedd()
    config = cfg(tmp_path, runtime="host", work_dir=str(tmp_path / "jobs"))
    plugin = HTCondorPlugin(config, schedd=schedd)
    script = "echo one; echo two >&2; sleep 3; echo three"
    p = pod(containers=[{"name": "main", "image": "none", "command": ["sh", "-c", script]}])

    try:
        with TestClient(make_plugin_app(plugin)) as client:

            def logs(container: str = "main", **opts: Any) -> Any:
                meta = {"Namespace": "ns", "PodUID": UID, "PodName": "w"}
                body = {**meta, "ContainerName": container, "Opts": opts}
                return client.request("GET", "/getLogs", json=body)

            assert client.post("/create", json={"pod": p, "container": []}).status_code == 200
            deadline = time.monotonic() + 30
            while "terminated" not in container_state(client.request("GET", "/status", json=[p])):
                assert time.monotonic() < deadline, "the job never ended"
                time.sleep(0.1)
            assert logs().text == "one\ntwo\nthree\n"
            assert logs(Tail=1).text == "three\n"
            stamped = [line.split(" ", 1) for line in logs(Timestamps=True).text.splitlines()]
            assert [text for _, text in stamped] == ["one", "two", "three"]
            two, three = stamp_time(stamped[1][0]), stamp_time(stamped[2][0])
            assert three - two > 2.5
            cut = datetime.fromtimestamp(math.floor((two + three) / 2), UTC)
            assert logs(SinceTime=cut.strftime("%Y-%m-%dT%H:%M:%SZ")).text == "three\n"
            assert logs(Follow=True).text == "one\ntwo\nthree\n"  # it ended: so does the stream
            missing = logs("nope")
            assert missing.status_code == 404 and "nope" in missing.json()["error"]
            assert logs(Previous=True).status_code == 400
    finally:
        for proc in schedd.procs.values():
            proc.kill()
            proc.wait()


def test_unknown_job(tmp_path: Path) -> None:
    fake = FakeSchedd()
    plugin = HTCondorPlugin(cfg(tmp_path), schedd=fake)
    out = asyncio.run(plugin.poll([record(tmp_path, job_id="9")]))
    assert out[0].containers[0]["state"]["waiting"]["reason"] == "JobStateUnknown"


def test_delete_removes_the_job_and_its_directory(tmp_path: Path) -> None:
    fake = FakeSchedd()
    plugin = HTCondorPlugin(cfg(tmp_path), schedd=fake)
    done = asyncio.run(plugin.submit(data(pod())))
    rec = JobRecord(uid=UID, namespace="ns", name="w", job_id=done.job_id, data=done.data)
    assert Path(done.data["dir"]).is_dir()
    asyncio.run(plugin.cancel(rec, pod()))
    assert fake.removed == [[int(done.job_id)]]
    assert not Path(done.data["dir"]).exists()


def test_delete_of_a_finished_job_does_not_remove(tmp_path: Path) -> None:
    fake = FakeSchedd()
    plugin = HTCondorPlugin(cfg(tmp_path), schedd=fake)
    rec = record(tmp_path, job_id="5")
    fake.past[5] = {"ClusterId": 5, "JobStatus": 4, "ExitCode": 0}
    asyncio.run(plugin.cancel(rec, {}))
    assert fake.removed == []


FAKE_BINDINGS = """
class Schedd:
    def query(self, constraint, projection):
        return []
"""

LAZY_PROBE = """
import sys
from interlink_core.config import build_config
from interlink_core.sdk import discover_plugins
cls = discover_plugins()["htcondor"]()
from interlink_plugins.htcondor.config import HTCondorConfig
plugin = cls(build_config(HTCondorConfig, {"state_dir": sys.argv[1]}))
print("after construction:", "htcondor2" in sys.modules)
plugin.schedd.query("false", ["ClusterId"])
print("after the first schedd call:", "htcondor2" in sys.modules)
"""


def test_entry_point_and_bindings_are_lazy(tmp_path: Path) -> None:
    """Loading the backend and building the plugin leave the ``htcondor2`` bindings unimported
    (here a stand-in module that can be imported); the first schedd call imports them."""
    (tmp_path / "htcondor2.py").write_text(FAKE_BINDINGS)
    out = subprocess.run(
        [sys.executable, "-c", LAZY_PROBE, str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "after construction: False",
        "after the first schedd call: True",
    ]


def test_missing_bindings_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "htcondor2", None)  # import htcondor2 fails
    with pytest.raises(BackendUnavailable) as err:
        BindingsSchedd()
    assert "pip install 'interlink[htcondor]'" in err.value.message


def test_ping_reports_capacity(tmp_path: Path) -> None:
    plugin = HTCondorPlugin(cfg(tmp_path, cpu="64", memory="128Gi", gpus=2), schedd=FakeSchedd())
    answer = asyncio.run(plugin.ping())
    assert answer.status == "ok" and answer.resources is not None
    assert dump(answer)["resources"]["accelerators"] == [
        {"resourceType": "nvidia.com/gpu", "available": "2"}
    ]


def test_volumes_of_a_running_job_cannot_be_updated_501(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from interlink_core.sdk import make_plugin_app

    plugin = HTCondorPlugin(cfg(tmp_path), schedd=FakeSchedd())
    with TestClient(make_plugin_app(plugin)) as client:
        assert client.post("/create", json={"pod": pod(), "container": []}).status_code == 200
        r = client.post("/updateVolumes", json={"pod": pod(), "container": []})
        assert r.status_code == 501
        assert "cannot update the volumes of a running pod" in r.json()["error"]
        other = {**pod(), "metadata": {**pod()["metadata"], "uid": "unknown-uid"}}
        assert client.post("/updateVolumes", json={"pod": other}).status_code == 404
