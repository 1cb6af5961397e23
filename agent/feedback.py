"""Append-only feedback events in SQLite (WAL), read back into user histories."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from mtrec.data.history import History
from mtrec.data.schema import Dataset, EventType

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
#: Ratings implied by feedback events, so that the user encoder sees them as it sees ratings.
EVENT_RATING = {"like": 5.0, "dislike": 1.0, "seen": float("nan")}


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

    def add(self, user_id: str, item_id: str, event: str) -> int:
        """Append one event; returns its id once durable.

        Raises:
            ValueError: an unknown event name.
        """
        if event not in EVENT_RATING:
            raise ValueError(f"event must be one of {sorted(EVENT_RATING)}, got {event!r}")
        conn = self._conn()
        cur = conn.execute(
            "INSERT INTO events (user_id, item_id, event, ts) VALUES (?, ?, ?, ?)",
            (str(user_id), str(item_id), event, time.time()),
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
        items = np.array([ds.item_index(r[1]) for r in rows], np.int64)
        values = np.array([EVENT_RATING[r[2]] for r in rows], np.float32)
        kinds = {"like": EventType.LIKE, "dislike": EventType.DISLIKE, "seen": EventType.SEEN}
        events = np.array([kinds[r[2]].code for r in rows], np.int8)
        return History(items, events, values)


def feedback_interactions(store: FeedbackStore, ds: Dataset) -> list:
    """Stored events as ``Interaction`` records on the dataset's catalog (unknown items skipped)."""
    from mtrec.data.schema import Interaction

    kinds = {"like": EventType.LIKE, "dislike": EventType.DISLIKE, "seen": EventType.SEEN}
    out = []
    for user_id, item_id, event, ts in store.events():
        if ds.has_item(item_id):
            rating = EVENT_RATING[event]
            out.append(
                Interaction(
                    user_id, item_id, kinds[event], None if rating != rating else rating, ts
                )
            )
    return out
