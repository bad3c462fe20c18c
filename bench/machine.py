"""The machine a benchmark ran on, printed and recorded with every run.

Every benchmark script calls :func:`start` before it measures and :func:`finish` after, and stores
what :func:`finish` returns under ``"machine"`` in its JSON, so a figure always comes with the
number of cores and the load average around it. Each script also stores its headline figures as
``"ratios"``: ``{name: measured / same-run baseline}``; :mod:`spread` reads those over several runs.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any


def snapshot() -> dict[str, Any]:
    """Cores, load averages (1, 5, 15 min) and the time, now."""
    one, five, fifteen = os.getloadavg()
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count() or 0,
        "load": [round(one, 2), round(five, 2), round(fifteen, 2)],
    }


def describe(snap: dict[str, Any]) -> str:
    """One line: ``2 cores, load 0.32 1.09 1.40 (1/5/15 min) at <time>``."""
    load = " ".join(f"{x:.2f}" for x in snap["load"])
    return f"{snap['cores']} cores, load {load} (1/5/15 min) at {snap['time']}"


def start() -> dict[str, Any]:
    """Print and return the machine's state before a run."""
    snap = snapshot()
    print(f"machine before the run: {platform.node()}, {describe(snap)}", flush=True)
    return snap


def finish(before: dict[str, Any]) -> dict[str, Any]:
    """Print the machine's state after a run; return both ends for the run's JSON."""
    after = snapshot()
    print(f"machine after the run: {describe(after)}", flush=True)
    return {"host": platform.node(), "cores": before["cores"], "start": before, "end": after}


def save(result: dict[str, Any], name: str) -> Path:
    """Write a run's JSON to ``bench/out/<name>`` and say where."""
    dest = Path(__file__).resolve().parent / "out" / name
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {dest}")
    return dest
