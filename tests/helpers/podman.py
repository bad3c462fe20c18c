"""The test world's container runtime (tests/world/podman-up): podman with runc and the images
built locally; started once per session, like SLURM."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from tests.helpers.world import REPO, in_ci, need

PODMAN_UP = REPO / "tests/world/podman-up"
BUSYBOX_IMAGE = "localhost/interlink-busybox:1"
"""busybox-static with ENTRYPOINT /opt/tools/bin/il-entry, CMD image-default-cmd, ENV
PATH=/opt/tools/bin:<standard>, ENV IMAGE_GREETING=hello-from-image, user worker (1000)."""


@dataclass(frozen=True)
class PodmanInfo:
    """podman is configured and the test images exist."""

    busybox: str


_info: PodmanInfo | None = None
_failure: str | None = None


def ensure_podman() -> PodmanInfo:
    """Run tests/world/podman-up once per session (root needed); a failure fails the test in
    CI and skips it locally."""
    global _info, _failure
    if _info is not None:
        return _info
    if _failure is None:
        if os.geteuid() != 0:
            _failure = "podman-up needs root"
        else:
            try:
                proc = subprocess.run(
                    [str(PODMAN_UP)], capture_output=True, text=True, timeout=900, check=False
                )
                if proc.returncode != 0:
                    _failure = f"tests/world/podman-up exited {proc.returncode}:\n"
                    _failure += proc.stdout[-3000:] + proc.stderr[-3000:]
            except (OSError, subprocess.TimeoutExpired) as exc:
                _failure = f"tests/world/podman-up did not run: {exc}"
    if _failure is not None:
        if in_ci():
            raise RuntimeError(_failure)
        need(False, _failure)
    _info = PodmanInfo(busybox=BUSYBOX_IMAGE)
    return _info


def running_containers(prefix: str) -> list[str]:
    """Names of the podman containers (running or not) whose name starts with ``prefix``."""
    out = subprocess.run(
        ["podman", "ps", "-a", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [n for n in out.stdout.split() if n.startswith(prefix)]
