"""Which worker pods go when a cluster shrinks, and when adaptive scaling waits.

A manual ``scale(n)`` drops what has not arrived yet (as dask does, but queued jobs before
started ones). Adaptive scaling drops idle connected workers first and queued jobs last, so
that a job that waited in the batch queue keeps its place, and it does not ask for more
workers while requested ones still wait in the queue."""

from __future__ import annotations

from .states import WorkerRow, WorkerState

SCALE_ORDER = [
    WorkerState.FINISHED,
    WorkerState.QUEUED,
    WorkerState.STARTING,
    WorkerState.RUNNING,
    WorkerState.CONNECTED,
]
ADAPT_ORDER = [
    WorkerState.FINISHED,
    WorkerState.CONNECTED,
    WorkerState.RUNNING,
    WorkerState.STARTING,
    WorkerState.QUEUED,
]


def ordered(rows: list[WorkerRow], order: list[WorkerState]) -> list[str]:
    """Pods sorted by the rank of their state; within a state the newest first (``rows``
    are in creation order)."""
    rank = {s: i for i, s in enumerate(order)}
    indexed = sorted(enumerate(rows), key=lambda ir: (rank[ir[1].state], -ir[0]))
    return [r.pod for _, r in indexed]


def pods_to_drop(
    rows: list[WorkerRow], n_pods: int, adaptive: bool, idle_connected: list[str] | None = None
) -> list[str]:
    """The ``n_pods`` pods to remove. ``idle_connected``: connected pods in the order the
    scheduler would retire them (adaptive only; other connected pods are kept)."""
    if n_pods <= 0:
        return []
    if not adaptive:
        return ordered(rows, SCALE_ORDER)[:n_pods]
    state = {r.pod: r.state for r in rows}
    connected = [p for p in idle_connected or [] if state.get(p) == WorkerState.CONNECTED]
    order = ordered(rows, ADAPT_ORDER)
    finished = [p for p in order if state[p] == WorkerState.FINISHED]
    waiting = [p for p in order if state[p] not in (WorkerState.FINISHED, WorkerState.CONNECTED)]
    return (finished + connected + waiting)[:n_pods]


def hold_scale_up(rows: list[WorkerRow]) -> bool:
    """Whether adaptive scaling should wait instead of asking for more workers."""
    return any(r.state == WorkerState.QUEUED for r in rows)
