"""Prometheus metrics of one virtual node (a registry of its own, no globals), served on the
kubelet API's ``/metrics``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from interlink_core.client import RemoteError

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def outcome(exc: BaseException | None) -> str:
    """``ok``; ``rejected`` (the edge answered 4xx); ``failed`` (5xx, unreachable, timeout)."""
    if exc is None:
        return "ok"
    if isinstance(exc, RemoteError) and exc.status_code < 500:
        return "rejected"
    return "failed"


@dataclass
class VKMetrics:
    """What ``/metrics`` of one VK shows."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.pods = Gauge(
            "interlink_vk_pods", "Pods bound to the virtual node, by phase", ["phase"], registry=r
        )
        self.edge_calls = Counter(
            "interlink_vk_edge_calls",
            "Calls to the interLink API server by operation and outcome",
            ["operation", "outcome"],
            registry=r,
        )
        self.edge_latency = Histogram(
            "interlink_vk_edge_call_seconds",
            "Latency of calls to the interLink API server (retries included)",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.status_cycle = Histogram(
            "interlink_vk_status_cycle_seconds",
            "Duration of a status cycle (edge call and pod status patches); kind is full (all "
            "pods) or pending (pods not Running yet)",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.reaped = Counter(
            "interlink_vk_reaped_pods",
            "Pods deleted because their heartbeat Lease expired or vanished",
            registry=r,
        )
        self.node_ready = Gauge(
            "interlink_vk_node_ready", "1 while the edge answers the ping, else 0", registry=r
        )
        for phase in PHASES:
            self.pods.labels(phase).set(0)

    @asynccontextmanager
    async def edge_call(self, operation: str) -> AsyncIterator[None]:
        """Count and time one call to the edge (the exception, if any, goes on)."""
        t0 = time.perf_counter()
        result = "ok"
        try:
            yield
        except asyncio.CancelledError:  # shutting down: not a call that ended
            result = ""
            raise
        except Exception as exc:
            result = outcome(exc)
            raise
        finally:
            if result:
                self.edge_calls.labels(operation, result).inc()
                self.edge_latency.labels(operation).observe(time.perf_counter() - t0)

    def count_pods(self, phases: Iterable[str]) -> None:
        """Set the by-phase gauge from the phases of the node's pods."""
        counts = dict.fromkeys(PHASES, 0)
        for phase in phases:
            phase = phase or "Pending"
            counts[phase if phase in counts else "Unknown"] += 1
        for phase, n in counts.items():
            self.pods.labels(phase).set(n)

    def exposition(self) -> bytes:
        """The Prometheus text format."""
        return bytes(generate_latest(self.registry))
