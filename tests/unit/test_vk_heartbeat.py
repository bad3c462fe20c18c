"""When a heartbeat Lease counts as expired (the reaper's rule)."""

from __future__ import annotations

from datetime import UTC, datetime

from interlink_core.kube import lease_expiry, parse_time
from interlink_vk.reaper import verdict

NOW = datetime(2026, 11, 25, 4, 30, 10, tzinfo=UTC)


def lease(spec: dict[str, object], created: str = "2026-11-25T04:30:00Z") -> dict[str, object]:
    return {"metadata": {"name": "hb", "creationTimestamp": created}, "spec": spec}


def test_micro_time_and_time_parse() -> None:
    assert parse_time("2026-11-25T04:30:00.123456Z") == datetime(
        2026, 11, 25, 4, 30, 0, 123456, tzinfo=UTC
    )
    assert parse_time("2026-11-25T04:30:00Z") == datetime(2026, 11, 25, 4, 30, tzinfo=UTC)


def test_renewed_lease_expires_duration_after_its_renewal() -> None:
    fresh = lease({"renewTime": "2026-11-25T04:30:05.000000Z", "leaseDurationSeconds": 6})
    assert verdict(fresh, "hb", NOW) is None
    stale = lease({"renewTime": "2026-11-25T04:30:03.999999Z", "leaseDurationSeconds": 6})
    assert "heartbeat lease hb expired" in (verdict(stale, "hb", NOW) or "")


def test_unrenewed_lease_counts_from_its_creation() -> None:
    assert lease_expiry(lease({"leaseDurationSeconds": 6})) == datetime(
        2026, 11, 25, 4, 30, 6, tzinfo=UTC
    )
    assert verdict(lease({"leaseDurationSeconds": 20}), "hb", NOW) is None


def test_missing_lease_and_lease_without_duration() -> None:
    assert verdict(None, "hb", NOW) == "heartbeat lease hb does not exist"
    no_duration = lease({"renewTime": "2026-11-25T04:00:00.000000Z"})
    assert lease_expiry(no_duration) is None  # never expires
