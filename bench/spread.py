"""Run one benchmark several times and report the spread of its ratios.

    .venv/bin/python bench/spread.py --runs 3 --json bench/out/api_overhead.json -- \
        .venv/bin/python bench/bench_api_overhead.py --pods 1000

Runs the command ``--runs`` times, one after the other. After each run it reads the JSON file the
benchmark wrote (``--json``), keeps a copy (``<name>.run<i>.json``) and collects its headline
figures relative to a same-run baseline: ``"ratios"`` (measured / baseline) and ``"added_ms"``
(measured - baseline, for a latency measured from the baseline's own event), with ``"machine"``
(cores, load before and after). Then it prints one row per figure: every run's value, the median
and the spread (max - min), with the load of each run, and writes ``<name>.spread.json`` next to
the benchmark's JSON. A ratio whose spread is larger than its distance from a target cannot be
called met or missed from these runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any


def one_run(command: list[str], result: Path, keep: Path) -> dict[str, Any]:
    """Run the benchmark once; return its JSON (a copy is kept at ``keep``)."""
    if result.exists():
        result.unlink()
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the benchmark failed (exit code {done.returncode}): {command}")
    if not result.exists():
        raise SystemExit(f"the benchmark wrote no {result}; check --json")
    shutil.copyfile(result, keep)
    data: dict[str, Any] = json.loads(result.read_text())
    data["figures"] = {**data.get("ratios", {}), **data.get("added_ms", {})}
    if not data["figures"]:
        raise SystemExit(f"{result} has no 'ratios' or 'added_ms'; this benchmark records none")
    return data


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure: every run's value, the median, min, max and spread."""
    names = list(runs[0]["figures"])
    table: dict[str, Any] = {}
    for name in names:
        values = [float(r["figures"][name]) for r in runs if name in r["figures"]]
        table[name] = {
            "runs": values,
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "spread": max(values) - min(values),
        }
    return table


def load_cell(run: dict[str, Any]) -> str:
    m = run.get("machine") or {}
    try:
        return f"{m['start']['load'][0]:.2f} → {m['end']['load'][0]:.2f}"
    except (KeyError, IndexError, TypeError):
        return "?"


def fmt(value: float, scale: float | None = None) -> str:
    """Two decimals, or three significant digits for a figure (or the spread of a figure,
    ``scale``) below 0.1: 0.0136, not 0.01."""
    return f"{value:.2f}" if abs(value if scale is None else scale) >= 0.1 else f"{value:.3g}"


def render(table: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    heads = " | ".join(f"run {i + 1}" for i in range(len(runs)))
    lines = [f"| figure | {heads} | median | spread (max - min) |"]
    lines.append("|---" * (len(runs) + 3) + "|")
    for name, s in table.items():
        cells = " | ".join(fmt(v) for v in s["runs"])
        lines.append(
            f"| {name} | {cells} | **{fmt(s['median'])}** | {fmt(s['spread'], s['median'])} |"
        )
    cores = {(r.get("machine") or {}).get("cores") for r in runs}
    loads = " | ".join(load_cell(r) for r in runs)
    lines.append(
        f"| load (1 min) before → after, {', '.join(map(str, cores))} cores | {loads} | | |"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, required=True, help="the JSON the benchmark writes")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the benchmark command")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the benchmark command after --")
    if args.runs < 2:
        parser.error("--runs: at least 2 (a spread needs two runs)")
    stem = args.json.with_suffix("")
    runs = []
    for i in range(args.runs):
        print(f"\n=== run {i + 1} of {args.runs}: {' '.join(command)}", flush=True)
        runs.append(one_run(command, args.json, stem.with_name(f"{stem.name}.run{i + 1}.json")))
    table = summarize(runs)
    print("\n" + render(table, runs))
    out = stem.with_name(f"{stem.name}.spread.json")
    machines = [r.get("machine") for r in runs]
    out.write_text(
        json.dumps({"command": command, "figures": table, "machines": machines}, indent=2)
    )
    print(f"(JSON in {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
