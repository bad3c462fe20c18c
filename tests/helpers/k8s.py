"""The test world's real Kubernetes control plane (tests/world/k8s-up): start it once per
session and describe it; a small wrapper around the real ``kubectl`` for tests."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers.world import REPO, in_ci, need
from tests.world.world import env_lines

K8S_UP = REPO / "tests/world/k8s-up"
# A cold build of the binaries (tests/world/k8s/build) takes ~10 min on 2 cores.
K8S_UP_TIMEOUT = float(os.environ.get("INTERLINK_K8S_UP_TIMEOUT", "1800"))


@dataclass(frozen=True)
class K8sInfo:
    """The running control plane (etcd, kube-apiserver, controller-manager, scheduler)."""

    kubeconfig: Path
    kubectl: Path
    bin_dir: Path
    ca: Path
    admin_token: str
    server: str


_info: K8sInfo | None = None
_failure: str | None = None  # why k8s-up failed this session (it is not retried)


def ensure_k8s() -> K8sInfo:
    """Start the world's control plane (once per session) and describe it.

    Runs tests/world/k8s-up (idempotent; well under a second when everything already runs,
    seconds to start with built binaries). A failure raises in CI and skips the test locally.
    """
    global _info, _failure
    if _info is not None:
        return _info
    if _failure is None:
        try:
            proc = subprocess.run(
                [str(K8S_UP)],
                capture_output=True,
                text=True,
                timeout=K8S_UP_TIMEOUT,
                check=False,
            )
            values = env_lines(proc.stdout)
            if proc.returncode == 0 and "KUBECONFIG" in values:
                _info = K8sInfo(
                    kubeconfig=Path(values["KUBECONFIG"]),
                    kubectl=Path(values["K8S_BIN_DIR"]) / "kubectl",
                    bin_dir=Path(values["K8S_BIN_DIR"]),
                    ca=Path(values["K8S_CA"]),
                    admin_token=Path(values["K8S_ADMIN_TOKEN_FILE"]).read_text().strip(),
                    server=values["K8S_SERVER"],
                )
                return _info
            _failure = (
                f"tests/world/k8s-up exited {proc.returncode}:\n"
                + proc.stdout[-2000:]
                + proc.stderr[-6000:]
            )
        except (OSError, KeyError, subprocess.TimeoutExpired) as exc:
            _failure = f"tests/world/k8s-up did not run: {exc!r}"
    if in_ci():
        raise RuntimeError(_failure)
    need(False, _failure)
    raise AssertionError("unreachable")  # need(False, ...) always skips or fails


def kubectl(
    info: K8sInfo, *args: str, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the world's ``kubectl`` as the admin (never raises on a non-zero exit)."""
    return subprocess.run(
        [str(info.kubectl), "--kubeconfig", str(info.kubeconfig), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_until(cond: Callable[[], Any], timeout: float, what: str, log: Path) -> Any:
    """Poll ``cond()`` until it returns something true (its value); on timeout fail with the
    tail of ``log`` (the process the test waits on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; log:\n{log.read_text()[-3000:]}")
