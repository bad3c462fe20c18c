"""A tenant's job owns its pod directory, and the plugin (root) reads its logs and status files
from there: a job that swaps its own files for symlinks must not make the plugin read another
tenant's log or a root-only file for it (same edge as test_tenants_batch.py)."""

from __future__ import annotations

import shlex

import pytest

from interlink_core.client import InterLinkClient
from interlink_core.models import PodCreateRequests
from tests.helpers.tenants import main_log
from tests.helpers.world import shell_pod, until
from tests.integration.test_tenants_batch import (  # noqa: F401 (fixtures)
    Site,
    _log_with,
    running,
    site,
    vk_a,
    vk_b,
)

pytestmark = pytest.mark.integration

SECRET = "b-secret-0451"


async def test_a_job_cannot_point_the_plugin_at_another_tenants_log(
    site: Site,  # noqa: F811
    vk_a: InterLinkClient,  # noqa: F811
    vk_b: InterLinkClient,  # noqa: F811
) -> None:
    pod_b = shell_pod("victim", f"echo {SECRET}; sleep 300")
    await vk_b.create(PodCreateRequests(pod=pod_b))
    log_b = site.work / pod_b["metadata"]["uid"] / "containers" / "main" / "0.log"
    pod_a = shell_pod("thief", "echo before; sleep 300")
    cdir_a = site.work / pod_a["metadata"]["uid"] / "containers" / "main"
    # A's job: its own log replaced by a symlink to B's, its own exit file by one to a
    # root-only file (the job cannot read either itself)
    pod_a["spec"]["containers"][0]["command"] = [
        "sh",
        "-c",
        f"echo before; sleep 2; rm -f {shlex.quote(str(cdir_a / '0.log'))}; "
        f"ln -s {shlex.quote(str(log_b))} {shlex.quote(str(cdir_a / '0.log'))}; "
        f"ln -s /etc/shadow {shlex.quote(str(cdir_a / 'exit'))}; "
        f"touch {shlex.quote(str(cdir_a / 'swapped'))}; sleep 300",
    ]
    await vk_a.create(PodCreateRequests(pod=pod_a))
    try:
        await until(lambda: running(vk_b, pod_b), 120, "B's pod running")
        await until(lambda: _log_with(vk_b, pod_b, SECRET.encode()), 60, "B's log written")
        await until(lambda: (cdir_a / "swapped").exists(), 120, "A's job swapped its files")
        assert (cdir_a / "0.log").is_symlink()
        log_a = await vk_a.logs(main_log(pod_a))
        assert SECRET.encode() not in log_a
        [status] = await vk_a.status([pod_a])
        state = status.containers[0].get("state") or {}
        assert "terminated" not in state, state  # /etc/shadow was not read as an exit file
    finally:
        await vk_a.delete(pod_a)
        await vk_b.delete(pod_b)
