"""When the VK refreshes the service-account tokens of a running pod."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from interlink_core.client import RemoteError
from interlink_core.models import PodCreateRequests
from interlink_vk.config import VKConfig
from interlink_vk.metrics import VKMetrics
from interlink_vk.pods import PodController
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


# --- the refresh itself, against a fake API server and edge ------------------------------------


class FakeKube:
    def __init__(self) -> None:
        self.tokens = 0
        self.events: list[tuple[str, bool]] = []

    async def call(self, method: str, path: str, **_: object) -> dict[str, object]:
        assert (method, path) == ("POST", "serviceaccounts/worker/token")
        self.tokens += 1
        return {"status": {"token": f"token-{self.tokens}"}}

    async def event(self, pod: object, reason: str, message: str, node: str, warning: bool) -> None:
        self.events.append((reason, warning))


class FakeEdge:
    def __init__(self, status_code: int | None) -> None:
        self.status_code = status_code
        self.sent: list[PodCreateRequests] = []

    async def update_volumes(self, request: PodCreateRequests) -> None:
        if self.status_code is not None:
            raise RemoteError("no", self.status_code)
        self.sent.append(request)


def controller(edge: FakeEdge) -> tuple[PodController, FakeKube]:
    kube = FakeKube()
    config = VKConfig(node_name="vn", edge={"url": "http://edge", "token": "t"})
    return PodController(kube, config, edge, VKMetrics()), kube  # type: ignore[arg-type]


def running_pod() -> dict[str, object]:
    p = pod({"serviceAccountToken": {"path": "token", "expirationSeconds": 600}})
    p["spec"]["serviceAccountName"] = "worker"  # type: ignore[index]
    return p


async def test_refresh_sends_new_tokens_and_schedules_the_next() -> None:
    edge = FakeEdge(None)
    vk, kube = controller(edge)
    before = time.time()
    await vk._refresh(running_pod())
    [sent] = edge.sent
    assert sent.projectedvolumesmaps[0]["data"] == {"token": "token-1"}
    assert before + 480 <= vk._token_due["u"] <= time.time() + 480
    assert kube.events == []


async def test_edge_that_cannot_update_gets_an_event_and_no_more_tries() -> None:
    vk, kube = controller(FakeEdge(501))
    await vk._refresh(running_pod())
    assert kube.events == [("TokenRefreshUnsupported", True)]
    assert "u" in vk._no_refresh


async def test_edge_down_retries_at_the_next_cycle_not_after_the_new_lifetime() -> None:
    vk, kube = controller(FakeEdge(503))
    await vk._refresh(running_pod())
    assert vk._token_due["u"] <= time.time() + vk.config.status_interval_seconds
    assert kube.events == [] and "u" not in vk._no_refresh
