"""Which tenant owns which pod, persisted in SQLite, so that tenants sharing one edge never see,
delete or read the logs of each other's pods."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import Forbidden
from .store import private_file
from .tenants import Quota, check_quota

_SCHEMA = """
CREATE TABLE IF NOT EXISTS owners (
    uid        TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    job_id     TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    cpus       REAL NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True)
class Owned:
    """A pod a tenant owns."""

    uid: str
    tenant: str
    namespace: str
    name: str
    job_id: str
    cpus: float = 0.0


class TenantRegistry:
    """Pod UID → owning tenant (and the job id the plugin gave it), kept in SQLite and mirrored
    in memory (lookups of a thousand pods per status call stay sub-millisecond)."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            private_file(Path(path))
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives a kill -9 of the process (only a power cut can lose
        # the last commits), without an fsync per request
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(owners)")}
        if "cpus" not in columns:  # a registry from before quotas: its pods count 0 CPUs
            self._db.execute("ALTER TABLE owners ADD COLUMN cpus REAL NOT NULL DEFAULT 0")
        rows = self._db.execute("SELECT uid, tenant, namespace, name, job_id, cpus FROM owners")
        self._owners: dict[str, Owned] = {row[0]: Owned(*row) for row in rows}
        self._held: dict[str, tuple[int, float]] = {}  # tenant: pods and CPUs it holds
        for owned in self._owners.values():
            self._hold(owned, 1)

    def _hold(self, owned: Owned, sign: int) -> None:
        pods, cpus = self._held.get(owned.tenant, (0, 0.0))
        pods, cpus = pods + sign, cpus + sign * owned.cpus
        if pods:
            self._held[owned.tenant] = (pods, cpus)
        else:
            self._held.pop(owned.tenant, None)

    def held(self, tenant: str) -> tuple[int, float]:
        """How many pods, and how many CPUs, a tenant holds."""
        return self._held.get(tenant, (0, 0.0))

    def lookup(self, uids: list[str]) -> dict[str, Owned]:
        """Owners of these UIDs (unknown UIDs are absent)."""
        owners = self._owners
        return {uid: owners[uid] for uid in uids if uid in owners}

    def claim(
        self,
        uid: str,
        tenant: str,
        namespace: str,
        name: str,
        cpus: float = 0.0,
        quota: Quota | None = None,
    ) -> Owned:
        """Record that ``tenant`` creates pod ``uid`` (of ``cpus`` CPUs); refuse a UID another
        tenant owns, and a new pod beyond the tenant's ``quota`` (429)."""
        owned = self._owners.get(uid)
        if owned is None:
            if quota is not None:
                check_quota(tenant, quota, *self.held(tenant), cpus)
            self._db.execute(
                "INSERT INTO owners (uid, tenant, namespace, name, created_at, cpus) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (uid, tenant, namespace, name, time.time(), cpus),
            )
            owned = self._owners[uid] = Owned(uid, tenant, namespace, name, "", cpus)
            self._hold(owned, 1)
        if owned.tenant != tenant:
            raise Forbidden(f"pod uid {uid} belongs to another tenant")
        return owned

    def set_job(self, uid: str, job_id: str) -> None:
        """Remember the job id the plugin gave a pod (for idempotent creates)."""
        self._db.execute("UPDATE owners SET job_id = ? WHERE uid = ?", (job_id, uid))
        owned = self._owners.get(uid)
        if owned is not None:
            self._owners[uid] = replace(owned, job_id=job_id)

    def release(self, uid: str) -> None:
        """Forget a deleted pod."""
        self._db.execute("DELETE FROM owners WHERE uid = ?", (uid,))
        owned = self._owners.pop(uid, None)
        if owned is not None:
            self._hold(owned, -1)

    def close(self) -> None:
        """Close the database."""
        self._db.close()
