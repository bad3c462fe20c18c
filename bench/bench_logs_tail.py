"""``kubectl logs --tail`` on a large container log: interlink_core.logs.read_log (blocks read
from the end of the file) against reading the whole file and keeping its last lines (what
read_log did before issue 14), same file, same run.

    .venv/bin/python bench/bench_logs_tail.py [--mb 50] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from interlink_core.logs import format_line, read_log, render
from interlink_core.models import ContainerLogOpts


def whole_file_tail(path: Path, tail: int) -> bytes:
    """The baseline: the whole file in memory, then its last ``tail`` lines."""
    lines = path.read_bytes().splitlines(keepends=True)
    out = [r for r in (render(line, None, False) for line in lines) if r is not None]
    return b"".join(out[-tail:])


def write_log(path: Path, megabytes: int) -> None:
    line = b"x" * 90
    with path.open("wb") as fh:
        i = 0
        while fh.tell() < megabytes * 1_000_000:
            fh.write(format_line(1_700_000_000 + i, "stdout", b"line %d " % i + line))
            i += 1


def timed(fn: object, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "0.log"
        write_log(path, args.mb)
        opts = ContainerLogOpts(Tail=10)
        assert read_log(path, opts) == whole_file_tail(path, 10)
        ours = timed(lambda: read_log(path, opts), args.repeat)
        base = timed(lambda: whole_file_tail(path, 10), args.repeat)
        print(
            f"tail 10 of a {path.stat().st_size / 1e6:.0f} MB log, median of {args.repeat}, "
            f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}: read_log {ours * 1e3:.2f} ms, "
            f"whole-file read {base * 1e3:.0f} ms, ratio {ours / base:.4f}"
        )


if __name__ == "__main__":
    main()
