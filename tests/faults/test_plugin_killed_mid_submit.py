"""The SLURM plugin killed with SIGKILL while ``sbatch`` runs for a pod: sbatch outlives it and
submits the job, but the plugin never recorded it. The create the API server retries once the
plugin is back must adopt that job, not submit the pod a second time (the burst test hits this
window only by chance; here it is held open by an sbatch that waits for the test)."""

from __future__ import annotations

import asyncio
import shlex
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.helpers.slurm import SlurmInfo, scancel
from tests.helpers.world import plugin_client, shell_pod, start_plugin, until

pytestmark = pytest.mark.integration


def jobs_in(work_dir: Path) -> list[str]:
    """The jobs SLURM holds whose working directory is ``work_dir``."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i|%Z"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [
        j
        for j, _, w in (line.partition("|") for line in out.stdout.splitlines())
        if w == str(work_dir)
    ]


async def test_a_create_cut_short_by_a_kill_during_sbatch_is_not_submitted_twice(
    slurm: SlurmInfo, tmp_path: Path
) -> None:
    started, go = tmp_path / "sbatch-started", tmp_path / "go"
    wrapper = tmp_path / "slow-sbatch"  # a busy slurmctld: sbatch takes a while to answer
    wrapper.write_text(
        "#!/bin/sh\n"
        f"touch {shlex.quote(str(started))}\n"
        f"while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.1; done\n"
        'exec sbatch "$@"\n'
    )
    wrapper.chmod(0o755)
    config = {"runtime": "host", "partition": slurm.partition, "sbatch": str(wrapper)}
    plugin = start_plugin(tmp_path / "plugin", "slurm", config)
    pod = shell_pod("cut-short", "sleep 2")
    pod_dir = tmp_path / "plugin" / "state" / "jobs" / pod["metadata"]["uid"]
    body = {"pod": pod, "container": [{"name": "main"}]}
    try:
        async with plugin_client(plugin.socket) as http:
            first = asyncio.create_task(http.post("/create", json=body))
            await until(started.exists, timeout=60, what="sbatch started for the pod")
            plugin.proc.send_signal(signal.SIGKILL)
            plugin.proc.wait(30)
            go.touch()  # sbatch, orphaned, goes on and submits
            orphans = await until(lambda: jobs_in(pod_dir), timeout=60, what="the orphan job")
            with pytest.raises(httpx.TransportError):  # the connection died with the plugin
                await first
        plugin = start_plugin(tmp_path / "plugin", "slurm", config)
        async with plugin_client(plugin.socket) as http:
            again = await http.post("/create", json=body)  # the API server's retry
        assert again.status_code == 200, again.text
        assert again.json()["PodJID"] == orphans[0]
        assert jobs_in(pod_dir) == orphans, "the pod was submitted a second time"
    finally:
        for job in jobs_in(pod_dir):
            scancel(job)
        plugin.stop()
