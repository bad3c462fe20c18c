"""``helm`` for the tests: built once from its Go module by tests/world/helm-build (cached under
~/.cache/interlink-world/), and the chart of this repository."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from tests.helpers.world import REPO, need
from tests.world.world import env_lines

HELM_BUILD = REPO / "tests/world/helm-build"
CHART = REPO / "helm/interlink-vk"
# The Kubernetes release of the test world, for `helm template/lint` (helm v3 assumes 1.20).
KUBE_VERSION = "1.33.13"
HELM_BUILD_TIMEOUT = float(os.environ.get("INTERLINK_HELM_BUILD_TIMEOUT", "1800"))


@functools.cache
def _build() -> tuple[Path | None, str]:
    try:
        proc = subprocess.run(
            ["nice", str(HELM_BUILD)],
            capture_output=True,
            text=True,
            timeout=HELM_BUILD_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"tests/world/helm-build did not run: {exc!r}"
    binary = env_lines(proc.stdout).get("HELM_BIN")
    if proc.returncode != 0 or not binary:
        return None, f"tests/world/helm-build exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return Path(binary), ""


def helm_binary() -> Path:
    """The built ``helm`` (skips locally, fails in CI, when it cannot be built)."""
    binary, why = _build()
    need(binary is not None, why)
    assert binary is not None
    return binary


def helm(
    *args: str, timeout: float = 120, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``helm`` (never raises on a non-zero exit)."""
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(Path.home() / ".cache/interlink-world/helm-home/cache"),
        "HELM_CONFIG_HOME": str(Path.home() / ".cache/interlink-world/helm-home/config"),
        "HELM_DATA_HOME": str(Path.home() / ".cache/interlink-world/helm-home/data"),
    }
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run(
        [str(helm_binary()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def template(
    *args: str, release: str = "vk", namespace: str = "interlink", chart: Path = CHART
) -> subprocess.CompletedProcess[str]:
    """``helm template`` of the repository's chart."""
    return helm(
        "template",
        release,
        str(chart),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
        *args,
    )
