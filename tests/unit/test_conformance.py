"""The pod-spec conformance table (interlink_core/conformance.py): the docs page holds exactly
its tables; at submit each plugin refuses what its column refuses (one 400 naming every such
field) and writes one Warning Event per not-enforced field the pod sets, none for defaults."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from interlink_core import conformance
from interlink_core.config import build_config
from interlink_core.errors import BadRequest
from interlink_core.models import RetrievedPodData
from interlink_core.store import JobRecord
from interlink_plugins.htcondor.config import HTCondorConfig
from interlink_plugins.htcondor.plugin import HTCondorPlugin
from interlink_plugins.htcondor.submit import build_submit
from interlink_plugins.local.plugin import LocalConfig, LocalPlugin
from interlink_plugins.slurm.plugin import SlurmPluginConfig
from interlink_plugins.slurm.script import build_job, record_data

UID = "5f0c0a3e-1111-2222-3333-444455556666"
DOC = Path(__file__).resolve().parents[2] / "docs" / "pod-conformance.md"


def pod(containers: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    main = {"name": "main", "image": "python:3.12", "command": ["python", "-c", "1"]}
    return {
        "metadata": {"name": "w", "namespace": "ns", "uid": UID},
        "spec": {"containers": containers or [main], **spec},
    }


def defaulted() -> dict[str, Any]:
    """A pod as the API server stores it: every default it fills in, set."""
    container = {
        "name": "main",
        "image": "python:3.12",
        "command": ["python", "-c", "1"],
        "imagePullPolicy": "IfNotPresent",
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "resources": {},
        "securityContext": {},
        "ports": [{"containerPort": 8786, "hostPort": 8786, "protocol": "TCP"}],
        "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}],
    }
    return pod(
        [container],
        restartPolicy="Always",
        dnsPolicy="ClusterFirst",
        terminationGracePeriodSeconds=30,
        schedulerName="default-scheduler",
        securityContext={},
        enableServiceLinks=True,
        priority=0,
        preemptionPolicy="PreemptLowerPriority",
        serviceAccountName="default",
        hostNetwork=True,  # the API server then sets hostPort = containerPort
        tolerations=[{"key": "virtual-node.interlink/no-schedule", "operator": "Exists"}],
        volumes=[{"name": "data", "emptyDir": {}}],
    )


# --- the docs page ------------------------------------------------------------------------------


def test_the_docs_page_holds_exactly_the_modules_table() -> None:
    text = DOC.read_text()
    start, end = text.find(conformance.BEGIN), text.find(conformance.END)
    assert 0 <= start < end, f"{DOC} lost its conformance table markers"
    assert text[start : end + len(conformance.END)] == conformance.render(), (
        f"{DOC} differs from interlink_core/conformance.py: run "
        "`python -m interlink_core.conformance docs/pod-conformance.md`"
    )


def test_every_row_in_every_column_says_how_or_why() -> None:
    labels = [(row.scope, row.label) for row in conformance.ROWS]
    assert len(labels) == len(set(labels))
    for row in conformance.ROWS:
        for column in conformance.COLUMNS:
            verdict = row.verdict(column)
            assert verdict.kind == "honoured" or verdict.text, (row.label, column)


def test_the_pod_fields_the_issue_names_are_in_the_table() -> None:
    table = conformance.render()
    for name in (
        "hostNetwork", "hostPID", "hostIPC", "dnsPolicy", "dnsConfig", "hostAliases",
        "hostname", "subdomain", "securityContext.runAsUser", "securityContext.fsGroup",
        "securityContext.supplementalGroups", "securityContext.sysctls",
        "securityContext.seccompProfile", "activeDeadlineSeconds",
        "terminationGracePeriodSeconds", "shareProcessNamespace", "readinessGates",
        "ephemeralContainers", "priorityClassName", "runtimeClassName", "overhead",
        "topologySpreadConstraints", "schedulingGates", "os.name", "preemptionPolicy",
        "serviceAccountName", "automountServiceAccountToken", "imagePullSecrets",
        "emptyDir.medium: Memory", "emptyDir.sizeLimit", "persistentVolumeClaim", "nfs", "csi",
        "imagePullPolicy", "stdin", "tty", "terminationMessagePath", "hostPort", "resizePolicy",
        "volumeDevices", "securityContext.privileged", "securityContext.capabilities",
        "securityContext.readOnlyRootFilesystem", "securityContext.allowPrivilegeEscalation",
        "securityContext.runAsNonRoot", "sidecar init container",
    ):  # fmt: skip
        assert name in table, name


# --- the check ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("backend", "runtime"), [("local", "podman"), ("slurm", "podman")])
def test_a_pod_at_its_defaults_gets_no_event(backend: str, runtime: str) -> None:
    assert conformance.check(defaulted(), backend, runtime) == []


def test_on_the_host_runtime_a_defaulted_pod_is_told_only_that_its_image_is_unused() -> None:
    assert conformance.check(defaulted(), "slurm", "host") == [
        (
            "main",
            "FieldNotEnforced",
            "spec.containers[0].image: not enforced on this node (slurm, runtime host): the "
            "command runs on the node's own system, not in the image; ask for a node with a "
            "container runtime if it needs the image's files",
        )
    ]


def test_every_refused_field_is_named_in_one_400() -> None:
    sidecar = {"name": "proxy", "image": "i", "command": ["p"], "restartPolicy": "Always"}
    main = {
        "name": "main",
        "image": "i",
        "command": ["x"],
        "securityContext": {"privileged": True},
    }
    p = pod(
        [main],
        initContainers=[sidecar],
        os={"name": "windows"},
        volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}],
    )
    with pytest.raises(BadRequest) as err:
        conformance.check(p, "slurm", "podman")
    assert str(err.value) == (
        "spec.os.name: not supported on this node (slurm, runtime podman): these nodes run "
        "Linux containers; "
        "spec.volumes[0].persistentVolumeClaim: not supported on this node (slurm, runtime "
        "podman): no volume plugin runs on a batch node; use hostPath for a site file system, "
        "or configMap, secret, emptyDir; "
        "spec.containers[0].securityContext.privileged: not supported on this node (slurm, "
        "runtime podman): containers here never run privileged; "
        "spec.initContainers[0].restartPolicy: not supported on this node (slurm, runtime "
        "podman): init containers run one after another to the end before the containers; "
        "make it a regular container"
    )


def test_each_not_enforced_field_the_pod_sets_gives_one_event() -> None:
    main = {
        "name": "main",
        "image": "i",
        "command": ["x"],
        "stdin": True,
        "resources": {"limits": {"memory": "1Gi"}},  # honoured on podman: no Event
        "securityContext": {"runAsUser": 1000, "readOnlyRootFilesystem": True},
    }
    p = pod([main], activeDeadlineSeconds=600, dnsConfig={"nameservers": ["10.0.0.10"]})
    assert conformance.check(p, "local", "podman") == [
        (
            "",
            "FieldNotEnforced",
            "spec.dnsConfig: not enforced on this node (local, runtime podman): containers use "
            "the node's resolver (its /etc/resolv.conf, as with dnsPolicy Default); use fully "
            "qualified names the node can resolve",
        ),
        (
            "",
            "FieldNotEnforced",
            "spec.activeDeadlineSeconds: not enforced on this node (local, runtime podman): "
            "the pod is not ended when it passes; use the batch system's time limit (SLURM: "
            "--time in the slurm-job.vk.io/flags annotation, where the site allows it)",
        ),
        (
            "main",
            "FieldNotEnforced",
            "spec.containers[0].securityContext.readOnlyRootFilesystem: not enforced on this "
            "node (local, runtime podman): the container's root file system is writable",
        ),
        (
            "main",
            "FieldNotEnforced",
            "spec.containers[0].stdin: not enforced on this node (local, runtime podman): no "
            "standard input or terminal is attached (kubectl attach is not supported)",
        ),
    ]


def test_what_one_runtime_honours_another_reports() -> None:
    main = {"name": "main", "image": "i", "command": ["x"], "resources": {"limits": {"cpu": "2"}}}
    p = pod([main], securityContext={"runAsUser": 1000})
    assert conformance.check(p, "slurm", "podman") == []
    reasons = [m.split(":")[0] for _, _, m in conformance.check(p, "slurm", "apptainer")]
    assert reasons == ["spec.securityContext.runAsUser"]
    reasons = [m.split(":")[0] for _, _, m in conformance.check(p, "local", "host")]
    assert reasons == [
        "spec.securityContext.runAsUser",
        "spec.containers[0].image",
        "spec.containers[0].resources.limits.cpu",
    ]


def test_singularity_is_apptainers_column_and_an_unknown_runtime_is_an_error() -> None:
    assert conformance.column("slurm", "singularity") == "slurm/apptainer"
    with pytest.raises(ValueError, match="no conformance column"):
        conformance.column("local", "enroot")


# --- the plugins at submit ----------------------------------------------------------------------


def test_local_plugin_refuses_before_writing_anything(tmp_path: Path) -> None:
    plugin = LocalPlugin(LocalConfig(state_dir=tmp_path))
    with pytest.raises(BadRequest, match=r"^spec\.os\.name: not supported on this node \(local"):
        asyncio.run(plugin.submit(RetrievedPodData(pod=pod(os={"name": "windows"}))))
    assert not (plugin.settings.pods_path / UID).exists()


def test_slurm_writes_the_events_for_the_plugin_to_read(tmp_path: Path) -> None:
    cfg = build_config(SlurmPluginConfig, {"state_dir": str(tmp_path), "runtime": "podman"})
    p = pod(hostAliases=[{"ip": "10.0.0.1", "hostnames": ["db"]}])
    plan, files = build_job(RetrievedPodData(pod=p), cfg, tmp_path / UID)
    events = [json.loads(line) for line in files["kube-events"].splitlines()]
    assert [(e["seq"], e["type"], e["reason"], e["container"]) for e in events] == [
        (1, "Warning", "FieldNotEnforced", "")
    ]
    assert events[0]["message"].startswith("spec.hostAliases: not enforced on this node (slurm,")
    assert record_data(plan, tmp_path / UID)["events"] is True
    with pytest.raises(BadRequest, match=r"^spec\.containers\[0\]\.volumeDevices: not supp"):
        p["spec"]["containers"][0]["volumeDevices"] = [{"name": "d", "devicePath": "/dev/x"}]
        build_job(RetrievedPodData(pod=p), cfg, tmp_path / "again")


def test_slurm_without_a_shared_filesystem_keeps_its_events_on_the_plugins_side(
    tmp_path: Path,
) -> None:
    cfg = build_config(
        SlurmPluginConfig,
        {
            "state_dir": str(tmp_path),
            "runtime": "podman",
            "shared_filesystem": False,
            "scratch_dir": str(tmp_path / "scr"),
        },
    )
    p = pod(readinessGates=[{"conditionType": "example.com/ready"}])
    (tmp_path / "p").mkdir()
    plan, files = build_job(RetrievedPodData(pod=p), cfg, tmp_path / "p")
    assert list(files) == ["kube-events"] and plan.events
    assert json.loads(files["kube-events"])["message"].startswith("spec.readinessGates: ")


def test_htcondor_checks_the_pod_as_sent(tmp_path: Path) -> None:
    """restartPolicy OnFailure is reported although the job script runs it as Never."""
    cfg = build_config(HTCondorConfig, {"state_dir": str(tmp_path / "st"), "runtime": "host"})
    d = tmp_path / "jobs" / UID
    d.mkdir(parents=True)
    _, files, _ = build_submit(RetrievedPodData(pod=pod(restartPolicy="OnFailure")), cfg, d)
    messages = [json.loads(line)["message"] for line in files["kube-events"].splitlines()]
    assert [m.split(":")[0] for m in messages] == ["spec.restartPolicy", "spec.containers[0].image"]
    assert messages[0] == (
        "spec.restartPolicy: not enforced on this node (htcondor, runtime host): HTCondor jobs "
        "do not restart containers (as Never); use the local or SLURM node"
    )
    with pytest.raises(BadRequest, match=r"^spec\.resourceClaims: not supported"):
        build_submit(RetrievedPodData(pod=pod(resourceClaims=[{"name": "g"}])), cfg, d)


def test_slurm_reports_the_grace_period_only_of_a_pod_it_runs_without_the_pod_runner() -> None:
    main = {"name": "main", "image": "i", "command": ["x"]}
    plain = pod([main], restartPolicy="Never", terminationGracePeriodSeconds=5)
    assert [m for _, _, m in conformance.check(plain, "slurm", "podman")] == [
        "spec.terminationGracePeriodSeconds: not enforced on this node (slurm, runtime podman): "
        "the job gets SIGTERM, then SIGKILL after SLURM's KillWait (podman: the site's "
        "podman.stop_timeout); give the pod a probe or restartPolicy OnFailure to have the "
        "grace period kept"
    ]
    probed = {**main, "readinessProbe": {"exec": {"command": ["true"]}}}
    supervised = pod([probed], restartPolicy="Never", terminationGracePeriodSeconds=5)
    assert conformance.check(supervised, "slurm", "podman") == []
    assert conformance.check(plain, "local", "podman") == []


class OneJobSchedd:
    """A schedd holding the one job submitted to it, idle."""

    def submit(self, description: dict[str, str]) -> int:
        return 7

    def query(self, constraint: str, projection: list[str]) -> list[dict[str, Any]]:
        return [{"ClusterId": 7, "ProcId": 0, "JobStatus": 1}]

    def history(self, constraint: str, projection: list[str]) -> list[dict[str, Any]]:
        return []

    def remove(self, cluster_ids: list[int]) -> None:
        pass


def test_htcondor_sends_the_events_it_wrote_at_submit_with_the_pods_status(
    tmp_path: Path,
) -> None:
    cfg = build_config(HTCondorConfig, {"state_dir": str(tmp_path / "st"), "runtime": "apptainer"})
    plugin = HTCondorPlugin(cfg, schedd=OneJobSchedd())
    p = pod(hostAliases=[{"ip": "10.0.0.1", "hostnames": ["db"]}])
    done = asyncio.run(plugin.submit(RetrievedPodData(pod=p)))
    rec = JobRecord(uid=UID, namespace="ns", name="w", job_id=done.job_id, data=done.data)
    [status] = asyncio.run(plugin.poll([rec]))
    assert [(e["seq"], e["reason"]) for e in status.events or []] == [(1, "FieldNotEnforced")]
    assert (status.events or [{}])[0]["message"].startswith(
        "spec.hostAliases: not enforced on this node (htcondor, runtime apptainer): "
    )
