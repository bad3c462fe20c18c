"""Tenants down to the batch job without root: the real SLURM plugin runs as the service user
``il-plugin`` with ``submit_as: sudo`` and the sudo rule of docs/tenants.md, as
tests/world/tenant-users installs it (/etc/sudoers.d/interlink-world, work_dir
/var/spool/interlink-world/jobs); the real API server (root) with a tenant map and tokens from
the real issuer in front of it; the real SLURM of the test world.

test_tenants_batch.py proves the same for the plugin as root (``sbatch --uid``)."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shlex
import shutil
import site as pysite
import stat
import subprocess
import sys
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
    Issuer,
    Service,
    need,
    shell_pod,
    start_api,
    until,
    wait_ready,
)

pytestmark = pytest.mark.integration
PLUGIN_USER = "il-plugin"
RULE = Path("/etc/sudoers.d/interlink-world")
WORK = Path("/var/spool/interlink-world/jobs")  # the path the world's sudo rule names
TENANTS = {
    "tenants": {
        "cluster-a": {"unix_user": "il-tenant-a", "identities": {"oidc": ["vk-cluster-a"]}},
        "cluster-b": {"unix_user": "il-tenant-b", "identities": {"oidc": ["vk-cluster-b"]}},
        # a user the world's rule does not cover (not in il-tenants)
        "cluster-c": {"unix_user": "nobody", "identities": {"oidc": ["vk-cluster-c"]}},
    }
}


@dataclass
class Site:
    """The running edge: API server, the SLURM plugin as ``il-plugin``."""

    api: Service
    plugin: Service


def _users_exist() -> bool:
    try:
        return all(pwd.getpwnam(u) for u in (PLUGIN_USER, "il-tenant-a", "il-tenant-b"))
    except KeyError:
        return False


def _as_plugin_user(argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
    """``argv`` started as ``il-plugin`` (its own group only, umask 027 as the docs say)."""
    env = {**os.environ, "HOME": "/nonexistent", "USER": PLUGIN_USER, "LOGNAME": PLUGIN_USER}
    return subprocess.Popen(
        argv,
        user=PLUGIN_USER,
        group=PLUGIN_USER,
        extra_groups=[],
        umask=0o027,
        cwd="/",
        env=env,
        **kw,
    )


def _interlink_for_plugin_user() -> list[str] | None:
    """An ``interlink`` command line ``il-plugin`` can run: this interpreter, else the
    system's ``python3`` (same version) with this environment's packages."""
    boot = (
        "import runpy, site, sys; "
        f"[site.addsitedir(d) for d in {pysite.getsitepackages()!r}]; "
        "sys.argv[0] = 'interlink'; runpy.run_module('interlink_core.cli', run_name='__main__')"
    )
    for python in (sys.executable, "/usr/bin/python3"):
        argv = [python, "-c", boot]
        try:
            probe = _as_plugin_user(
                [*argv, "--help"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        except OSError:
            continue
        if probe.wait(60) == 0:
            return argv
    return None


def _start_plugin(root: Path, interlink: list[str], config: dict[str, Any]) -> Service:
    """``interlink plugin slurm`` as ``il-plugin`` on a unix socket in ``root`` (its own)."""
    sock = root / "plugin.sock"
    cfg = root / "plugin.yaml"
    cfg.write_text(
        yaml.safe_dump({"state_dir": str(root / "state"), "socket": str(sock), **config})
    )
    log = root / "plugin.log"
    proc = _as_plugin_user(
        [*interlink, "plugin", "slurm", "--config", str(cfg), "--log-level", "warning"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_ready(f"unix://{sock}|/healthz", proc, log)
    return Service(proc=proc, url=f"unix://{sock}", log=log, root=root)


def _fresh_work_dir() -> None:
    """``work_dir`` as the docs lay it out: the plugin's user's, 0711, every parent o+x."""
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(mode=0o711)
    shutil.chown(WORK, PLUGIN_USER, PLUGIN_USER)


@pytest.fixture(scope="module")
def site(slurm: SlurmInfo, issuer: Issuer) -> Iterator[Site]:
    need(os.geteuid() == 0, "starting the plugin as il-plugin needs root")
    need(shutil.which("sudo") is not None, "sudo: run tests/world/system-up")
    need(_users_exist() and RULE.exists(), f"users and {RULE}: run tests/world/tenant-users")
    with contextlib.ExitStack() as undo:
        interlink = _interlink_for_plugin_user()
        if interlink is None:  # the checkout or the interpreter sits below e.g. /root (0700)
            undo.enter_context(_traversable(_python_paths()))
            interlink = _interlink_for_plugin_user()
        need(interlink is not None, f"no Python that {PLUGIN_USER} may run with this environment")
        assert interlink is not None
        yield from _site(interlink, issuer)


def _python_paths() -> list[Path]:
    """What the plugin's Python reads: the interpreter, this environment's packages, the
    checkout (an editable install)."""
    return [
        Path(sys.executable).resolve(),
        Path(sys.base_prefix),
        *(Path(d) for d in pysite.getsitepackages()),
        Path(__file__).resolve().parents[2],
    ]


@contextlib.contextmanager
def _traversable(paths: list[Path]) -> Iterator[None]:
    """Let others traverse (``o+x``: enter, not list) the directories above ``paths`` while
    the test runs, as a site installs a plugin where its user can read it; the modes are put
    back afterwards."""
    changed: list[tuple[Path, int]] = []
    try:
        for path in paths:
            for d in reversed(path.resolve().parents):
                mode = stat.S_IMODE(d.stat().st_mode)
                if not mode & stat.S_IXOTH and d not in dict(changed):
                    d.chmod(mode | stat.S_IXOTH)
                    changed.append((d, mode))
        yield
    finally:
        for d, mode in reversed(changed):
            d.chmod(mode)


def _site(interlink: list[str], issuer: Issuer) -> Iterator[Site]:
    """The API server and the SLURM plugin as ``il-plugin`` through sudo, two tenants."""
    # the plugin's own directory (config, state_dir 0700, socket), outside root's /tmp tree
    root = Path(tempfile.mkdtemp(prefix="il-sudo-", dir="/tmp"))
    shutil.chown(root, PLUGIN_USER, PLUGIN_USER)
    _fresh_work_dir()
    tenants_file = root / "tenants.yaml"
    tenants_file.write_text(yaml.safe_dump(TENANTS))
    config = {
        "runtime": "host",
        "work_dir": str(WORK),
        "tenants_file": str(tenants_file),
        "submit_as": "sudo",
    }
    plugin = _start_plugin(root, interlink, config)
    api = start_api(
        root / "api",
        {
            "plugin": {"url": plugin.url},
            "auth": {"oidc": issuer.oidc_config()},
            "tenants_file": str(tenants_file),
        },
    )
    try:
        yield Site(api=api, plugin=plugin)
    finally:
        api.stop()
        plugin.stop()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(WORK, ignore_errors=True)


@pytest.fixture
async def vk_a(site: Site, issuer: Issuer) -> AsyncIterator[InterLinkClient]:
    async with tenant_client(site.api.url, issuer, "vk-cluster-a") as c:
        yield c


@pytest.fixture
async def vk_b(site: Site, issuer: Issuer) -> AsyncIterator[InterLinkClient]:
    async with tenant_client(site.api.url, issuer, "vk-cluster-b") as c:
        yield c


async def _state(c: InterLinkClient, pod: dict[str, Any], key: str) -> dict[str, Any] | None:
    statuses = await c.status([pod])
    state = (statuses[0].containers[0].get("state") or {}) if statuses else {}
    return state.get(key)


async def _log_with(c: InterLinkClient, pod: dict[str, Any], marker: bytes) -> bytes:
    text = await c.logs(main_log(pod))
    return text if marker in text else b""


def _leftover(pod_dir: Path, user: str) -> None:
    """A pod directory the tenant already owns, with a file the plugin may not remove."""
    pod_dir.mkdir(mode=0o700)
    (pod_dir / "job.sh").write_text("echo stale\n")
    for path in (pod_dir / "job.sh", pod_dir):
        shutil.chown(path, user, user)


def _process_user(pid: int) -> str:
    uid = Path(f"/proc/{pid}").stat().st_uid
    return pwd.getpwuid(uid).pw_name


async def test_jobs_run_as_the_tenants_users_through_sudo(
    site: Site, vk_a: InterLinkClient, vk_b: InterLinkClient
) -> None:
    """The plugin (not root) submits each tenant's job as its user through sudo (taking back
    a leftover directory first); it reads their states and logs; A's job cannot enter B's
    directory; delete cancels through sudo and removes the directory."""
    assert _process_user(site.plugin.proc.pid) == PLUGIN_USER
    pod_b = shell_pod("job", "id -un; echo done-b")
    dir_b = WORK / pod_b["metadata"]["uid"]
    _leftover(dir_b, "il-tenant-b")  # as if a create was killed after the hand-over
    await vk_b.create(PodCreateRequests(pod=pod_b))
    probe = f"id -un; ls {shlex.quote(str(dir_b))} 2>&1; echo ls-rc=$?; echo probed; sleep 300"
    pod_a = shell_pod("job", probe)
    job_a = (await vk_a.create(PodCreateRequests(pod=pod_a))).PodJID
    dir_a = WORK / pod_a["metadata"]["uid"]
    try:
        assert squeue_field(job_a, "%u") == "il-tenant-a"
        await until(lambda: _state(vk_a, pod_a, "running"), 120, "A's pod running")
        done = await until(lambda: _state(vk_b, pod_b, "terminated"), 120, "B's pod ended")
        assert done["exitCode"] == 0, done
        assert await vk_b.logs(main_log(pod_b)) == b"il-tenant-b\ndone-b\n"
        log_a = await until(lambda: _log_with(vk_a, pod_a, b"probed"), 120, "A probed B")
        lines = log_a.decode().splitlines()
        assert lines[0] == "il-tenant-a", log_a
        assert f"ls: cannot open directory '{dir_b}': Permission denied" in lines, log_a
        assert "ls-rc=2" in lines, log_a
        for pod_dir, user in ((dir_a, "il-tenant-a"), (dir_b, "il-tenant-b")):
            info = pod_dir.stat()
            assert pwd.getpwuid(info.st_uid).pw_name == user
            assert grp.getgrgid(info.st_gid).gr_name == PLUGIN_USER
            assert stat.S_IMODE(info.st_mode) == 0o2770
    finally:
        await vk_a.delete(pod_a)
        await vk_b.delete(pod_b)
    assert squeue_field(job_a, "%T") in ("CANCELLED", "")  # the plugin waited for SLURM
    assert not dir_a.exists() and not dir_b.exists()


async def _container(c: InterLinkClient, pod: dict[str, Any]) -> dict[str, Any]:
    statuses = await c.status([pod])
    return dict(statuses[0].containers[0]) if statuses and statuses[0].containers else {}


async def test_probes_hooks_and_restarts_run_in_the_tenants_job_through_sudo(
    site: Site, vk_a: InterLinkClient
) -> None:
    """A pod that needs the pod runner (a postStart hook, a readiness probe, a restart) under
    ``submit_as: sudo``: the runner works in the tenant's job, as the tenant's user."""
    marks = Path(tempfile.mkdtemp(prefix="il-runner-", dir="/tmp"))
    shutil.chown(marks, "il-tenant-a", "il-tenant-a")
    hooked, failed_once = marks / "hooked", marks / "failed-once"
    main = f"test -f {failed_once} || {{ touch {failed_once}; exit 1; }}; sleep 300"
    pod = shell_pod("runner", main)
    pod["spec"]["restartPolicy"] = "OnFailure"
    pod["spec"]["containers"][0].update(
        lifecycle={"postStart": {"exec": {"command": ["sh", "-c", f"id -un > {hooked}"]}}},
        readinessProbe={"exec": {"command": ["test", "-s", str(hooked)]}, "periodSeconds": 1},
    )
    await vk_a.create(PodCreateRequests(pod=pod))
    try:

        async def ready() -> dict[str, Any] | None:
            container = await _container(vk_a, pod)
            return container if container.get("ready") else None

        container = await until(ready, 120, "the restarted container Ready")
        assert container["restartCount"] == 1, container
        assert "running" in container["state"], container
        assert hooked.read_text() == "il-tenant-a\n"  # the hook ran as the tenant
        assert pwd.getpwuid(failed_once.stat().st_uid).pw_name == "il-tenant-a"
    finally:
        await vk_a.delete(pod)
        shutil.rmtree(marks)


async def test_a_tenant_the_sudo_rule_does_not_cover_is_refused_naming_the_rule(
    site: Site, issuer: Issuer
) -> None:
    """``nobody`` is not in the rule's Runas group: ``sudo -n`` fails at once, the create is
    refused with the rule named, and nothing is left behind."""
    async with InterLinkClient(
        site.api.url, token=static_token(issuer.mint(sub="vk-cluster-c")), retry=Retry(attempts=1)
    ) as vk_c:
        pod = shell_pod("c", "true")
        with pytest.raises(RemoteError) as refused:
            await vk_c.create(PodCreateRequests(pod=pod))
    assert refused.value.status_code == 502  # the API server's answer to the plugin's 503
    assert refused.value.message.startswith(
        "the plugin failed: sudo refused to run sbatch as nobody (group nogroup): "
        "sudo: a password is required; the plugin's user needs the sudo rule of docs/tenants.md"
    ), refused.value.message
    assert not (WORK / pod["metadata"]["uid"]).exists()
