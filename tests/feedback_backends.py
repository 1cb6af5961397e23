"""The feedback backends the same tests run against, and a reader that looks at each
backend's storage directly (not through mtrec), so a test knows which backend stored what."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Backend:
    """Where a test's feedback goes: a SQLite file or a PostgreSQL database."""

    name: str
    target: str  # the SQLite path, or the postgresql:// URL

    def store(self, **kwargs):
        from agent.feedback import FeedbackStore

        return FeedbackStore(self.target, **kwargs)

    def env(self) -> dict[str, str]:
        """What a subprocess (``mtrec serve``) needs in its environment for this backend."""
        return {"MTREC_FEEDBACK_URL": self.target} if self.name == "postgresql" else {}

    def rows(self, user_id: str | None = None) -> list[tuple[str, str, str]]:
        """(user_id, item_id, event) rows in id order, read straight from the storage."""
        where = " WHERE user_id = ?" if user_id is not None else ""
        args = (user_id,) if user_id is not None else ()
        if self.name == "sqlite":
            if not Path(self.target).exists():
                return []
            with sqlite3.connect(self.target) as db:
                sql = f"SELECT user_id, item_id, event FROM events{where} ORDER BY id"
                return [tuple(r) for r in db.execute(sql, args)]
        import psycopg

        with psycopg.connect(self.target) as db:
            exists = db.execute("SELECT to_regclass('mtrec_feedback_events')").fetchone()[0]
            if exists is None:
                return []
            sql = "SELECT user_id, item_id, event FROM mtrec_feedback_events"
            sql += where.replace("?", "%s") + " ORDER BY id"
            return [tuple(r) for r in db.execute(sql, args).fetchall()]


def backend_for(name: str, workspace: Path, request) -> Backend:
    """The backend ``name`` for a workspace: its SQLite file, or a fresh PostgreSQL database."""
    if name == "sqlite":
        return Backend("sqlite", str(workspace / "feedback.sqlite"))
    return Backend("postgresql", request.getfixturevalue("postgres_server").create_database())
