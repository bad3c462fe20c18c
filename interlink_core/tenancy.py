"""Which tenant owns which pod, persisted in SQLite, so that tenants sharing one edge never see,
delete or read the logs of each other's pods."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import Forbidden
from .store import private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS owners (
    uid        TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    job_id     TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
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
        rows = self._db.execute("SELECT uid, tenant, namespace, name, job_id FROM owners")
        self._owners: dict[str, Owned] = {row[0]: Owned(*row) for row in rows}

    def lookup(self, uids: list[str]) -> dict[str, Owned]:
        """Owners of these UIDs (unknown UIDs are absent)."""
        owners = self._owners
        return {uid: owners[uid] for uid in uids if uid in owners}

    def claim(self, uid: str, tenant: str, namespace: str, name: str) -> Owned:
        """Record that ``tenant`` creates pod ``uid``; refuse a UID another tenant owns."""
        owned = self._owners.get(uid)
        if owned is None:
            self._db.execute(
                "INSERT INTO owners (uid, tenant, namespace, name, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (uid, tenant, namespace, name, time.time()),
            )
            owned = self._owners[uid] = Owned(uid, tenant, namespace, name, "")
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
        self._owners.pop(uid, None)

    def close(self) -> None:
        """Close the database."""
        self._db.close()
