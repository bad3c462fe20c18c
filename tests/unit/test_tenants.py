"""The tenant map and what it decides: who a caller is, what a tenant's SLURM jobs may ask for,
which host paths a pod may mount, how a job becomes the tenant's user (command lines built,
run for real by tests/integration/test_tenants_sudo.py)."""

from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from interlink_core.auth import AuthConfig, Authenticator, Identity
from interlink_core.doctor import Report, check_tenants
from interlink_core.errors import BadRequest, ConfigError, Forbidden
from interlink_core.hostpaths import refuse_host_paths
from interlink_core.models import RetrievedPodData
from interlink_core.store import JobRecord, JobStore
from interlink_core.tenancy import TenantRegistry
from interlink_core.tenants import (
    Quota,
    QuotaExceeded,
    TenantMap,
    UnixAccount,
    load_tenants,
    pod_cpus,
)
from interlink_plugins.htcondor.config import HTCondorConfig
from interlink_plugins.htcondor.submit import build_submit
from interlink_plugins.slurm import plugin as slurm_plugin
from interlink_plugins.slurm.config import DEFAULT_ALLOWED_FLAGS, SlurmConfig
from interlink_plugins.slurm.tenancy import (
    cancel_argv,
    check_choices,
    check_work_dir,
    handover_argv,
    reclaim_argv,
    resolve_tenant,
    share_with_plugin,
    submit_argv,
    sudo_refusal,
    tenant_settings,
    umask_problem,
)

ALICE = UnixAccount(user="alice", group="physics", uid=1001, gid=2001)


def tenant_map(**tenants: Any) -> TenantMap:
    return TenantMap.model_validate({"tenants": tenants})


def pod(flags: str | None = None, volumes: list[Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "namespace": "ns", "uid": "u-1"}
    if flags is not None:
        meta["annotations"] = {"slurm-job.vk.io/flags": flags}
    return {"metadata": meta, "spec": {"containers": [{"name": "c"}], "volumes": volumes or []}}


# --- the map ------------------------------------------------------------------------------------


def test_a_bad_map_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump({"tenants": {"a": {"unix_user": "Not A User!"}}}))
    with pytest.raises(ConfigError) as err:
        load_tenants(path)
    assert "tenants.a.unix_user: 'Not A User!' is not a Unix user or group name" in str(err.value)
    path.write_text(yaml.safe_dump({"tenants": {"a": {"unix_usr": "x"}}}))
    with pytest.raises(ConfigError, match=r"tenants\.a\.unix_usr: unknown key"):
        load_tenants(path)
    assert load_tenants(None) is None


def test_one_identity_belongs_to_one_tenant() -> None:
    with pytest.raises(
        ValueError, match=r"tenants\.b: oidc identity 'alice' is already tenant 'a'"
    ):
        tenant_map(
            a={"unix_user": "a", "identities": {"oidc": ["alice"]}},
            b={"unix_user": "b", "identities": {"oidc": ["alice"]}},
        )


def test_mtls_and_oidc_names_are_different_tenants_unless_the_map_joins_them() -> None:
    apart = tenant_map(alice={"unix_user": "alice"})  # default identity: the OIDC subject
    assert apart.tenant_for("oidc", "alice") == "alice"
    assert apart.tenant_for("mtls", "alice") is None
    joined = tenant_map(
        alice={"unix_user": "alice", "identities": {"oidc": ["alice"], "mtls": ["alice"]}}
    )
    assert joined.tenant_for("mtls", "alice") == "alice"


async def test_without_a_map_a_certificate_tenant_is_marked_mtls() -> None:
    auth = Authenticator(AuthConfig.model_validate({"mtls": {"client_ca": "/ca.pem"}}))
    cert = {"subject": ((("commonName", "alice"),),)}
    who = await auth.identify(None, cert)
    assert (who.tenant, who.subject, who.method) == ("mtls:alice", "alice", "mtls")


def test_the_map_names_the_caller_or_refuses_it_with_the_key_to_add() -> None:
    tenants = tenant_map(
        physics={"unix_user": "alice", "identities": {"oidc": ["alice"], "mtls": ["site-a"]}}
    )
    auth = Authenticator(AuthConfig(insecure_dev_token="dev-token-123"), tenants)
    assert auth._mapped(Identity("alice", "alice", "oidc")).tenant == "physics"
    assert auth._mapped(Identity("mtls:site-a", "c", "mtls")).tenant == "physics"
    with pytest.raises(Forbidden) as err:
        auth._mapped(Identity("mtls:alice", "alice", "mtls"))
    assert err.value.message == (
        "mtls caller 'alice' is not a tenant of this site: list it under "
        "tenants.<name>.identities (mtls: [...]) in the tenant map (tenants_file)"
    )


def test_unknown_unix_users_are_reported() -> None:
    tenants = tenant_map(a={"unix_user": "root"}, b={"unix_user": "no-such-user-here"})
    assert tenants.unix_problems() == [
        "tenants.b: unix_user 'no-such-user-here' does not exist on this host"
    ]


def test_doctor_warns_without_a_map_and_checks_one(tmp_path: Path) -> None:
    from interlink_core.apiserver import ApiServerConfig

    base: dict[str, Any] = {"auth": {"insecure_dev_token": "dev-token-123"}}
    report = Report()
    check_tenants(report, ApiServerConfig.model_validate(base))
    assert report.failures == 0
    assert report.lines[0].startswith("  WARN  no tenant map: every caller is its own tenant")
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"tenants": {"a": {"unix_user": "root"}}}))
    report = Report()
    check_tenants(report, ApiServerConfig.model_validate({**base, "tenants_file": str(path)}))
    assert report.lines == [f"  ok    tenant map {path}: 1 tenant(s)"]


# --- SLURM policy ---------------------------------------------------------------------------


def slurm(tmp_path: Path, **kw: Any) -> SlurmConfig:
    return SlurmConfig(state_dir=tmp_path / "state", **kw)


def test_account_is_not_in_the_default_allow_list_and_pre_exec_is_off(tmp_path: Path) -> None:
    assert "--account" not in DEFAULT_ALLOWED_FLAGS
    assert slurm(tmp_path).allow_pre_exec is False


def test_accounts_qos_and_partitions_come_from_the_tenants_lists(tmp_path: Path) -> None:
    tenants = tenant_map(
        a={"unix_user": "a", "slurm": {"accounts": ["af-a", "af-x"], "qos": ["short"]}}
    )
    t = tenants.tenants["a"]
    cfg = tenant_settings(slurm(tmp_path, account="site"), "a", t)
    assert cfg.account == "af-a"
    check_choices(pod("--account=af-x --qos short --partition=any"), cfg, "a", t)
    with pytest.raises(BadRequest) as err:
        check_choices(pod("-A af-b"), cfg, "a", t)
    assert err.value.message == (
        "metadata.annotations['slurm-job.vk.io/flags']: --account=af-b is not allowed for "
        "tenant 'a' (allowed: af-a, af-x); the site admin may add it to tenants.a.slurm.accounts"
    )
    with pytest.raises(BadRequest, match=r"--qos=long is not allowed .* tenants\.a\.slurm\.qos"):
        check_choices(pod("--qos=long"), cfg, "a", t)


def test_without_accounts_a_tenant_cannot_name_one(tmp_path: Path) -> None:
    t = tenant_map(b={"unix_user": "b"}).tenants["b"]
    cfg = tenant_settings(slurm(tmp_path, account="site", allowed_flags=["--account"]), "b", t)
    assert cfg.account == "site"  # the site's own account stays
    with pytest.raises(BadRequest, match=r"--account=x is not allowed .*\(allowed: none\)"):
        check_choices(pod("--account=x"), cfg, "b", t)


def test_a_tenants_own_flag_list_is_named_in_refusals(tmp_path: Path) -> None:
    t = tenant_map(c={"unix_user": "c", "slurm": {"allowed_flags": ["--time"]}}).tenants["c"]
    cfg = tenant_settings(slurm(tmp_path), "c", t)
    with pytest.raises(BadRequest) as err:
        check_choices(pod("--time=1:00 --gres=gpu:1"), cfg, "c", t)
    assert "option --gres is not allowed here (allowed: --time)" in err.value.message
    assert err.value.message.endswith(
        "ask the site admin to add it to tenants.c.slurm.allowed_flags"
    )


def test_a_create_without_a_known_tenant_is_refused() -> None:
    tenants = tenant_map(a={"unix_user": "a"})
    with pytest.raises(Forbidden, match="names no tenant \\(InterLink-Tenant header\\)"):
        resolve_tenant(tenants, None)
    with pytest.raises(Forbidden) as err:
        resolve_tenant(tenants, "zed")
    assert err.value.message == (
        "tenant 'zed' is not in this site's tenant map: add tenants.zed (with its unix_user) "
        "to the file that the plugin's tenants_file names"
    )


# --- host paths -----------------------------------------------------------------------------


def host(path: str) -> list[Any]:
    return [{"name": "v", "hostPath": {"path": path}}]


def test_host_paths_only_below_the_sites_prefixes(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "data").mkdir(parents=True)
    (shared / "escape").symlink_to("/etc")
    refuse_host_paths(pod(volumes=host(str(shared / "data"))), [shared])
    refuse_host_paths(pod(volumes=host(str(shared))), [shared])
    for bad in ("/etc", f"{shared}/../../etc", f"{shared}/escape", f"{shared}-other"):
        with pytest.raises(BadRequest) as err:
            refuse_host_paths(pod(volumes=host(bad)), [shared])
        assert err.value.message.startswith(
            f"spec.volumes[0].hostPath.path: {bad!r} is not a host path this site shares"
        )
        assert "add a prefix to host_path_prefixes" in err.value.message
    with pytest.raises(BadRequest, match="'data' must be an absolute path"):
        refuse_host_paths(pod(volumes=host("data")), [shared])
    with pytest.raises(BadRequest, match=r"\(allowed prefixes: none\)"):
        refuse_host_paths(pod(volumes=host("/srv")), [])


# --- becoming the tenant ------------------------------------------------------------------------


def test_command_lines_as_root_and_through_sudo(tmp_path: Path) -> None:
    root = slurm(tmp_path)
    assert submit_argv(root, ALICE, ["sbatch", "--parsable", "job.sh"]) == [
        "sbatch", "--uid=1001", "--gid=2001", "--parsable", "job.sh"
    ]  # fmt: skip
    assert cancel_argv(root, ALICE, ["scancel"]) == ["scancel"]
    sudo = slurm(tmp_path, submit_as="sudo", sudo="/usr/bin/sudo")
    assert submit_argv(sudo, ALICE, ["sbatch", "--parsable", "job.sh"]) == [
        "/usr/bin/sudo", "-n", "-u", "alice", "-g", "physics", "--", "sbatch", "--parsable",
        "job.sh",
    ]  # fmt: skip
    assert cancel_argv(sudo, ALICE, ["scancel"]) == [
        "/usr/bin/sudo", "-n", "-u", "alice", "-g", "physics", "--", "scancel"
    ]  # fmt: skip
    assert cancel_argv(sudo, None, ["scancel"]) == ["scancel"]
    assert handover_argv(sudo, ALICE, Path("/jobs/u-1")) == [
        "/usr/bin/sudo", "-n", "chown", "-R", f"1001:{os.getgid()}", "/jobs/u-1"
    ]  # fmt: skip
    assert reclaim_argv(sudo, Path("/jobs/u-1")) == [
        "/usr/bin/sudo", "-n", "chown", "-R", f"{os.getuid()}:{os.getgid()}", "/jobs/u-1"
    ]  # fmt: skip


def test_a_user_the_sudo_rule_does_not_cover_is_named_with_the_rule() -> None:
    assert sudo_refusal(ALICE, "sbatch", "sudo: a password is required\n") == (
        "sudo refused to run sbatch as alice (group physics): sudo: a password is required; "
        "the plugin's user needs the sudo rule of docs/tenants.md (\"Without root: a sudo "
        "rule\") for this user: put alice in the rule's Runas group, or add it there"
    )
    assert sudo_refusal(ALICE, "sbatch", "sbatch: error: invalid partition") is None


def test_a_pod_directory_for_sudo_stays_in_the_plugins_group(tmp_path: Path) -> None:
    (tmp_path / "kube-events").write_text("{}")
    (tmp_path / "kube-events").chmod(0o600)
    share_with_plugin(tmp_path)
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o2770
    assert stat.S_IMODE((tmp_path / "kube-events").stat().st_mode) == 0o640


def test_a_umask_that_keeps_the_plugins_group_out_is_refused() -> None:
    before = os.umask(0o077)
    try:
        assert umask_problem() == (
            "submit_as: sudo: the plugin's umask 0077 keeps its group out of the jobs' logs and "
            "status files (the jobs inherit it): run the plugin with umask 027 (systemd: "
            "UMask=0027)"
        )
        os.umask(0o027)
        assert umask_problem() is None
    finally:
        os.umask(before)


async def test_a_grace_file_the_job_made_a_symlink_does_not_block_the_delete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job owns its directory: a ``grace`` it made a symlink is neither followed nor a
    reason to fail; the runner is still signalled (and takes the pod spec's grace)."""
    pod_dir = tmp_path / "u-1"
    pod_dir.mkdir()
    target = tmp_path / "not-the-jobs"
    target.write_text("kept")
    (pod_dir / "grace").symlink_to(target)
    calls: list[list[str]] = []

    async def fake_run(argv: list[str]) -> tuple[int, str, str]:
        calls.append(argv)
        return 0, "", ""

    monkeypatch.setattr(slurm_plugin, "run", fake_run)
    plugin = slurm_plugin.SlurmPlugin(slurm_plugin.SlurmPluginConfig(state_dir=tmp_path / "st"))

    async def gone(job_ids: list[str]) -> dict[str, Any]:
        return {}

    monkeypatch.setattr(plugin, "_squeue", gone)
    record = JobRecord(uid="u-1", namespace="ns", name="p", job_id="7", data={"dir": str(pod_dir)})
    await plugin._stop_runner(record, pod())
    assert target.read_text() == "kept"
    assert calls == [["scancel", "--batch", "--signal=TERM", "7"]]


def test_the_world_writes_the_documented_sudo_rule() -> None:
    """tests/world/tenant-users installs the rule of docs/tenants.md, names changed only."""
    repo = Path(__file__).resolve().parents[2]
    docs = (repo / "docs/tenants.md").read_text()
    block = docs.split("# /etc/sudoers.d/interlink\n", 1)[1].split("```", 1)[0]
    script = (repo / "tests/world/tenant-users").read_text()
    written = script.split("<<RULE\n", 1)[1].split("\nRULE\n", 1)[0].splitlines()[1:]
    world = {"interlink ": "il-plugin ", "%af-tenants": "%il-tenants"}
    world["/var/spool/interlink/jobs"] = "$spool/jobs"
    for doc_name, world_name in world.items():
        block = block.replace(doc_name, world_name)
    assert [line.replace("\\$", "$") for line in written] == block.strip().splitlines()


def test_a_tenant_map_needs_a_reachable_work_dir_outside_the_state_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="work_dir: with a tenant map"):
        check_work_dir(slurm(tmp_path))
    with pytest.raises(ConfigError, match="is inside state_dir"):
        check_work_dir(slurm(tmp_path, work_dir=tmp_path / "state" / "jobs"))
    # pytest's own tree is owner-only: a directory of /tmp (o+x) instead
    with tempfile.TemporaryDirectory(dir="/tmp") as top:
        closed = Path(top)
        closed.chmod(0o700)
        with pytest.raises(ConfigError) as err:
            check_work_dir(slurm(tmp_path, work_dir=closed / "sub" / "jobs"))
        assert f"work_dir: {closed} (above {closed}/sub/jobs) does not let other" in str(err.value)
        closed.chmod(0o711)
        check_work_dir(slurm(tmp_path, work_dir=closed / "sub" / "jobs"))
        assert stat.S_IMODE((closed / "sub" / "jobs").stat().st_mode) == 0o711


def test_state_files_are_the_owners_only(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "plugin" / "jobs.sqlite")
    registry = TenantRegistry(tmp_path / "api" / "tenants.sqlite")
    try:
        for path in (tmp_path / "plugin" / "jobs.sqlite", tmp_path / "api" / "tenants.sqlite"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "plugin").stat().st_mode) == 0o700
    finally:
        store.close()
        registry.close()


# --- HTCondor ---------------------------------------------------------------------------------


def test_htcondor_jobs_carry_the_tenants_accounting_group(tmp_path: Path) -> None:
    tenants = tenant_map(
        physics={"unix_user": "af-physics", "htcondor_accounting_group": "group_physics.af"},
        plain={"unix_user": "af-plain"},
        bad={"unix_user": "af-bad", "htcondor_accounting_group": "x\nqueue 100"},
    )
    p = pod()
    p["spec"]["containers"] = [{"name": "c", "image": "i", "command": ["true"]}]
    request = RetrievedPodData.model_validate({"pod": p, "container": []})
    settings = HTCondorConfig(state_dir=tmp_path / "st", runtime="host")

    def description(tenant: str | None) -> dict[str, str]:
        found = tenants.tenants[tenant] if tenant else None
        _, _, desc = build_submit(request, settings, tmp_path / "pod", found)
        return desc

    assert description("physics")["accounting_group"] == "group_physics.af"
    assert description("physics")["accounting_group_user"] == "af-physics"
    assert "accounting_group" not in description("plain")
    assert "accounting_group" not in description(None)
    with pytest.raises(BadRequest, match="htcondor_accounting_group 'x\\\\nqueue 100'"):
        description("bad")


# --- quota at the API server ----------------------------------------------------------------


def test_pod_cpus_follow_kubernetes_rule() -> None:
    p: dict[str, Any] = {
        "spec": {
            "initContainers": [{"resources": {"requests": {"cpu": "3"}}}],
            "containers": [
                {"resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "100m"}}},
                {"resources": {"requests": {"cpu": "1"}}},
                {},
            ],
        }
    }
    assert pod_cpus(p) == 3.0
    p["spec"]["initContainers"] = []
    assert pod_cpus(p) == 1.5
    assert pod_cpus({"spec": {"containers": [{"resources": {"limits": {"cpu": "x"}}}]}}) == 0.0


def test_quota_counts_pods_and_cpus_until_they_are_released(tmp_path: Path) -> None:
    registry = TenantRegistry(tmp_path / "tenants.sqlite")
    quota = Quota(max_pods=2, max_cpus=3)
    try:
        registry.claim("u1", "a", "ns", "p1", 2.0, quota)
        registry.claim("u1", "a", "ns", "p1", 2.0, quota)  # the same pod again: not counted
        registry.claim("u9", "b", "ns", "p9", 2.0, quota)  # another tenant: its own count
        with pytest.raises(QuotaExceeded) as err:
            registry.claim("u2", "a", "ns", "p2", 1.5, quota)
        assert err.value.status_code == 429
        assert err.value.message == (
            "tenant 'a' holds 2 CPUs and this pod asks for 1.5, over its quota "
            "(tenants.a.quota.max_cpus) of 3: delete pods or ask the site admin to raise it"
        )
        registry.claim("u2", "a", "ns", "p2", 1.0, quota)
        with pytest.raises(QuotaExceeded) as err:
            registry.claim("u3", "a", "ns", "p3", 0.0, quota)
        assert err.value.message.startswith(
            "tenant 'a' already holds 2 pods, its quota (tenants.a.quota.max_pods) is 2"
        )
        assert registry.lookup(["u3"]) == {}  # a refused create leaves no row
        registry.release("u1")
        assert registry.held("a") == (1, 1.0)
        registry.claim("u3", "a", "ns", "p3", 0.0, quota)
    finally:
        registry.close()
    reopened = TenantRegistry(tmp_path / "tenants.sqlite")  # the counts survive a restart
    try:
        assert reopened.held("a") == (2, 1.0)
    finally:
        reopened.close()


def test_a_registry_from_before_quotas_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "tenants.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE owners (uid TEXT PRIMARY KEY, tenant TEXT NOT NULL, namespace TEXT NOT "
        "NULL, name TEXT NOT NULL, job_id TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL);"
        "INSERT INTO owners VALUES ('u1', 'alice', 'ns', 'p', '17', 0);"
    )
    db.commit()
    db.close()
    registry = TenantRegistry(path)
    try:
        assert registry.lookup(["u1"])["u1"].job_id == "17"
        assert registry.held("alice") == (1, 0.0)
    finally:
        registry.close()
