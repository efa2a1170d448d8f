"""The file handling the queue service's and the workflows engine's embedded SQLite logs share.

One connection per process, used from worker threads under one asyncio lock; WAL and
synchronous=FULL, so an append is durable once it returns.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from eventlog.private_files import private_sqlite


class SqliteLogFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _open(self, *pragmas: str) -> sqlite3.Connection:
        """Open the file (making its folder); `pragmas` are run after the shared ones."""
        private_sqlite(self.path)  # tenant messages and workflow state: private
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        for pragma in pragmas:
            db.execute(f"PRAGMA {pragma}")
        return db

    async def stop(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._db
