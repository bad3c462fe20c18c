"""What the two tenant test files share: a tenant's client of the API server (its VK's OIDC
client credentials from the test issuer) and a log request for a pod's ``main`` container."""

from __future__ import annotations

from typing import Any

from interlink_core.client import ClientCredentials, InterLinkClient, Retry
from interlink_core.models import LogStruct
from tests.helpers.world import Issuer


def tenant_client(api_url: str, issuer: Issuer, client_id: str) -> InterLinkClient:
    """The API server's client for the tenant whose VK is OIDC client ``client_id``."""
    tokens = ClientCredentials(
        issuer.url, client_id, issuer.info["clients"][client_id], ca_file=issuer.ca_file
    )
    return InterLinkClient(api_url, token=tokens, retry=Retry(attempts=3, base_delay=0.2))


def main_log(pod: dict[str, Any]) -> LogStruct:
    """The log request for the pod's container ``main``."""
    m = pod["metadata"]
    return LogStruct(
        Namespace=m["namespace"], PodUID=m["uid"], PodName=m["name"], ContainerName="main"
    )
