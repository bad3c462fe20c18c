"""A virtual node as its own processes (for benchmarks and browser tests, which cannot share
an event loop with an in-process VK): the SLURM plugin (``runtime: host``) or the local plugin
behind an API server, and one ``interlink vk`` process with its default settings on the test
world's control plane, in a namespace of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from interlink_vk.config import VK_TAINT_KEY
from tests.helpers.k8s import K8sInfo, kubectl
from tests.helpers.vk import approve_csr, loopback_ip, start_vk_process
from tests.helpers.world import Service, start_api, start_plugin, stop

TOKEN = "bench-slurm-vk-token"


def node_pod(node: str, ns: str, name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    """A run-once pod for virtual node ``node``, one container ``main`` running ``command``
    (``spec``: more pod spec fields, e.g. ``automountServiceAccountToken=False``)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [{"key": VK_TAINT_KEY, "operator": "Exists"}],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "none", "command": command}],
            **spec,
        },
    }


class World:
    """A plugin (SLURM on ``partition``, or ``local`` when ``partition`` is None) and its API
    server (shared by k8s and direct), one VK process, one namespace."""

    def __init__(
        self,
        root: Path,
        k8s: K8sInfo,
        partition: str | None,
        plugin_settings: dict[str, Any] | None = None,
        vk_settings: dict[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.k8s = k8s
        self.partition = partition
        self.plugin_settings = plugin_settings or {}
        self.vk_settings = vk_settings or {}
        self.node = f"bench-{uuid.uuid4().hex[:6]}"
        self.ns = f"bench-{uuid.uuid4().hex[:6]}"
        self.ip = loopback_ip()
        self.plugin: Service | None = None
        self.api: Service | None = None
        self.vk: subprocess.Popen[bytes] | None = None

    @property
    def jobs_dir(self) -> Path:
        return self.root / "plugin" / "state" / "jobs"

    def manifest(self, name: str, command: list[str], **spec: Any) -> dict[str, Any]:
        """A run-once pod for this virtual node (:func:`node_pod`)."""
        return node_pod(self.node, self.ns, name, command, **spec)

    async def start(self) -> None:
        if self.partition is None:
            self.plugin = start_plugin(self.root / "plugin", config=self.plugin_settings)
        else:
            settings = {"runtime": "host", "partition": self.partition, **self.plugin_settings}
            self.plugin = start_plugin(self.root / "plugin", "slurm", settings)
        self.api = start_api(
            self.root / "api",
            {"plugin": {"url": self.plugin.url}, "auth": {"insecure_dev_token": TOKEN}},
        )
        kubectl(self.k8s, "create", "namespace", self.ns)
        # the VK's defaults for everything that is not where to find things
        self.vk = start_vk_process(
            self.k8s,
            self.root,
            self.node,
            self.api.url,
            TOKEN,
            internal_ip=self.ip,
            **self.vk_settings,
        )
        stop_csr = asyncio.Event()
        approver = asyncio.create_task(approve_csr(self.k8s, self.node, stop_csr))
        try:
            await self._until_ready()
        finally:  # the serving certificate is signed: no kubectl every 0.5 s during the runs
            stop_csr.set()
            await approver

    async def _until_ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.vk is not None
            if self.vk.poll() is not None:
                raise RuntimeError("the VK exited:\n" + (self.root / "vk.log").read_text())
            out = kubectl(self.k8s, "get", "node", self.node, "-o", "json")
            if out.returncode == 0:
                conds = json.loads(out.stdout)["status"].get("conditions") or []
                ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection(self.ip, 10250)
                    writer.close()
                    if ready:
                        return
            await asyncio.sleep(0.5)
        raise RuntimeError("the VK never became ready:\n" + (self.root / "vk.log").read_text())

    def pids(self) -> dict[str, int]:
        """Our own processes of the world."""
        assert self.vk is not None and self.api is not None and self.plugin is not None
        return {"vk": self.vk.pid, "api": self.api.proc.pid, "plugin": self.plugin.proc.pid}

    def stop(self) -> None:
        kubectl(self.k8s, "delete", "pods", "--all", "-n", self.ns, "--wait=false")
        if self.vk is not None:
            time.sleep(2)  # let the VK delete remotely
            stop(self.vk)
        kubectl(self.k8s, "delete", "namespace", self.ns, "--wait=false")
        kubectl(self.k8s, "delete", "node", self.node)
        kubectl(self.k8s, "delete", "lease", self.node, "-n", "kube-node-lease")
        for svc in (self.api, self.plugin):
            if svc is not None:
                svc.stop()
