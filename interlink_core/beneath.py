"""Files below a pod's directory, opened without following symbolic links.

With a tenant map a pod's directory belongs to the tenant's Unix user, whose job can put
anything there: a symlink named ``0.log`` pointing at ``/etc/shadow`` or at another tenant's
files, a FIFO named ``exit``, a 10 GB ``started``. The plugin runs as root (or a service user
that can read every tenant's files), so it must never follow a link the tenant made, block on
a FIFO, or read without bound. Every path below the pod directory is walked one component at
a time, each opened with ``O_NOFOLLOW`` relative to the one before (the directory itself is
trusted: it sits in a directory only the plugin may write to).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

SMALL = 64 * 1024
"""The most read of a status file (``started``, ``exit``, ``status``, ...)."""

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(FileNotFoundError):
    """A path below the pod directory that is not a plain file reached without symlinks (for
    a reader, as good as absent)."""


_UNSAFE = (errno.ELOOP, errno.ENOTDIR, errno.ENXIO, errno.EISDIR)


def _parts(rel: str | PurePosixPath) -> tuple[str, ...]:
    parts = PurePosixPath(rel).parts
    if not parts or parts[0] == "/" or any(p in ("..", ".") for p in parts):
        raise UnsafePath(f"{rel!s}: not a path below the pod directory")
    return parts


def open_beneath(root: str | Path, rel: str | PurePosixPath, flags: int, mode: int = 0o600) -> int:
    """A file descriptor for ``root/rel`` opened with ``flags``, no component after ``root``
    followed if it is a symlink (:class:`OSError`, ``ELOOP``/``ENOTDIR``, instead). Non-blocking
    for reading, and only a regular file is handed back (else :class:`UnsafePath`)."""
    parts = _parts(rel)
    fd = os.open(root, _DIR)
    try:
        for part in parts[:-1]:
            inner = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = inner
        flags |= os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        leaf = os.open(parts[-1], flags, mode, dir_fd=fd)
    except OSError as exc:
        if exc.errno in _UNSAFE:
            raise UnsafePath(f"{rel!s}: reached through a symlink or not a file") from None
        raise
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(leaf).st_mode):
        os.close(leaf)
        raise UnsafePath(f"{rel!s}: not a regular file")
    os.set_blocking(leaf, True)
    return leaf


def open_read(root: str | Path, rel: str | PurePosixPath) -> BinaryIO:
    """``root/rel`` opened for reading in binary mode (see :func:`open_beneath`)."""
    return os.fdopen(open_beneath(root, rel, os.O_RDONLY), "rb")


def read_small(root: str | Path, rel: str | PurePosixPath, limit: int = SMALL) -> str | None:
    """The text of a small file below ``root`` (at most ``limit`` bytes), or ``None`` if it is
    not there, not a regular file or reached through a symlink."""
    try:
        with open_read(root, rel) as fh:
            return fh.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return None


def exists(root: str | Path, rel: str | PurePosixPath) -> bool:
    """Whether ``root/rel`` is a regular file reached without symlinks."""
    try:
        os.close(open_beneath(root, rel, os.O_RDONLY))
    except OSError:
        return False
    return True


def write_text(root: str | Path, rel: str | PurePosixPath, text: str, mode: int = 0o600) -> None:
    """Replace ``root/rel`` with ``text``: a symlink there is not followed (the write fails)."""
    fd = open_beneath(root, rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


@dataclass(frozen=True)
class File:
    """A file below a pod directory, opened as :func:`open_read` does (log readers take it
    where they would take a :class:`~pathlib.Path`)."""

    root: Path
    rel: str

    def open(self, mode: str = "rb") -> BinaryIO:
        """The file opened for binary reading (the only mode)."""
        if mode != "rb":
            raise ValueError("files below a pod directory are opened with 'rb' only")
        return open_read(self.root, self.rel)

    def exists(self) -> bool:
        """Whether it is a regular file reached without symlinks."""
        return exists(self.root, self.rel)
