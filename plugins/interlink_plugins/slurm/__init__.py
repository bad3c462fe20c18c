"""The SLURM backend: pods as batch jobs (``interlink plugin slurm``)."""

from __future__ import annotations

from typing import Any

__all__ = ["SlurmPlugin"]


def __getattr__(name: str) -> Any:
    if name == "SlurmPlugin":
        from .plugin import SlurmPlugin

        return SlurmPlugin
    raise AttributeError(name)
