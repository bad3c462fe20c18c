"""The API server's pod-state gauge: /status answers are read when Prometheus scrapes, not on
the status path (the real server is covered by tests/integration/test_api_edge.py)."""

from __future__ import annotations

import json

from prometheus_client import generate_latest

from interlink_core.apiserver import Metrics


def answer(*pods: tuple[str, dict[str, object]]) -> bytes:
    return json.dumps(
        [{"UID": uid, "containers": [{"name": "c", "state": state}]} for uid, state in pods]
    ).encode()


def gauge(metrics: Metrics) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    return {
        line.split('"')[1]: float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("interlink_api_pods{")
    }


def test_answers_are_kept_unread_then_counted_at_scrape() -> None:
    metrics = Metrics()
    assert not metrics.pods.keep(answer(("a", {"waiting": {}}), ("b", {"running": {}})))
    assert not metrics.pods.keep(answer(("a", {"running": {}})))  # newer answer wins
    assert metrics.pods.latest == {}  # nothing read on the status path
    assert gauge(metrics) == {"pending": 0, "running": 2, "succeeded": 0, "failed": 0}
    assert metrics.pods.unread == []


def test_a_deleted_pod_is_not_brought_back_by_an_older_kept_answer() -> None:
    metrics = Metrics()
    metrics.pods.keep(answer(("a", {"running": {}}), ("b", {"terminated": {"exitCode": 2}})))
    metrics.forget("a")
    assert gauge(metrics) == {"pending": 0, "running": 0, "succeeded": 0, "failed": 1}


def test_filtered_statuses_come_after_the_kept_answers() -> None:
    metrics = Metrics()
    metrics.pods.keep(answer(("a", {"running": {}})))
    metrics.observe_statuses([{"UID": "a", "containers": [{"state": {"terminated": {}}}]}])
    assert gauge(metrics)["succeeded"] == 1


async def test_reading_is_due_after_max_unread_answers() -> None:
    metrics = Metrics()
    due = [metrics.pods.keep(answer((f"p{i}", {"running": {}}))) for i in range(8)]
    assert due == [False] * 7 + [True]
    await metrics.pods.read_later()
    assert len(metrics.pods.latest) == 8 and metrics.pods.unread == []


def test_an_answer_with_bad_containers_is_left_out() -> None:
    metrics = Metrics()
    metrics.pods.keep(b'[{"UID": "a", "containers": "not a list"}]')
    metrics.pods.keep(answer(("b", {"running": {}})))
    assert gauge(metrics)["running"] == 1 and "a" not in metrics.pods.latest
