"""Checks that a pod's names are valid Kubernetes names before any of them becomes a path,
a job name or a shell word (a pod named ``../../x`` must never reach a backend).

One function, :func:`check_pod_names`, used by the API server and by the plugin SDK (so every
plugin gets it)."""

from __future__ import annotations

import re
from typing import Any

from .errors import BadRequest

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL = re.compile(rf"{_LABEL}\Z")
"""A DNS-1123 label: namespaces and container names (at most 63 characters)."""
DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*\Z")
"""A DNS-1123 subdomain: pod names (at most 253 characters)."""
UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
"""A pod UID as far as paths are concerned (Kubernetes makes UUIDs)."""

_LABEL_RULE = (
    "a DNS-1123 label: at most 63 lower-case letters, digits or '-', starting and ending with "
    "a letter or digit"
)
_SUBDOMAIN_RULE = (
    "a DNS-1123 subdomain: at most 253 lower-case letters, digits, '-' or '.', starting and "
    "ending with a letter or digit"
)
_UID_RULE = "at most 128 letters, digits, '.', '_' or '-', starting with a letter or digit"


def _check(value: Any, pattern: re.Pattern[str], limit: int, field: str, rule: str) -> None:
    if not isinstance(value, str) or len(value) > limit or not pattern.match(value):
        raise BadRequest(f"{field}: {value!r} is not a valid name; it must be {rule}")


def check_pod_names(pod: Any, where: str = "pod") -> None:
    """Raise :class:`BadRequest` (400) naming the field when the pod's name, namespace, UID or a
    container name is not a valid Kubernetes name. ``where`` prefixes the field path."""
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    if not isinstance(meta, dict):
        raise BadRequest(f"{where}.metadata: missing; a pod needs metadata.name, namespace, uid")
    _check(meta.get("name"), DNS1123_SUBDOMAIN, 253, f"{where}.metadata.name", _SUBDOMAIN_RULE)
    _check(meta.get("namespace"), DNS1123_LABEL, 63, f"{where}.metadata.namespace", _LABEL_RULE)
    _check(meta.get("uid"), UID, 128, f"{where}.metadata.uid", _UID_RULE)
    spec = pod.get("spec") or {}
    if not isinstance(spec, dict):
        return
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(kind) or []):
            if isinstance(c, dict):
                field = f"{where}.spec.{kind}[{i}].name"
                _check(c.get("name"), DNS1123_LABEL, 63, field, _LABEL_RULE)
