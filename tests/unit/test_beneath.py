"""Files below a pod directory are read and written without following what a tenant's job
could have put there: symlinks (last or middle component), FIFOs, huge files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from interlink_core import beneath


@pytest.fixture
def pod(tmp_path: Path) -> Path:
    (tmp_path / "secret").write_text("root's secret")
    d = tmp_path / "pod"
    (d / "containers" / "c").mkdir(parents=True)
    (d / "containers" / "c" / "exit").write_text('{"exitCode": 0}')
    return d


def test_plain_files_are_read_and_written(pod: Path) -> None:
    assert beneath.read_small(pod, "containers/c/exit") == '{"exitCode": 0}'
    beneath.write_text(pod, "grace", "30")
    assert (pod / "grace").read_text() == "30"
    assert beneath.exists(pod, "containers/c/exit")
    assert not beneath.exists(pod, "containers/c/started")


def test_a_symlinked_file_is_neither_read_nor_written_through(pod: Path) -> None:
    secret = pod.parent / "secret"
    (pod / "containers" / "c" / "0.log").symlink_to(secret)
    (pod / "grace").symlink_to(secret)
    assert beneath.read_small(pod, "containers/c/0.log") is None
    with pytest.raises(OSError):
        beneath.open_read(pod, "containers/c/0.log")
    with pytest.raises(OSError):
        beneath.write_text(pod, "grace", "30")
    assert secret.read_text() == "root's secret"


def test_a_symlinked_directory_on_the_way_is_not_followed(pod: Path) -> None:
    other = pod.parent / "other-tenant" / "containers" / "c"
    other.mkdir(parents=True)
    (other / "0.log").write_text("the other tenant's log")
    (pod / "containers" / "d").symlink_to(other)
    assert beneath.read_small(pod, "containers/d/0.log") is None
    assert not beneath.exists(pod, "containers/d/0.log")


def test_a_fifo_does_not_block_and_is_refused(pod: Path) -> None:
    os.mkfifo(pod / "containers" / "c" / "started")
    assert beneath.read_small(pod, "containers/c/started") is None
    with pytest.raises(beneath.UnsafePath, match="not a regular file"):
        beneath.open_read(pod, "containers/c/started")


def test_a_huge_file_is_read_only_up_to_the_limit(pod: Path) -> None:
    (pod / "containers" / "c" / "started").write_text("1" * 100_000)
    assert len(beneath.read_small(pod, "containers/c/started") or "") == beneath.SMALL


@pytest.mark.parametrize("rel", ["../secret", "/etc/passwd", "containers/../../secret", ""])
def test_paths_that_leave_the_pod_directory_are_refused(pod: Path, rel: str) -> None:
    with pytest.raises(beneath.UnsafePath):
        beneath.open_read(pod, rel)
