"""Summaries shared by the benchmark scripts: the median, and other percentiles by nearest rank
(every such figure is a sample)."""

from __future__ import annotations

import statistics


def pct(samples: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples``: the sample of nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary_ms(samples: list[float]) -> dict[str, float]:
    """Median (``p50_ms``), p95, mean, min and max of durations in seconds, in milliseconds."""
    return {
        "p50_ms": statistics.median(samples) * 1000,
        "p95_ms": pct(samples, 0.95) * 1000,
        "mean_ms": statistics.fmean(samples) * 1000,
        "min_ms": min(samples) * 1000,
        "max_ms": max(samples) * 1000,
        "n": len(samples),
    }
