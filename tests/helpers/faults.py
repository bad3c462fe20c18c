"""Faults made for real on the test world: processes killed with SIGKILL and restarted as an
operator's supervisor would, slurmctld restarted through its pid file, a TCP port blackholed
with iptables, a small tmpfs for a full disk; and what SLURM's accounting says about the jobs
a plugin submitted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers.k8s import K8sInfo, kubectl
from tests.helpers.vk import approve_csr, start_vk_process
from tests.helpers.vk_world import TOKEN, World
from tests.helpers.world import free_port, start_api, start_plugin, stop, until

SLURMCTLD_PID = Path("/run/slurmctld.pid")
SLURMCTLD = "/usr/sbin/slurmctld"  # what tests/world/slurm-up starts it with


class FaultWorld(World):
    """:class:`World` (SLURM plugin, API server, one ``interlink vk`` process) whose parts can
    be killed with SIGKILL and started again with the same configuration, port and state."""

    def __init__(
        self,
        root: Path,
        k8s: K8sInfo,
        partition: str | None,
        auth: dict[str, Any] | None = None,
        edge: dict[str, Any] | None = None,
    ) -> None:
        """``auth``: the API server's ``auth`` section (default: the development token);
        ``edge``: the VK's ``edge`` section without ``url`` (default: that token)."""
        super().__init__(root, k8s, partition)
        self.auth = auth or {"insecure_dev_token": TOKEN}
        self.edge = edge or {"token": TOKEN}
        self.api_port = free_port()

    async def start(self) -> None:
        self.restart("plugin")
        self.restart("api")
        kubectl(self.k8s, "create", "namespace", self.ns)
        self.restart("vk")
        stop_csr = asyncio.Event()
        approver = asyncio.create_task(approve_csr(self.k8s, self.node, stop_csr))
        try:
            await self._until_ready()
        finally:
            stop_csr.set()
            await approver

    def kill(self, part: str) -> None:
        """``kill -9`` of one part (``vk``, ``api`` or ``plugin``) and wait until it is gone."""
        procs: dict[str, subprocess.Popen[Any] | None] = {
            "vk": self.vk,
            "api": self.api.proc if self.api else None,
            "plugin": self.plugin.proc if self.plugin else None,
        }
        proc = procs[part]
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def restart(self, part: str) -> None:
        """Start a part (again, after a kill), as a supervisor would: same configuration,
        port and state."""
        if part == "vk":
            api = f"http://127.0.0.1:{self.api_port}"
            self.vk = start_vk_process(
                self.k8s, self.root, self.node, api, TOKEN, internal_ip=self.ip,
                edge={"url": api, **self.edge},
            )  # fmt: skip
        elif part == "api":
            assert self.plugin is not None
            api_config = {"plugin": {"url": self.plugin.url}, "auth": self.auth}
            self.api = start_api(self.root / "api", api_config, port=self.api_port)
        elif part == "plugin":
            config = {"runtime": "host", "partition": self.partition}
            self.plugin = start_plugin(self.root / "plugin", "slurm", config)
        else:
            raise ValueError(f"unknown part {part!r}")

    def stop(self) -> None:
        """:meth:`World.stop`; a control plane too loaded to answer in time (kubectl timing
        out) still gets every process of the world stopped."""
        try:
            super().stop()
        except subprocess.TimeoutExpired as exc:
            print(f"cleanup: {exc}")
            for svc in (
                self.vk,
                self.api.proc if self.api else None,
                self.plugin.proc if self.plugin else None,
            ):
                if svc is not None:
                    stop(svc)
            for what in (("namespace", self.ns), ("node", self.node)):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    kubectl(self.k8s, "delete", *what, "--wait=false", timeout=120)

    def shell(self, name: str, script: str) -> dict[str, Any]:
        """A pod for this virtual node: one container running ``sh -c script``."""
        return self.manifest(name, ["sh", "-c", script])

    def create(self, *manifests: dict[str, Any]) -> None:
        """``kubectl create`` these pods (one call)."""
        body = {"apiVersion": "v1", "kind": "List", "items": list(manifests)}
        out = kubectl(self.k8s, "create", "-f", "-", input=json.dumps(body), timeout=120)
        assert out.returncode == 0, out.stderr

    async def pod_when(self, name: str, phase: str, timeout: float = 120) -> dict[str, Any]:
        """The pod once its phase is ``phase`` (an AssertionError after ``timeout`` s)."""

        def get() -> dict[str, Any] | None:
            out = kubectl(self.k8s, "get", "pod", name, "-n", self.ns, "-o", "json")
            p = json.loads(out.stdout) if out.returncode == 0 else None
            return p if p and p["status"].get("phase") == phase else None

        found: dict[str, Any] = await until(
            lambda: asyncio.to_thread(get), timeout, f"pod {name} {phase}"
        )
        return found

    def node_condition(self, ctype: str) -> dict[str, Any]:
        """The virtual node's condition of this type (empty if it has none)."""
        out = kubectl(self.k8s, "get", "node", self.node, "-o", "json")
        assert out.returncode == 0, out.stderr
        for c in json.loads(out.stdout)["status"].get("conditions") or []:
            if c["type"] == ctype:
                return dict(c)
        return {}

    def pods(self) -> list[dict[str, Any]]:
        """Every pod of the world's namespace, as Kubernetes has it."""
        out = kubectl(self.k8s, "get", "pods", "-n", self.ns, "-o", "json", timeout=120)
        assert out.returncode == 0, out.stderr
        return list(json.loads(out.stdout)["items"])

    def vk_log(self) -> str:
        return (self.root / "vk.log").read_text(errors="replace")


def restart_slurmctld(timeout: float = 60) -> None:
    """Stop slurmctld (SIGTERM through its pid file, so it saves its state, as a service
    restart does) and start it again with the command tests/world/slurm-up uses."""
    pid = int(SLURMCTLD_PID.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"slurmctld (pid {pid}) did not stop in {timeout}s")
        time.sleep(0.1)
    subprocess.run([SLURMCTLD], check=True, timeout=timeout)
    while subprocess.run(["scontrol", "ping"], capture_output=True, check=False).returncode:
        if time.monotonic() > deadline:
            raise AssertionError(f"slurmctld did not answer `scontrol ping` in {timeout}s")
        time.sleep(0.2)


@dataclass(frozen=True)
class AccountedJob:
    """One job as ``sacct`` reports it."""

    job_id: str
    uid: str  # the pod UID: the plugin runs each job in <jobs dir>/<pod UID>
    state: str  # first word: COMPLETED, FAILED, CANCELLED, ...
    exit_code: int


def accounted_jobs(jobs_dir: Path, since: str) -> list[AccountedJob]:
    """Every job SLURM accounted since ``since`` (``sacct -S``) whose working directory is a
    pod directory under ``jobs_dir``: one line per job submitted, however often."""
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-a", "-S", since, "-o", "JobIDRaw,WorkDir,State,ExitCode"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    jobs = []
    prefix = str(jobs_dir) + "/"
    for line in out.stdout.splitlines():
        job_id, work_dir, state, exit_code = line.split("|")
        if work_dir.startswith(prefix):
            code = int(exit_code.split(":")[0] or 0)
            jobs.append(AccountedJob(job_id, work_dir[len(prefix) :], state.split()[0], code))
    return jobs


@contextlib.contextmanager
def blackholed(port: int) -> Iterator[None]:
    """Packets to TCP ``port`` on loopback dropped for real (an iptables rule, removed on
    exit): connections hang as to a host that went away, nothing refuses them."""
    rule = ["INPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", str(port), "-j", "DROP"]
    subprocess.run(["iptables", "-I", *rule], check=True, timeout=30)
    try:
        yield
    finally:
        subprocess.run(["iptables", "-D", *rule], check=True, timeout=30)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted over ``path`` (created if missing), unmounted on exit."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` with one file (returned) until a write fails."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 65536)
    return filler


def iptables_works() -> bool:
    """Whether this machine lets us (root) add iptables rules."""
    try:
        out = subprocess.run(["iptables", "-L", "INPUT", "-n"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0
