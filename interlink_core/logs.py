"""Container logs in the CRI file format, with kubelet's options (tail, bytes, since, timestamps,
follow).

Each line of a log file is ``<RFC3339Nano time> <stdout|stderr> <F|P> <text>``, as the kubelet
writes them. A plugin's job wrapper writes such files; :func:`read_log` and :func:`follow_log`
answer ``/getLogs`` from them, bounded: ``Tail`` reads blocks from the end of the file, an
answer carries at most ``max_bytes`` (or ``Bytes``), and a followed log is read in steps.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:  # kept light: job wrappers import this module for format_line alone
    from .beneath import File
    from .models import ContainerLogOpts


def format_time(t: float) -> str:
    """RFC3339 with nanosecond digits, like the kubelet's log timestamps."""
    dt = datetime.fromtimestamp(t, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}000Z"


def format_line(t: float, stream: str, text: bytes, partial: bool = False) -> bytes:
    """One CRI log line (``text`` without its newline)."""
    tag = b"P" if partial else b"F"
    return format_time(t).encode() + b" " + stream.encode() + b" " + tag + b" " + text + b"\n"


def _parse_time(stamp: bytes) -> datetime | None:
    text = stamp.decode(errors="replace").rstrip("Z")
    main, _, frac = text.partition(".")
    try:
        dt = datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    if frac:
        dt = dt.replace(microsecond=int(frac[:6].ljust(6, "0")))
    return dt


def render(line: bytes, since: datetime | None, timestamps: bool) -> bytes | None:
    """The user-visible form of one CRI line, or ``None`` if it is older than ``since``."""
    parts = line.split(b" ", 3)
    if len(parts) < 4:
        return line if not since else None
    stamp, _stream, tag, text = parts
    if since is not None:
        t = _parse_time(stamp)
        if t is not None and t < since:
            return None
    if tag == b"P":
        text = text.rstrip(b"\n")
    if timestamps:
        return stamp + b" " + text
    return text


def select(lines: list[bytes], opts: ContainerLogOpts) -> bytes:
    """Apply since, tail, timestamps and bytes to whole CRI lines held in memory (for a log
    kept elsewhere than in a file; files are read with :func:`read_log`)."""
    since = opts.since()
    out = [r for r in (render(line, since, opts.Timestamps) for line in lines) if r is not None]
    if opts.Tail:
        out = out[-opts.Tail :]
    body = b"".join(out)
    if opts.Bytes:
        body = body[: opts.Bytes]
    return body


BLOCK = 64 * 1024
"""Bytes read from a log file at a time."""
FOLLOW_READ = 16 * BLOCK
"""Most bytes a followed log reads per step (it reads again at once while there is more)."""
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
"""Most bytes one log answer carries unless a plugin is configured otherwise."""


def _split(buf: bytes) -> list[bytes]:
    """``buf`` cut after each newline (only ``\\n``: the text may hold ``\\r``)."""
    parts = buf.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def lines_backwards(fh: BinaryIO, end: int, longest: int) -> Iterator[bytes]:
    """The lines of ``fh`` before offset ``end``, newest first, read in blocks from the end
    (a line longer than ``longest`` comes as its last ``longest`` bytes, and ends the lines)."""
    pos = end
    head = b""  # the start of the file part read so far: a line whose beginning is not read
    while pos > 0:
        start = max(0, pos - BLOCK)
        fh.seek(start)
        buf = fh.read(pos - start) + head
        pos = start
        lines = _split(buf)
        head = lines.pop(0) if pos > 0 and lines else b""
        yield from reversed(lines)
        if len(head) > longest:
            yield head[-longest:]
            return


def lines_forward(fh: BinaryIO, start: int, end: int, longest: int) -> Iterator[bytes]:
    """The lines of ``fh`` between offsets ``start`` and ``end``, read in blocks (a line
    longer than ``longest`` comes in pieces)."""
    fh.seek(start)
    pos = start
    rest = b""
    while pos < end:
        block = fh.read(min(BLOCK, end - pos))
        if not block:
            break
        pos += len(block)
        parts = (rest + block).split(b"\n")
        rest = parts.pop()
        for part in parts:
            yield part + b"\n"
        if len(rest) > longest:
            yield rest
            rest = b""
    if rest:
        yield rest


def _older(line: bytes, since: datetime) -> bool:
    t = _parse_time(line.split(b" ", 1)[0])
    return t is not None and t < since


def _tail(fh: BinaryIO, opts: ContainerLogOpts, end: int, limit: int) -> bytes:
    """The last ``opts.Tail`` lines before ``end`` as asked, at most ``limit`` bytes (the
    newest); reads from the end of the file, never the whole of it."""
    since = opts.since()
    picked: list[bytes] = []
    total = 0
    for line in lines_backwards(fh, end, limit):
        out = render(line, since, opts.Timestamps)
        if out is None:
            if since is not None and _older(line, since):
                break  # lines are in time order: all before it are older too
            continue
        picked.append(out)
        total += len(out)
        if len(picked) >= opts.Tail or total >= limit:
            break
    body = b"".join(reversed(picked))
    return body[-limit:]


def _head(fh: BinaryIO, opts: ContainerLogOpts, end: int, limit: int) -> bytes:
    """The log before ``end`` as asked, from its start, at most ``limit`` bytes."""
    since = opts.since()
    picked: list[bytes] = []
    total = 0
    for line in lines_forward(fh, 0, end, limit):
        out = render(line, since, opts.Timestamps)
        if out is None:
            continue
        picked.append(out)
        total += len(out)
        if total >= limit:
            break
    return b"".join(picked)[:limit]


def answer_limit(opts: ContainerLogOpts, max_bytes: int) -> int:
    """Bytes an answer may carry: ``Bytes`` (``LimitBytes``) if asked, never above
    ``max_bytes``."""
    return min(opts.Bytes, max_bytes) if opts.Bytes else max_bytes


def read_log(
    path: Path | File, opts: ContainerLogOpts, max_bytes: int = DEFAULT_MAX_BYTES
) -> bytes:
    """The log of one container as the user asked for it (empty if none was written yet):
    at most ``Bytes`` if given, else at most ``max_bytes``; ``Tail`` reads backwards from the
    end of the file."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return b""
    with fh:
        end = fh.seek(0, os.SEEK_END)
        limit = opts.Bytes or max_bytes
        if opts.Tail:
            return _tail(fh, opts, end, limit)
        return _head(fh, opts, end, limit)


def _whole_lines_end(fh: BinaryIO) -> int:
    """The offset just past the last newline of ``fh`` (0 if it has none)."""
    pos = fh.seek(0, os.SEEK_END)
    while pos > 0:
        start = max(0, pos - BLOCK)
        fh.seek(start)
        found = fh.read(pos - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        pos = start
    return 0


def _read_at(path: Path | File, offset: int, size: int) -> bytes:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read(size)
    except FileNotFoundError:
        return b""


async def follow_log(
    path: Path | File,
    opts: ContainerLogOpts,
    finished: Callable[[], Awaitable[bool]],
    poll: float = 0.2,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> AsyncIterator[bytes]:
    """Yield the log as asked, then new lines as they are written, until ``finished()``
    says the container ended and everything written was sent. With ``Tail`` the existing
    part is read from the end of the file (at most ``max_bytes``); without, the whole log is
    streamed in steps of at most :data:`FOLLOW_READ` bytes, never read at once."""
    import asyncio

    offset = 0
    sent = 0
    if opts.Tail:
        try:
            with path.open("rb") as fh:
                offset = _whole_lines_end(fh)
                body = _tail(fh, opts, offset, max_bytes)
        except FileNotFoundError:
            body = b""
        sent = len(body)
        if body:
            yield body
    since = opts.since()
    pending = b""
    while True:
        if opts.Bytes and sent >= opts.Bytes:
            return
        done = await finished()
        chunk = _read_at(path, offset, FOLLOW_READ)
        offset += len(chunk)
        pending += chunk
        lines = pending.split(b"\n")
        pending = lines.pop()
        out = b"".join(
            r
            for r in (render(line + b"\n", since, opts.Timestamps) for line in lines)
            if r is not None
        )
        if out:
            if opts.Bytes:
                out = out[: opts.Bytes - sent]
            sent += len(out)
            yield out
        if len(chunk) == FOLLOW_READ:
            continue  # more was written than one step reads: read on without waiting
        if done and not chunk:
            return
        await asyncio.sleep(poll)
