"""When the VK refreshes the service-account tokens of a running pod."""

from __future__ import annotations

from datetime import UTC, datetime

from interlink_vk.tokens import (
    MAX_TOKEN_AGE,
    adopted_refresh_at,
    refresh_at,
    token_lifetimes,
)


def pod(*sources: dict[str, object], created: str = "2026-11-25T10:00:00Z") -> dict[str, object]:
    return {
        "metadata": {"name": "p", "namespace": "n", "uid": "u", "creationTimestamp": created},
        "spec": {
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "tok", "projected": {"sources": list(sources)}},
            ]
        },
    }


def test_lifetimes_of_every_projected_token_default_one_hour() -> None:
    p = pod(
        {"serviceAccountToken": {"path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt"}},
        {"serviceAccountToken": {"path": "vault", "audience": "vault", "expirationSeconds": 7200}},
    )
    assert token_lifetimes(p) == [3600, 7200]
    assert token_lifetimes(pod({"configMap": {"name": "x"}})) == []


def test_refresh_after_the_fraction_of_the_lifetime_or_a_day() -> None:
    assert refresh_at(1000.0, 3600, 0.8) == 1000.0 + 2880
    assert refresh_at(0.0, 7 * 24 * 3600, 0.8) == MAX_TOKEN_AGE


def test_adopted_pod_counts_from_its_creation_with_its_shortest_token() -> None:
    p = pod(
        {"serviceAccountToken": {"path": "a", "expirationSeconds": 7200}},
        {"serviceAccountToken": {"path": "b", "expirationSeconds": 600}},
    )
    created = datetime(2026, 11, 25, 10, 0, tzinfo=UTC).timestamp()
    assert adopted_refresh_at(p, 0.8) == created + 480
    assert adopted_refresh_at(pod({"secret": {"name": "s"}}), 0.8) is None
