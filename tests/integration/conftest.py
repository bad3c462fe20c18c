"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.world import Service, start_plugin


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The local plugin on a unix socket, one per test module."""
    svc = start_plugin(tmp_path_factory.mktemp("plugin"))
    yield svc
    svc.stop()
