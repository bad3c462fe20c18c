"""Tenants kept apart down to the batch job: the real API server with a tenant map and tokens
from the real issuer for two tenants, the real SLURM plugin (as root) and the real SLURM of the
test world, with two Unix users (tests/world/tenant-users).

Cross-tenant status / logs / delete / create through the API are proven refused by
test_api_edge.py (test_tenants_with_same_pod_names_are_isolated); here the map decides who is
who, and the jobs themselves are kept apart."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from interlink_core.client import (
    InterLinkClient,
    RemoteError,
    Retry,
    static_token,
)
from interlink_core.models import PodCreateRequests
from tests.helpers.slurm import SlurmInfo, squeue_field
from tests.helpers.tenants import main_log, tenant_client
from tests.helpers.world import (
    REPO,
    Issuer,
    Service,
    need,
    shell_pod,
    start_api,
    start_plugin,
    until,
)

pytestmark = pytest.mark.integration
USERS = {"cluster-a": "il-tenant-a", "cluster-b": "il-tenant-b"}
TENANTS = {
    "tenants": {
        "cluster-a": {
            "unix_user": "il-tenant-a",
            "identities": {"oidc": ["vk-cluster-a"]},
            "slurm": {"accounts": ["af-a", "af-shared"]},
        },
        "cluster-b": {
            "unix_user": "il-tenant-b",
            "identities": {"oidc": ["vk-cluster-b"]},
            "slurm": {"accounts": ["af-b"]},
            "quota": {"max_cpus": 4},
        },
    }
}


@dataclass
class Site:
    """The running edge: API server, SLURM plugin, the jobs' work directory."""

    api: Service
    plugin: Service
    work: Path


def _users_exist() -> bool:
    try:
        return all(pwd.getpwnam(u) for u in USERS.values())
    except KeyError:
        return False


@pytest.fixture(scope="module")
def site(
    slurm: SlurmInfo, issuer: Issuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    need(os.geteuid() == 0, "the SLURM plugin submits as the tenants' users only as root")
    need(_users_exist(), f"Unix users {sorted(USERS.values())}: run tests/world/tenant-users")
    root = tmp_path_factory.mktemp("tenants")
    tenants_file = root / "tenants.yaml"
    tenants_file.write_text(yaml.safe_dump(TENANTS))
    # the jobs' directories: outside pytest's owner-only tree, so the tenants can reach them
    work = Path(tempfile.mkdtemp(prefix="il-tenants-", dir="/tmp"))
    work.chmod(0o711)
    plugin = start_plugin(
        root / "plugin",
        "slurm",
        {
            "runtime": "host",
            "work_dir": str(work / "jobs"),
            "tenants_file": str(tenants_file),
            "host_path_prefixes": [str(work / "shared")],
        },
    )
    api = start_api(
        root / "api",
        {
            "plugin": {"url": plugin.url},
            "auth": {"oidc": issuer.oidc_config()},
            "tenants_file": str(tenants_file),
        },
    )
    try:
        yield Site(api=api, plugin=plugin, work=work / "jobs")
    finally:
        api.stop()
        plugin.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
async def vk_a(site: Site, issuer: Issuer) -> AsyncIterator[InterLinkClient]:
    async with tenant_client(site.api.url, issuer, "vk-cluster-a") as c:
        yield c


@pytest.fixture
async def vk_b(site: Site, issuer: Issuer) -> AsyncIterator[InterLinkClient]:
    async with tenant_client(site.api.url, issuer, "vk-cluster-b") as c:
        yield c


async def running(c: InterLinkClient, pod: dict[str, Any]) -> bool:
    statuses = await c.status([pod])
    return bool(statuses) and "running" in (statuses[0].containers[0].get("state") or {})


async def test_same_names_run_as_their_own_users_and_cannot_touch_each_other(
    site: Site, vk_a: InterLinkClient, vk_b: InterLinkClient
) -> None:
    """Both tenants run a pod default/job; each job is its tenant's user, in a directory only
    that user may enter; from inside A's job, B's directory and B's job are out of reach."""
    pod_b = shell_pod("job", "id -un; sleep 300")
    job_b = (await vk_b.create(PodCreateRequests(pod=pod_b))).PodJID
    dir_b = site.work / pod_b["metadata"]["uid"]
    probe = (
        f"id -un; ls {shlex.quote(str(dir_b))} 2>&1; echo ls-rc=$?; "
        f"scancel {shlex.quote(job_b)} 2>&1; echo scancel-rc=$?; echo probed; sleep 300"
    )
    pod_a = shell_pod("job", probe)
    job_a = (await vk_a.create(PodCreateRequests(pod=pod_a))).PodJID
    try:
        assert job_a != job_b
        await until(lambda: running(vk_a, pod_a), 120, "A's pod running")
        await until(lambda: running(vk_b, pod_b), 120, "B's pod running")
        log_a = await until(
            lambda: _log_with(vk_a, pod_a, b"probed"), 120, "A's job probed B's files and job"
        )
        lines = log_a.decode().splitlines()
        assert lines[0] == "il-tenant-a", log_a
        assert f"ls: cannot open directory '{dir_b}': Permission denied" in lines, log_a
        assert "ls-rc=2" in lines, log_a
        denied = f"scancel: error: Kill job error on job id {job_b}: Access/permission denied"
        assert denied in lines, log_a
        assert "scancel-rc=0" not in lines, log_a
        assert await _log_with(vk_b, pod_b, b"il-tenant-b\n")
        assert squeue_field(job_b, "%T") == "RUNNING"  # B's job survived A's scancel
        assert squeue_field(job_a, "%u") == "il-tenant-a"
        assert squeue_field(job_b, "%u") == "il-tenant-b"
        for pod, user in ((pod_a, "il-tenant-a"), (pod_b, "il-tenant-b")):
            info = (site.work / pod["metadata"]["uid"]).stat()
            assert pwd.getpwuid(info.st_uid).pw_name == user
            assert stat.S_IMODE(info.st_mode) == 0o700
        # the map decides who is who: B's token does not reach A's pod
        with pytest.raises(RemoteError) as refused:
            await vk_b.status([pod_a])
        assert refused.value.status_code == 403
    finally:
        await vk_a.delete(pod_a)
        await vk_b.delete(pod_b)


async def _log_with(c: InterLinkClient, pod: dict[str, Any], marker: bytes) -> bytes:
    text = await c.logs(main_log(pod))
    return text if marker in text else b""


async def test_accounts_are_checked_against_the_tenants_list(
    site: Site, vk_a: InterLinkClient
) -> None:
    """A's pods may charge af-a (its default) or af-shared, not B's af-b."""
    other = shell_pod("charge-b", "sleep 1")
    other["metadata"]["annotations"] = {"slurm-job.vk.io/flags": "--account=af-b"}
    with pytest.raises(RemoteError) as refused:
        await vk_a.create(PodCreateRequests(pod=other))
    assert refused.value.status_code == 400
    assert "--account=af-b is not allowed for tenant 'cluster-a' (allowed: af-a, af-shared)" in (
        refused.value.message
    )
    assert "tenants.cluster-a.slurm.accounts" in refused.value.message
    shared = shell_pod("charge-shared", "sleep 60")
    shared["metadata"]["annotations"] = {"slurm-job.vk.io/flags": "--account=af-shared"}
    plain = shell_pod("charge-default", "sleep 60")
    jobs = [(await vk_a.create(PodCreateRequests(pod=p))).PodJID for p in (shared, plain)]
    try:
        assert [squeue_field(j, "%a") for j in jobs] == ["af-shared", "af-a"]
    finally:
        for p in (shared, plain):
            await vk_a.delete(p)


async def test_host_paths_outside_the_sites_prefixes_are_refused(
    site: Site, vk_a: InterLinkClient
) -> None:
    pod = shell_pod("host", "cat /host/shadow")
    pod["spec"]["volumes"] = [{"name": "etc", "hostPath": {"path": "/etc"}}]
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "etc", "mountPath": "/host"}]
    with pytest.raises(RemoteError) as refused:
        await vk_a.create(PodCreateRequests(pod=pod))
    assert refused.value.status_code == 400
    assert "spec.volumes[0].hostPath.path: '/etc' is not a host path this site shares" in (
        refused.value.message
    )
    assert "host_path_prefixes" in refused.value.message


async def test_a_caller_the_map_does_not_list_is_refused(site: Site, issuer: Issuer) -> None:
    async with InterLinkClient(
        site.api.url, token=static_token(issuer.mint(sub="stranger")), retry=Retry(attempts=1)
    ) as stranger:
        with pytest.raises(RemoteError) as refused:
            await stranger.create(PodCreateRequests(pod=shell_pod("x", "true")))
    assert refused.value.status_code == 403
    assert "oidc caller 'stranger' is not a tenant of this site" in refused.value.message
    assert "tenants.<name>.identities (oidc: [...])" in refused.value.message


async def test_a_pod_over_the_tenants_cpu_quota_is_refused(
    site: Site, vk_b: InterLinkClient
) -> None:
    pod = shell_pod("big", "true")
    pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "8"}}
    with pytest.raises(RemoteError) as refused:
        await vk_b.create(PodCreateRequests(pod=pod))
    assert refused.value.status_code == 429
    assert refused.value.message == (
        "tenant 'cluster-b' holds 0 CPUs and this pod asks for 8, over its quota "
        "(tenants.cluster-b.quota.max_cpus) of 4: delete pods or ask the site admin to raise it"
    )


def test_the_world_script_is_idempotent() -> None:
    """tests/world/tenant-users runs again without changing anything."""
    out = subprocess.run(
        [str(REPO / "tests/world/tenant-users")], capture_output=True, text=True, check=True
    )
    assert "added" not in out.stdout
