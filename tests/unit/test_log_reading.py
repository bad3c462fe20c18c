"""Bounded log reading (interlink_core.logs): ``Tail`` reads blocks from the end of a large file
(bytes read are counted through the file object), answers are capped, following streams a
large log in steps."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path, PosixPath
from typing import Any

from interlink_core.logs import FOLLOW_READ, follow_log, format_line, read_log
from interlink_core.models import ContainerLogOpts

T0 = 1_700_000_000.0


class Counted(io.BufferedReader):
    """A file that adds the bytes it reads to ``counter``."""

    def __init__(self, raw: Any, counter: list[int]) -> None:
        super().__init__(raw)
        self.counter = counter

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.counter.append(len(data))
        return data


class CountingPath(PosixPath):
    """A path whose opened files count the bytes read from them (in ``read_bytes``)."""

    read_counts: list[int]

    def open(self, mode: str = "r", *args: Any, **kw: Any) -> Any:  # type: ignore[override]
        assert mode == "rb"
        return Counted(io.FileIO(str(self), "r"), self.read_counts)


def counting(path: Path) -> CountingPath:
    p = CountingPath(path)
    p.read_counts = []
    return p


def write_log(path: Path, lines: int, text: bytes = b"x" * 90) -> None:
    """``lines`` CRI lines 'line <i> <text>', one second apart."""
    with path.open("wb") as fh:
        for i in range(lines):
            fh.write(format_line(T0 + i, "stdout", b"line %d " % i + text))


def test_tail_of_a_50_mb_log_reads_only_its_end(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write_log(log, 400_000)  # ~53 MB
    assert log.stat().st_size > 50_000_000
    path = counting(log)
    out = read_log(path, ContainerLogOpts(Tail=3))
    assert out == b"".join(b"line %d " % i + b"x" * 90 + b"\n" for i in (399_997, 399_998, 399_999))
    assert sum(path.read_counts) <= 128 * 1024  # two 64 KiB blocks at most, of 53 MB


def test_tail_with_since_and_timestamps_stops_at_older_lines(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write_log(log, 100_000, b"")
    since = "2023-11-14T22:13:20Z"  # T0: the first line's time
    path = counting(log)
    # the last line is at T0 + 99999 s = 2023-11-16T01:59:59Z; 5 lines asked, 2 are new enough
    opts = ContainerLogOpts.model_validate(
        {"Tail": 5, "Timestamps": True, "SinceTime": "2023-11-16T01:59:58Z"}
    )
    out = read_log(path, opts)
    assert out == (
        b"2023-11-16T01:59:58.000000000Z line 99998 \n2023-11-16T01:59:59.000000000Z line 99999 \n"
    )
    assert sum(path.read_counts) <= 64 * 1024
    # all of it is newer than T0: a large Tail gives every line, oldest first
    everything = read_log(log, ContainerLogOpts.model_validate({"Tail": 10**6, "SinceTime": since}))
    assert everything.count(b"\n") == 100_000
    assert everything.startswith(b"line 0 \nline 1 \n")


def test_an_answer_is_capped_at_max_bytes_and_limit_bytes(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write_log(log, 200_000)
    path = counting(log)
    out = read_log(path, ContainerLogOpts(), max_bytes=1000)
    assert len(out) == 1000
    assert out.startswith(b"line 0 xxx")
    assert sum(path.read_counts) <= 64 * 1024  # stopped reading at the cap
    assert read_log(log, ContainerLogOpts(Bytes=12)) == b"line 0 xxxxx"
    # Bytes, when given, is the limit (the plugin SDK never asks for more than its cap)
    assert len(read_log(log, ContainerLogOpts(Bytes=5000), max_bytes=100)) == 5000
    tail = read_log(log, ContainerLogOpts(Tail=1000), max_bytes=150)  # the newest bytes kept
    assert tail == (b"line 199998 " + b"x" * 90 + b"\nline 199999 " + b"x" * 90 + b"\n")[-150:]


def test_a_partial_last_line_and_a_missing_file(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    half = format_line(T0 + 1, "stdout", b"half")[:-1]
    log.write_bytes(format_line(T0, "stdout", b"done") + half)
    assert read_log(log, ContainerLogOpts(Tail=1)) == b"half"
    assert read_log(log, ContainerLogOpts()) == b"done\nhalf"
    assert read_log(tmp_path / "none.log", ContainerLogOpts(Tail=5)) == b""


def test_follow_streams_a_large_log_in_steps(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write_log(log, 30_000)  # ~3.5 MB: several steps
    size = log.stat().st_size

    async def done() -> bool:
        return True

    async def collect(opts: ContainerLogOpts) -> list[bytes]:
        return [chunk async for chunk in follow_log(log, opts, done, poll=0.01)]

    chunks = asyncio.run(collect(ContainerLogOpts(Follow=True)))
    assert len(chunks) >= size // FOLLOW_READ
    assert max(len(c) for c in chunks) <= FOLLOW_READ
    body = b"".join(chunks)
    assert body.count(b"\n") == 30_000
    assert body.endswith(b"line 29999 " + b"x" * 90 + b"\n")
    tail = asyncio.run(collect(ContainerLogOpts(Follow=True, Tail=1)))
    assert tail == [b"line 29999 " + b"x" * 90 + b"\n"]
