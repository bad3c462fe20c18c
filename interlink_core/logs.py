"""Container logs in the CRI file format, with kubelet's options (tail, bytes, since, timestamps,
follow).

Each line of a log file is ``<RFC3339Nano time> <stdout|stderr> <F|P> <text>``, as the kubelet
writes them. A plugin's job wrapper writes such files; :func:`read_log` and :func:`follow_log`
answer ``/getLogs`` from them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # kept light: job wrappers import this module for format_line alone
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
    """Apply since, tail, timestamps and bytes to whole CRI lines."""
    since = opts.since()
    out = [r for r in (render(line, since, opts.Timestamps) for line in lines) if r is not None]
    if opts.Tail:
        out = out[-opts.Tail :]
    body = b"".join(out)
    if opts.Bytes:
        body = body[: opts.Bytes]
    return body


def read_log(path: Path, opts: ContainerLogOpts) -> bytes:
    """The log of one container as the user asked for it (empty if none was written yet)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return b""
    return select(data.splitlines(keepends=True), opts)


async def follow_log(
    path: Path,
    opts: ContainerLogOpts,
    finished: Callable[[], Awaitable[bool]],
    poll: float = 0.2,
) -> AsyncIterator[bytes]:
    """Yield the log as asked, then new lines as they are written, until ``finished()``
    says the container ended and everything written was sent."""
    import asyncio

    first = read_log_with_offset(path, opts)
    body, offset = first
    sent = len(body)
    if body:
        yield body
    since = opts.since()
    pending = b""
    while True:
        if opts.Bytes and sent >= opts.Bytes:
            return
        done = await finished()
        chunk = b""
        try:
            with path.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
        except FileNotFoundError:
            pass
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
        if done and not chunk:
            return
        await asyncio.sleep(poll)


def read_log_with_offset(path: Path, opts: ContainerLogOpts) -> tuple[bytes, int]:
    """Like :func:`read_log`, also returning the file offset just past the last whole line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return b"", 0
    end = data.rfind(b"\n") + 1
    return select(data[:end].splitlines(keepends=True), opts), end
