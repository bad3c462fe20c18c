"""Kubelet Events recorded at the edge (probe failures, kills, back-offs, hook failures), sent
with each pod status (``events``, our addition to the wire contract), written to Kubernetes once.

Each pod's events carry a ``seq`` that grows; the VK remembers the highest it wrote per pod. A
VK that restarts does not know what it wrote before, so it writes only events recorded after
it started: none is written twice, those recorded while no VK ran are not written at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from interlink_core.models import JSON


@dataclass
class RemoteEvents:
    """Which edge Events of each pod are new."""

    since: float = field(default_factory=time.time)
    _seen: dict[str, int] = field(default_factory=dict)  # pod UID: highest seq written

    def new(self, uid: str, events: list[JSON] | None) -> list[JSON]:
        """The events not written yet (oldest first), now counted as written."""
        if not events:
            return []
        last = self._seen.get(uid, 0)
        fresh = [
            e
            for e in sorted(events, key=lambda e: int(e.get("seq", 0)))
            if int(e.get("seq", 0)) > last and float(e.get("at", 0)) >= self.since
        ]
        top = max(int(e.get("seq", 0)) for e in events)
        self._seen[uid] = max(last, top)
        return fresh

    def forget(self, uid: str) -> None:
        """The pod is gone."""
        self._seen.pop(uid, None)
