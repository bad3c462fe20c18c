"""bench/spread.py: several runs of a benchmark give one row per figure with its spread, and
every benchmark run records the machine (cores, load) next to its figures."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def spread(out: Path, runs: int, script: Path) -> subprocess.CompletedProcess[str]:
    """``bench/spread.py --runs N --json OUT -- python SCRIPT``."""
    command = [sys.executable, str(REPO / "bench" / "spread.py"), "--runs", str(runs)]
    command += ["--json", str(out), "--", sys.executable, str(script)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def fake_bench(tmp_path: Path) -> Path:
    """A benchmark that records a ratio and an added latency that change from run to run."""
    script = tmp_path / "bench_fake.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, sys
            from pathlib import Path
            sys.path.insert(0, {str(REPO / "bench")!r})
            import machine
            counter = Path({str(tmp_path / "n")!r})
            n = int(counter.read_text()) if counter.exists() else 0
            counter.write_text(str(n + 1))
            before = machine.start()
            r = {{"ratios": {{"x / baseline": [1.10, 1.30, 1.20][n]}},
                  "added_ms": {{"y after baseline": [4.0, 9.0, 5.0][n]}}}}
            r["machine"] = machine.finish(before)
            Path({str(tmp_path / "out.json")!r}).write_text(json.dumps(r))
            """
        )
    )
    return script


def test_three_runs_give_every_value_the_median_and_the_spread(tmp_path: Path) -> None:
    script = fake_bench(tmp_path)
    out = tmp_path / "out.json"
    done = spread(out, 3, script)
    assert done.returncode == 0, done.stderr
    assert "| x / baseline | 1.10 | 1.30 | 1.20 | **1.20** | 0.20 |" in done.stdout
    assert "| y after baseline | 4.00 | 9.00 | 5.00 | **5.00** | 5.00 |" in done.stdout
    assert "machine before the run:" in done.stdout
    assert " cores, load " in done.stdout
    summary = json.loads((tmp_path / "out.spread.json").read_text())
    assert summary["figures"]["x / baseline"]["runs"] == [1.10, 1.30, 1.20]
    assert len(summary["machines"]) == 3
    assert all(m["cores"] >= 1 and len(m["start"]["load"]) == 3 for m in summary["machines"])
    assert json.loads((tmp_path / "out.run2.json").read_text())["ratios"] == {"x / baseline": 1.3}


def test_a_benchmark_without_figures_is_refused_by_name(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    script = tmp_path / "bench_none.py"
    script.write_text(f"open({str(out)!r}, 'w').write('{{}}')\n")
    done = spread(out, 2, script)
    assert done.returncode != 0
    assert "has no 'ratios' or 'added_ms'" in done.stderr
