"""Shared fixtures: the real OIDC issuer of the test world (one per session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.k8s import K8sInfo, ensure_k8s
from tests.helpers.slurm import SlurmInfo, ensure_slurm
from tests.helpers.world import Issuer, start_issuer, stop

pytest_plugins = ["tests.helpers.hub_fixtures"]  # a real hub: for its API and browser tests


@pytest.fixture(scope="session")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    """nanoidp over HTTPS on loopback, with two VK clients and two users."""
    running = start_issuer(tmp_path_factory.mktemp("issuer"))
    try:
        yield running
    finally:
        stop(running.proc)


@pytest.fixture(scope="session")
def slurm() -> SlurmInfo:
    """The real single-host SLURM of the test world (tests/world/slurm-up, once per session)."""
    return ensure_slurm()


@pytest.fixture(scope="session")
def k8s() -> K8sInfo:
    """The real Kubernetes control plane of the test world (tests/world/k8s-up, once a session)."""
    return ensure_k8s()
