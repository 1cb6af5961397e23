"""The feedback store in a SQLite file (WAL, ``synchronous=FULL``): one host's processes.

SQLite over a network file system loses writes; several hosts share a PostgreSQL store
instead (``agent.feedback.postgres``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from agent.errors import FeedbackStoreError
from agent.feedback.base import (
    EventRow,
    FeedbackStore,
    as_path,
    check_event,
    same_event_or_raise,
)
from agent.schema import Feedback

#: Schema versions: 1 = events without client ids; 2 = ``uid`` (a client's event id).
SCHEMA_VERSION = 2

_CREATE = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    event TEXT NOT NULL CHECK (event IN ('like', 'dislike', 'seen')),
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_user ON events (user_id, id);
"""


class SQLiteFeedbackStore(FeedbackStore):
    """Events in a SQLite file; ``add`` returns after a ``synchronous=FULL`` commit."""

    backend = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        try:
            self._migrate()
        except sqlite3.Error as e:
            raise FeedbackStoreError(f"cannot open the feedback store {self.path}: {e}") from e

    @classmethod
    def handles(cls, target: object) -> bool:
        return as_path(target) is not None

    def describe(self) -> str:
        return str(self.path)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as e:
                raise FeedbackStoreError(f"cannot open the feedback store {self.path}: {e}") from e
            self._local.conn = conn
        return conn

    def _migrate(self) -> None:
        """Create the schema, or bring an older file up to ``SCHEMA_VERSION`` (in one
        exclusive transaction, so concurrent first users do it once)."""
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            for statement in _CREATE.split(";"):
                if statement.strip():
                    c.execute(statement)
            version = int(c.execute("PRAGMA user_version").fetchone()[0])
            if version < 2:
                cols = {r[1] for r in c.execute("PRAGMA table_info(events)")}
                if "uid" not in cols:
                    c.execute("ALTER TABLE events ADD COLUMN uid TEXT")
                c.execute("CREATE UNIQUE INDEX IF NOT EXISTS events_uid ON events (uid)")
                c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def add(
        self, user_id: str, item_id: str, event: Feedback | str, event_id: str | None = None
    ) -> int:
        user_id, item_id, ev = check_event(user_id, item_id, event, event_id)
        conn = self._conn()
        try:
            if event_id is None:
                cur = conn.execute(
                    "INSERT INTO events (user_id, item_id, event, ts) VALUES (?, ?, ?, ?)",
                    (user_id, item_id, ev.value, time.time()),
                )
                return int(cur.lastrowid or 0)
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT id, user_id, item_id, event FROM events WHERE uid = ?", (event_id,)
                ).fetchone()
                if row is None:
                    cur = conn.execute(
                        "INSERT INTO events (uid, user_id, item_id, event, ts) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (event_id, user_id, item_id, ev.value, time.time()),
                    )
                    row_id = int(cur.lastrowid or 0)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if row is not None:
                same_event_or_raise(tuple(row[1:]), user_id, item_id, ev)
                return int(row[0])
            return row_id
        except sqlite3.Error as e:
            raise FeedbackStoreError(f"cannot write to the feedback store: {e}") from e

    def events(self, user_id: str | None = None) -> list[EventRow]:
        sql = "SELECT user_id, item_id, event, ts FROM events"
        args: tuple[str, ...] = ()
        if user_id is not None:
            sql += " WHERE user_id = ?"
            args = (str(user_id),)
        try:
            return list(self._conn().execute(sql + " ORDER BY id", args))
        except sqlite3.Error as e:
            raise FeedbackStoreError(f"cannot read the feedback store: {e}") from e

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
