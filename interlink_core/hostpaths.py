"""Which host paths a pod may mount: ``hostPath`` volumes are refused unless the site's
allow-list (``host_path_prefixes`` of the plugin's configuration) names a prefix of the path.
Shared by every backend that mounts host paths (local, SLURM)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import BadRequest
from .models import JSON


def refuse_host_paths(pod: JSON, prefixes: list[Path]) -> None:
    """Refuse a ``hostPath`` volume (a 400 naming the field and ``host_path_prefixes``)
    unless its path, symlinks and ``..`` resolved, is under one of ``prefixes``."""
    roots = [Path(os.path.realpath(p)) for p in prefixes]
    for i, vol in enumerate((pod.get("spec") or {}).get("volumes") or []):
        if not isinstance(vol, dict) or "hostPath" not in vol:
            continue
        raw = str((vol.get("hostPath") or {}).get("path", ""))
        field = f"spec.volumes[{i}].hostPath.path"
        if not raw.startswith("/"):
            raise BadRequest(f"{field}: {raw!r} must be an absolute path")
        real = Path(os.path.realpath(raw))
        if not any(real == root or root in real.parents for root in roots):
            allowed = ", ".join(str(p) for p in prefixes) or "none"
            raise BadRequest(
                f"{field}: {raw!r} is not a host path this site shares with pods (allowed "
                f"prefixes: {allowed}); the site admin may add a prefix to host_path_prefixes"
            )
