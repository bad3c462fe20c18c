"""The ``local`` backend: every container of a pod runs as a process on this host.

``LocalPlugin`` and ``LocalConfig`` are imported lazily so that the per-pod runner
(``python -m interlink_plugins.local.runner``) starts without loading pydantic or FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .plugin import LocalConfig, LocalPlugin

__all__ = ["LocalConfig", "LocalPlugin"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import plugin

        return getattr(plugin, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
