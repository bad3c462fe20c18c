"""The VK writes each edge Event once: by its per-pod ``seq``, and after a VK restart only those
recorded since it started."""

from __future__ import annotations

from interlink_vk.remote_events import RemoteEvents


def ev(seq: int, at: float = 100.0) -> dict[str, object]:
    return {"seq": seq, "at": at, "type": "Warning", "reason": "Unhealthy", "message": f"m{seq}"}


def test_each_event_is_new_once_in_order() -> None:
    seen = RemoteEvents(since=0.0)
    assert [e["seq"] for e in seen.new("a", [ev(2), ev(1)])] == [1, 2]
    assert seen.new("a", [ev(1), ev(2)]) == []
    assert [e["seq"] for e in seen.new("a", [ev(2), ev(3)])] == [3]
    assert [e["seq"] for e in seen.new("b", [ev(1)])] == [1]  # per pod
    assert seen.new("a", None) == []


def test_a_restarted_vk_skips_events_from_before_it_started() -> None:
    seen = RemoteEvents(since=150.0)
    assert [e["seq"] for e in seen.new("a", [ev(1, at=100.0), ev(2, at=200.0)])] == [2]


def test_a_forgotten_pod_starts_over() -> None:
    seen = RemoteEvents(since=0.0)
    seen.new("a", [ev(1)])
    seen.forget("a")
    assert [e["seq"] for e in seen.new("a", [ev(1)])] == [1]
