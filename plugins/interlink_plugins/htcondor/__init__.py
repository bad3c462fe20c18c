"""The HTCondor backend: pods as HTCondor jobs (``interlink plugin htcondor``)."""

from __future__ import annotations

from typing import Any

__all__ = ["HTCondorPlugin"]


def __getattr__(name: str) -> Any:
    if name == "HTCondorPlugin":
        from .plugin import HTCondorPlugin

        return HTCondorPlugin
    raise AttributeError(name)
