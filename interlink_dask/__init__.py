"""Dask clusters whose workers run as pods on interLink virtual nodes."""

from __future__ import annotations

from pathlib import Path

import dask.config
import yaml

with (Path(__file__).parent / "interlink.yaml").open() as _f:
    dask.config.update_defaults(yaml.safe_load(_f))

from .cluster import InterLinkCluster
from .states import WorkerState

__all__ = ["InterLinkCluster", "WorkerState"]
