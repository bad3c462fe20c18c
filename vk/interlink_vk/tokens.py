"""When the service-account tokens of a running pod must be refreshed.

A pod's projected ``serviceAccountToken`` sources get tokens from the TokenRequest API with
their ``expirationSeconds`` (default one hour). Like a kubelet, the VK asks for new ones once a
token has lived ``token_refresh_fraction`` of its lifetime (kubelet: 80 %) or a day, whichever
comes first, and sends them to the edge (``POST /updateVolumes``), which rewrites the files the
running containers read.
"""

from __future__ import annotations

from interlink_core.kube import parse_time
from interlink_core.models import JSON

DEFAULT_TOKEN_SECONDS = 3600
"""TokenRequest's default lifetime, used when a source sets no ``expirationSeconds``."""
MAX_TOKEN_AGE = 24 * 3600.0
"""A token older than this is refreshed whatever its lifetime (as a kubelet does)."""


def token_lifetime(source: JSON) -> int:
    """The lifetime (seconds) a ``serviceAccountToken`` source asks for."""
    return int(source.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS)


def token_lifetimes(pod: JSON) -> list[int]:
    """The requested lifetime (seconds) of each service-account token the pod's volumes
    project; empty when it has none."""
    out = []
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        for source in (volume.get("projected") or {}).get("sources") or []:
            sat = source.get("serviceAccountToken")
            if sat is not None:
                out.append(token_lifetime(sat))
    return out


def refresh_at(issued: float, lifetime: float, fraction: float) -> float:
    """When a token issued at ``issued`` (epoch seconds) with this lifetime is refreshed."""
    return issued + min(fraction * lifetime, MAX_TOKEN_AGE)


def adopted_refresh_at(pod: JSON, fraction: float) -> float | None:
    """For a pod found running (after a VK restart, its tokens' issue times are unknown): when
    its tokens are refreshed, counting from the pod's creation, when they were issued at the
    latest; ``None`` when it projects no token."""
    lifetimes = token_lifetimes(pod)
    if not lifetimes:
        return None
    created = parse_time(str(pod["metadata"]["creationTimestamp"])).timestamp()
    return refresh_at(created, min(lifetimes), fraction)
