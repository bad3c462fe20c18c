"""Talking to the HTCondor schedd: a narrow :class:`Schedd` protocol (what the plugin needs,
nothing more) and its real implementation on the ``htcondor2`` bindings, imported only when
the plugin starts so that the rest of the package works without them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from interlink_core.errors import BackendUnavailable, BadRequest

PROJECTION = [
    "ClusterId",
    "ProcId",
    "JobStatus",
    "HoldReason",
    "LastRejMatchReason",
    "RemoveReason",
    "ExitCode",
    "ExitBySignal",
    "ExitSignal",
    "JobCurrentStartDate",
    "EnteredCurrentStatus",
    "CompletionDate",
]

Ad = Mapping[str, Any]


class Schedd(Protocol):
    """What the plugin asks of a schedd (blocking calls; the plugin runs them in a thread)."""

    def submit(self, description: dict[str, str]) -> int:
        """Queue one job; its cluster id."""
        ...

    def query(self, constraint: str, projection: list[str]) -> list[Ad]:
        """Ads of the jobs in the queue that match."""
        ...

    def history(self, constraint: str, projection: list[str]) -> list[Ad]:
        """Ads of the jobs that left the queue and match."""
        ...

    def remove(self, cluster_ids: list[int]) -> None:
        """Remove these clusters' jobs."""
        ...


def member_constraint(cluster_ids: list[int]) -> str:
    """A constraint matching exactly these clusters."""
    return "member(ClusterId, {" + ", ".join(str(int(c)) for c in cluster_ids) + "})"


@dataclass
class Calls:
    """How many times each schedd call ran (for benchmarks and tests)."""

    submit: int = 0
    query: int = 0
    history: int = 0
    remove: int = 0


class BindingsSchedd:
    """:class:`Schedd` on the ``htcondor2`` bindings (extra ``interlink[htcondor]``)."""

    def __init__(self, name: str | None = None, collector: str | None = None) -> None:
        try:
            import htcondor2
        except ImportError:
            raise BackendUnavailable(
                "the htcondor Python bindings are not installed: pip install 'interlink[htcondor]'"
            ) from None
        self._htcondor: Any = htcondor2
        self._name = name
        self._collector = collector
        self._schedd: Any = None

    def _get(self) -> Any:
        if self._schedd is None:
            htc = self._htcondor
            try:
                if self._name is None and self._collector is None:
                    self._schedd = htc.Schedd()
                else:
                    coll = htc.Collector(self._collector) if self._collector else htc.Collector()
                    ad = coll.locate(htc.DaemonType.Schedd, self._name)
                    self._schedd = htc.Schedd(ad)
            except Exception as exc:  # the bindings raise HTCondorException and friends
                raise BackendUnavailable(f"cannot reach the HTCondor schedd: {exc}") from None
        return self._schedd

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            self._schedd = None  # locate it again next time
            raise BackendUnavailable(f"HTCondor {what} failed: {exc}") from None

    def submit(self, description: dict[str, str]) -> int:
        schedd = self._get()
        try:
            sub = self._htcondor.Submit(description)
            result = schedd.submit(sub, count=1)
        except Exception as exc:
            text = str(exc)
            if any(w in text.lower() for w in ("parse", "syntax", "invalid", "unknown")):
                raise BadRequest(f"HTCondor refused the job: {text}") from None
            self._schedd = None
            raise BackendUnavailable(f"HTCondor submit failed: {text}") from None
        return int(result.cluster())

    def query(self, constraint: str, projection: list[str]) -> list[Ad]:
        schedd = self._get()
        return list(self._call("query", schedd.query, constraint=constraint, projection=projection))

    def history(self, constraint: str, projection: list[str]) -> list[Ad]:
        schedd = self._get()
        return list(
            self._call("history", schedd.history, constraint=constraint, projection=projection)
        )

    def remove(self, cluster_ids: list[int]) -> None:
        schedd = self._get()
        self._call(
            "remove",
            schedd.act,
            self._htcondor.JobAction.Remove,
            member_constraint(cluster_ids),
            reason="deleted in Kubernetes (interLink)",
        )
