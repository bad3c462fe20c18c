"""The Jupyter server extension: configuration (traitlets, validated at start-up) and the
routes of the interLink sidebar."""

from __future__ import annotations

from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, Integer, TraitError, validate

from interlink_dask.config import load_options

from .handlers import routes
from .live import Live


class InterLinkExtension(ExtensionApp):
    """Serves ``{base_url}interlink/api/``: virtual nodes, Dask clusters, scaling, logs and a
    live stream for the JupyterLab sidebar. Configure as ``c.InterLinkExtension.<trait>``."""

    name = "interlink_jupyter"
    load_other_extensions = True

    max_workers = Integer(
        None,
        allow_none=True,
        config=True,
        help="Most Dask workers a user may ask for from the sidebar (scale, adapt maximum); "
        "None: no limit.",
    )
    refresh_interval = Float(
        2.0,
        config=True,
        help="Seconds between reads of the virtual nodes and the list of clusters while a "
        "sidebar is open (cluster contents are pushed by their schedulers at once).",
    )

    @validate("max_workers")
    def _max_workers(self, proposal: Any) -> Any:
        value = proposal["value"]
        if value is not None and value < 0:
            raise TraitError(f"InterLinkExtension.max_workers must be >= 0, not {value}")
        return value

    @validate("refresh_interval")
    def _refresh_interval(self, proposal: Any) -> Any:
        value = proposal["value"]
        if value <= 0:
            raise TraitError(f"InterLinkExtension.refresh_interval must be > 0, not {value}")
        return value

    def initialize_settings(self) -> None:
        """Check the dask config once at start-up (a bad ``interlink:`` key is logged with
        its fix; the sidebar shows it too) and make the shared state."""
        try:
            load_options(attach=True)
        except Exception as exc:
            self.log.warning("interlink: %s", exc)
        self.live = Live(self.max_workers, self.refresh_interval)

    def initialize_handlers(self) -> None:
        self.handlers.extend(routes(self.live))

    async def stop_extension(self) -> None:
        """Close the clusters this server made (their pods and batch jobs go too)."""
        await self.live.close()
