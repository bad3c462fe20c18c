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

LABEL_RULE = (
    "a DNS-1123 label: at most 63 lower-case letters, digits or '-', starting and ending with "
    "a letter or digit"
)
SUBDOMAIN_RULE = (
    "a DNS-1123 subdomain: at most 253 lower-case letters, digits, '-' or '.', starting and "
    "ending with a letter or digit"
)
UID_RULE = "at most 128 letters, digits, '.', '_' or '-', starting with a letter or digit"


def _problem(value: Any, pattern: re.Pattern[str], limit: int, field: str, rule: str) -> str:
    if not isinstance(value, str) or len(value) > limit or not pattern.match(value):
        return f"{field}: {value!r} is not a valid name; it must be {rule}"
    return ""


def pod_name_problems(pod: Any, where: str = "pod") -> list[str]:
    """One line per invalid name of the pod (name, namespace, UID, container names), each
    naming its field; ``where`` prefixes the field paths."""
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    if not isinstance(meta, dict):
        return [f"{where}.metadata: missing; a pod needs metadata.name, namespace and uid"]
    at = f"{where}.metadata"
    found = [
        _problem(meta.get("name"), DNS1123_SUBDOMAIN, 253, f"{at}.name", SUBDOMAIN_RULE),
        _problem(meta.get("namespace"), DNS1123_LABEL, 63, f"{at}.namespace", LABEL_RULE),
        _problem(meta.get("uid"), UID, 128, f"{at}.uid", UID_RULE),
    ]
    spec = pod.get("spec") or {}
    for kind in ("initContainers", "containers"):
        containers = spec.get(kind) if isinstance(spec, dict) else None
        for i, c in enumerate(containers if isinstance(containers, list) else []):
            if isinstance(c, dict):
                field = f"{where}.spec.{kind}[{i}].name"
                found.append(_problem(c.get("name"), DNS1123_LABEL, 63, field, LABEL_RULE))
    return [p for p in found if p]


def check_pod_names(pod: Any, where: str = "pod") -> None:
    """Raise :class:`BadRequest` (400) naming every field whose name is not a valid Kubernetes
    name (see :func:`pod_name_problems`)."""
    problems = pod_name_problems(pod, where)
    if problems:
        raise BadRequest("; ".join(problems))
