"""SQLite-backed pod ↔ job table shared by plugins (and the API server's tenant registry)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    uid        TEXT PRIMARY KEY,
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    job_id     TEXT NOT NULL,
    created_at REAL NOT NULL,
    data       TEXT NOT NULL DEFAULT '{}'
);
"""


@dataclass
class JobRecord:
    """One pod known to a plugin: its identity, its remote job id and backend-specific data."""

    uid: str
    namespace: str
    name: str
    job_id: str
    created_at: float = field(default_factory=time.time)
    data: dict[str, Any] = field(default_factory=dict)


class JobStore:
    """The persistent pod ↔ job table of one plugin (survives a kill -9 of the plugin)."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            private_file(Path(self.path))
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def put(self, rec: JobRecord) -> None:
        """Insert or replace a record."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?)",
                (
                    rec.uid,
                    rec.namespace,
                    rec.name,
                    rec.job_id,
                    rec.created_at,
                    json.dumps(rec.data),
                ),
            )

    def get(self, uid: str) -> JobRecord | None:
        """The record of a pod UID, if known."""
        row = self._db.execute("SELECT * FROM jobs WHERE uid = ?", (uid,)).fetchone()
        return _record(row) if row else None

    def many(self, uids: list[str]) -> dict[str, JobRecord]:
        """The records of several UIDs at once (one query)."""
        out: dict[str, JobRecord] = {}
        for start in range(0, len(uids), 500):
            chunk = uids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(f"SELECT * FROM jobs WHERE uid IN ({marks})", chunk):  # noqa: S608
                rec = _record(row)
                out[rec.uid] = rec
        return out

    def all(self) -> list[JobRecord]:
        """Every record, oldest first."""
        return [_record(r) for r in self._db.execute("SELECT * FROM jobs ORDER BY created_at")]

    def remove(self, uid: str) -> None:
        """Forget a pod."""
        with self.transaction() as db:
            db.execute("DELETE FROM jobs WHERE uid = ?", (uid,))

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def private_file(path: Path) -> None:
    """Create ``path`` (if missing) readable by its owner only, and make it so (SQLite gives
    its -wal and -shm files the database file's permissions)."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    path.chmod(0o600)


def _record(row: tuple[Any, ...]) -> JobRecord:
    return JobRecord(
        uid=row[0],
        namespace=row[1],
        name=row[2],
        job_id=row[3],
        created_at=row[4],
        data=json.loads(row[5]),
    )
