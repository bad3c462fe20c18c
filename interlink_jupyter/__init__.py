"""interLink in Jupyter: a server extension (REST + live stream under ``/interlink/api/``),
the JupyterLab sidebar that uses it, and JupyterHub helpers (:mod:`interlink_jupyter.hub`)."""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import InterLinkExtension

    return [{"module": "interlink_jupyter", "app": InterLinkExtension}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "prebuilt", "dest": "interlink-jupyter"}]
