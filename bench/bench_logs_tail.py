"""``kubectl logs --tail`` on a large container log: interlink_core.logs.read_log (blocks read
from the end of the file) against reading the whole file and keeping its last lines (what
read_log did before issue 14), same file, same run.

    .venv/bin/python bench/bench_logs_tail.py [--mb 50] [--repeat 5]

Prints a line and writes bench/out/logs_tail.json (with the machine and the ratio).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import machine  # noqa: E402  (bench/, next to this script)

from interlink_core.logs import format_line, read_log, render  # noqa: E402
from interlink_core.models import ContainerLogOpts  # noqa: E402


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
    before = machine.start()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "0.log"
        write_log(path, args.mb)
        opts = ContainerLogOpts(Tail=10)
        assert read_log(path, opts) == whole_file_tail(path, 10)
        ours = timed(lambda: read_log(path, opts), args.repeat)
        base = timed(lambda: whole_file_tail(path, 10), args.repeat)
        size_mb = path.stat().st_size / 1e6
    print(
        f"tail 10 of a {size_mb:.0f} MB log, median of {args.repeat}: read_log "
        f"{ours * 1e3:.2f} ms, whole-file read {base * 1e3:.0f} ms, ratio {ours / base:.4f}"
    )
    result = {
        "log_mb": size_mb,
        "repeat": args.repeat,
        "read_log_s": ours,
        "whole_file_s": base,
        "ratios": {"tail 10 of a large log, read_log / whole-file read": ours / base},
        "machine": machine.finish(before),
    }
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs_tail.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
