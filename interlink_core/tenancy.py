"""Which tenant owns which pod, persisted in SQLite, so that tenants sharing one edge never see,
delete or read the logs of each other's pods."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import Forbidden

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
    """Pod UID → owning tenant (and the job id the plugin gave it)."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives a kill -9 of the process (only a power cut can lose
        # the last commits), without an fsync per request
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def lookup(self, uids: list[str]) -> dict[str, Owned]:
        """Owners of these UIDs (unknown UIDs are absent)."""
        out: dict[str, Owned] = {}
        for start in range(0, len(uids), 500):
            chunk = uids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT uid, tenant, namespace, name, job_id FROM owners WHERE uid IN ({marks})",  # noqa: S608
                chunk,
            )
            for row in rows:
                out[row[0]] = Owned(*row)
        return out

    def claim(self, uid: str, tenant: str, namespace: str, name: str) -> Owned:
        """Record that ``tenant`` creates pod ``uid``; refuse a UID another tenant owns."""
        self._db.execute(
            "INSERT OR IGNORE INTO owners (uid, tenant, namespace, name, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (uid, tenant, namespace, name, time.time()),
        )
        owned = self.lookup([uid])[uid]
        if owned.tenant != tenant:
            raise Forbidden(f"pod uid {uid} belongs to another tenant")
        return owned

    def set_job(self, uid: str, job_id: str) -> None:
        """Remember the job id the plugin gave a pod (for idempotent creates)."""
        self._db.execute("UPDATE owners SET job_id = ? WHERE uid = ?", (job_id, uid))

    def release(self, uid: str) -> None:
        """Forget a deleted pod."""
        self._db.execute("DELETE FROM owners WHERE uid = ?", (uid,))

    def count(self, tenant: str | None = None) -> int:
        """How many pods are registered (for one tenant, or all)."""
        if tenant is None:
            row = self._db.execute("SELECT COUNT(*) FROM owners").fetchone()
        else:
            row = self._db.execute(
                "SELECT COUNT(*) FROM owners WHERE tenant = ?", (tenant,)
            ).fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the database."""
        self._db.close()
