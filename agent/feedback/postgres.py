"""The feedback store on PostgreSQL (psycopg 3 with a connection pool): any number of hosts.

Chosen by ``MTREC_FEEDBACK_URL=postgresql://user@host:5432/db``. The schema (table
``mtrec_feedback_events`` and the version table ``mtrec_schema``) is created or migrated on
first use, under an advisory lock so that nodes starting together do it once. Every
statement is parameterised; no SQL is assembled from a request's text.

Each ``add`` is one autocommitted ``INSERT`` (PostgreSQL's default ``synchronous_commit=on``:
acknowledged means in the server's WAL on disk). Every row carries a unique ``uid`` (the
client's ``event_id``, else a fresh UUID), so when the connection drops while an insert is in
flight (the server restarting, a failover) the store reconnects and repeats it without ever
storing it twice. It keeps trying for ``retry_s`` seconds, then raises
``FeedbackStoreError``.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from agent.errors import FeedbackStoreError, redact, remember_secret
from agent.feedback.base import (
    EventRow,
    FeedbackStore,
    check_event,
    is_postgres_url,
    same_event_or_raise,
)
from agent.schema import Feedback

T = TypeVar("T")

SCHEMA_VERSION = 1
#: ``pg_advisory_xact_lock`` key of the migration (any constant; "mtrec" in ASCII).
MIGRATION_LOCK = 0x6D74726563
#: Connections per process (``MTREC_FEEDBACK_POOL_SIZE``).
DEFAULT_POOL_SIZE = 10
#: How long a call keeps retrying a lost connection (``MTREC_FEEDBACK_RETRY_S``).
DEFAULT_RETRY_S = 15.0

_MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE IF NOT EXISTS mtrec_feedback_events (
            id BIGSERIAL PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,
            user_id TEXT NOT NULL,
            item_id TEXT NOT NULL,
            event TEXT NOT NULL CHECK (event IN ('like', 'dislike', 'seen')),
            ts DOUBLE PRECISION NOT NULL
        )""",
        """CREATE INDEX IF NOT EXISTS mtrec_feedback_events_user
            ON mtrec_feedback_events (user_id, id)""",
    ],
}


class PostgresFeedbackStore(FeedbackStore):
    """Events in a PostgreSQL table, through a per-process connection pool.

    Args:
        url: ``postgresql://user[:password]@host[:port]/dbname[?options]`` (libpq's URL).
        pool_size: Most connections this process opens.
        retry_s: How long one call retries a lost connection before it fails.
    """

    backend = "postgresql"

    def __init__(
        self, url: str, pool_size: int | None = None, retry_s: float | None = None
    ) -> None:
        from psycopg.conninfo import conninfo_to_dict

        try:
            info = conninfo_to_dict(url)
        except Exception:
            raise ValueError("MTREC_FEEDBACK_URL is not a valid postgresql:// URL") from None
        password = info.get("password")
        if password:
            remember_secret(str(password))  # never printed from here on
        self.url = url
        self._where = _safe_url(info)
        env_size = os.environ.get("MTREC_FEEDBACK_POOL_SIZE")
        self.pool_size = int(pool_size or env_size or DEFAULT_POOL_SIZE)
        env_retry = os.environ.get("MTREC_FEEDBACK_RETRY_S")
        self.retry_s = float(retry_s if retry_s is not None else env_retry or DEFAULT_RETRY_S)
        self._lock = threading.Lock()
        self._pool: Any = None
        self._pid = 0
        self._migrated = False

    @classmethod
    def handles(cls, target: object) -> bool:
        return is_postgres_url(target)

    def describe(self) -> str:
        return self._where

    # ---- connections ------------------------------------------------------------------------
    def _get_pool(self) -> Any:
        """This process's pool (a forked worker opens its own)."""
        if self._pool is None or self._pid != os.getpid():
            with self._lock:
                if self._pool is None or self._pid != os.getpid():
                    from psycopg_pool import ConnectionPool

                    self._pool = ConnectionPool(
                        self.url,
                        min_size=1,
                        max_size=self.pool_size,
                        kwargs={"autocommit": True, "connect_timeout": 5},
                        check=ConnectionPool.check_connection,
                        timeout=max(1.0, self.retry_s),
                        open=False,
                        name="mtrec-feedback",
                    )
                    self._pool.open(wait=False)
                    self._pid = os.getpid()
                    self._migrated = False
        return self._pool

    def _run(self, what: str, fn: Callable[[Any], T]) -> T:
        """``fn(connection)``, retried on a lost connection until ``retry_s`` has passed."""
        import psycopg
        from psycopg_pool import PoolTimeout

        deadline = time.monotonic() + self.retry_s
        delay = 0.1
        while True:
            try:
                pool = self._get_pool()
                with pool.connection() as conn:
                    if not self._migrated:
                        self._migrate(conn)
                    return fn(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as e:
                if time.monotonic() + delay > deadline:
                    raise FeedbackStoreError(
                        f"cannot {what} the feedback store at {self._where}: "
                        f"{redact(_first_line(e))}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            except psycopg.Error as e:
                raise FeedbackStoreError(
                    f"cannot {what} the feedback store at {self._where}: {redact(_first_line(e))}"
                ) from None

    def _migrate(self, conn: Any) -> None:
        """Create or upgrade the schema to ``SCHEMA_VERSION`` (once per process)."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS mtrec_schema "
                "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            row = conn.execute(
                "SELECT version FROM mtrec_schema WHERE component = %s", ("feedback",)
            ).fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise FeedbackStoreError(
                    f"the feedback store at {self._where} has schema version {version}; this "
                    f"mtrec knows up to {SCHEMA_VERSION}: upgrade mtrec"
                )
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[v]:
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO mtrec_schema (component, version) VALUES (%s, %s) "
                "ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
                ("feedback", SCHEMA_VERSION),
            )
        self._migrated = True

    # ---- the store --------------------------------------------------------------------------
    def add(
        self, user_id: str, item_id: str, event: Feedback | str, event_id: str | None = None
    ) -> int:
        user_id, item_id, ev = check_event(user_id, item_id, event, event_id)
        uid = event_id if event_id is not None else f"auto:{uuid.uuid4().hex}"
        ts = time.time()

        def insert(conn: Any) -> tuple[int, tuple[str, str, str] | None]:
            row = conn.execute(
                "INSERT INTO mtrec_feedback_events (uid, user_id, item_id, event, ts) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (uid) DO NOTHING RETURNING id",
                (uid, user_id, item_id, ev.value, ts),
            ).fetchone()
            if row is not None:
                return int(row[0]), None
            # Already there: a retry of a call whose commit went through, or a client's repeat.
            old = conn.execute(
                "SELECT id, user_id, item_id, event FROM mtrec_feedback_events WHERE uid = %s",
                (uid,),
            ).fetchone()
            return int(old[0]), (old[1], old[2], old[3])

        row_id, stored = self._run("write to", insert)
        if stored is not None:
            same_event_or_raise(stored, user_id, item_id, ev)
        return row_id

    def events(self, user_id: str | None = None) -> list[EventRow]:
        def select(conn: Any) -> list[EventRow]:
            if user_id is None:
                cur = conn.execute(
                    "SELECT user_id, item_id, event, ts FROM mtrec_feedback_events ORDER BY id"
                )
            else:
                cur = conn.execute(
                    "SELECT user_id, item_id, event, ts FROM mtrec_feedback_events "
                    "WHERE user_id = %s ORDER BY id",
                    (str(user_id),),
                )
            return [(r[0], r[1], r[2], float(r[3])) for r in cur.fetchall()]

        return self._run("read", select)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            self._pool = None


def _safe_url(info: dict[str, Any]) -> str:
    """``postgresql://user@host:port/db`` without the password (or any other option)."""
    user = f"{info['user']}@" if info.get("user") else ""
    host = str(info.get("host") or info.get("hostaddr") or "localhost")
    if host.startswith("/"):
        host = f"[{host}]"
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{host}{port}/{info.get('dbname') or ''}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
