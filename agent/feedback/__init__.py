"""Append-only feedback events in SQLite (WAL), read back into user histories."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from agent.schema import Feedback, feedback_rating_value
from agent.workspace import Workspace
from mtrec.data.history import History
from mtrec.data.schema import Dataset, Interaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    event TEXT NOT NULL CHECK (event IN ('like', 'dislike', 'seen')),
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_user ON events (user_id, id);
"""


class FeedbackStore:
    """Feedback events of users on items.

    ``add`` returns only after the row is committed with ``synchronous=FULL``, so an
    acknowledged event survives the process being killed right after.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as c:
            c.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def add(self, user_id: str, item_id: str, event: Feedback | str) -> int:
        """Append one event; returns its id once durable.

        Raises:
            ValueError: an unknown event name.
        """
        event = Feedback(event)
        conn = self._conn()
        cur = conn.execute(
            "INSERT INTO events (user_id, item_id, event, ts) VALUES (?, ?, ?, ?)",
            (str(user_id), str(item_id), event.value, time.time()),
        )
        return int(cur.lastrowid or 0)

    def events(self, user_id: str | None = None) -> list[tuple[str, str, str, float]]:
        """(user_id, item_id, event, ts) rows in insertion order."""
        sql = "SELECT user_id, item_id, event, ts FROM events"
        args: tuple[str, ...] = ()
        if user_id is not None:
            sql += " WHERE user_id = ?"
            args = (str(user_id),)
        return list(self._conn().execute(sql + " ORDER BY id", args))

    def history(self, user_id: str, ds: Dataset) -> History:
        """The user's feedback as a history over the dataset's items (unknown items skipped)."""
        rows = [r for r in self.events(user_id) if ds.has_item(r[1])]
        events = [Feedback(r[2]) for r in rows]
        return History(
            np.array([ds.item_index(r[1]) for r in rows], np.int64),
            np.array([e.event.code for e in events], np.int8),
            np.array([feedback_rating_value(e) for e in events], np.float32),
        )


def open_feedback_store(ws: Workspace, create: bool = True) -> FeedbackStore | None:
    """The workspace's feedback store (None when there is none yet and ``create`` is off)."""
    if not create and not ws.feedback_path.exists():
        return None
    return FeedbackStore(ws.feedback_path)


def feedback_interactions(store: FeedbackStore, ds: Dataset) -> list[Interaction]:
    """Stored events as ``Interaction`` records on the dataset's catalog (unknown items skipped)."""
    out = []
    for user_id, item_id, name, ts in store.events():
        if ds.has_item(item_id):
            event = Feedback(name)
            out.append(Interaction(user_id, item_id, event.event, event.rating, ts))
    return out
