"""JupyterHub helpers: spawner profiles for interLink virtual nodes (extra ``[hub]``).

``build_profiles(config)`` / ``interlink_profiles(config)`` make ``KubeSpawner.profile_list``
entries; ``InterLinkSpawner`` adds batch-state progress, per-profile start timeouts, refusal
of choices outside the allow-list and servers whose pods report no IP. See docs/jupyterhub.md."""

from __future__ import annotations

from .profiles import (
    HubProfiles,
    Profile,
    Resources,
    build_profiles,
    interlink_profiles,
    load_profiles,
)
from .progress import batch_state

__all__ = [
    "HubProfiles",
    "Profile",
    "Resources",
    "batch_state",
    "build_profiles",
    "interlink_profiles",
    "load_profiles",
]
