"""The feedback store's guarantees, held against each backend (SQLite and a real PostgreSQL).

Every test reads the backend's storage directly (``Backend.rows``), so a test of the
PostgreSQL path fails if the events went to a SQLite file, and the other way round.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from agent.errors import FeedbackStoreError
from agent.feedback import (
    FeedbackStore,
    PostgresFeedbackStore,
    SQLiteFeedbackStore,
    feedback_interactions,
    open_feedback_store,
)
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ["'); DROP TABLE events; --", "x' OR '1'='1", 'Robert"); DELETE FROM mtrec_schema;--']


def test_the_target_picks_the_backend(backend, synthetic):
    store = backend.store()
    assert store.backend == backend.name
    assert isinstance(
        store, SQLiteFeedbackStore if backend.name == "sqlite" else PostgresFeedbackStore
    )
    item = synthetic.items[3].item_id
    first = store.add("u1", item, "like")
    second = store.add("u1", synthetic.items[5].item_id, "dislike")
    store.add("u2", item, "seen")
    assert second > first >= 1
    assert backend.rows("u1") == [
        ("u1", item, "like"),
        ("u1", synthetic.items[5].item_id, "dislike"),
    ]
    assert [(u, i, e) for u, i, e, _ in store.events("u2")] == [("u2", item, "seen")]
    hist = store.history("u1", synthetic)
    assert hist.items.tolist() == [3, 5] and hist.values.tolist() == [5.0, 1.0]
    store.add("u1", "not-an-item", "like")  # stored; histories skip unknown items
    assert len(store.history("u1", synthetic)) == 2
    assert len(feedback_interactions(store, synthetic)) == 3
    store.close()


def test_sql_text_is_data_and_the_schema_is_created_on_first_use(backend):
    assert backend.rows() == []  # nothing there before the first use
    store = backend.store()
    for text in HOSTILE:
        store.add(text, text, "seen")
    assert backend.rows() == [(t, t, "seen") for t in HOSTILE]
    assert [r[0] for r in store.events(HOSTILE[1])] == [HOSTILE[1]]  # no OR-1=1 widening
    if backend.name == "postgresql":
        import psycopg

        with psycopg.connect(backend.target) as db:
            version = db.execute("SELECT version FROM mtrec_schema WHERE component = 'feedback'")
            assert version.fetchone()[0] == 1


def test_bad_events_are_one_clear_error_and_store_nothing(backend):
    store = backend.store()
    cases = [
        (("u", "1", "meh"), "event must be one of"),
        ((" ", "1", "like"), "user_id must not be empty"),
        (("u", "", "like"), "item_id must not be empty"),
        (("u" * 201, "1", "like"), "longer than 200"),
    ]
    for args, needle in cases:
        with pytest.raises(ValueError, match=needle):
            store.add(*args)
    with pytest.raises(ValueError, match="event_id"):
        store.add("u", "1", "like", event_id="bad id with spaces")
    assert backend.rows() == []


def test_a_repeated_event_id_lands_once(backend):
    store = backend.store()
    a = store.add("u", "7", "like", event_id="client-123")
    b = store.add("u", "7", "like", event_id="client-123")
    assert a == b and backend.rows() == [("u", "7", "like")]
    with pytest.raises(ValueError, match="already used for a different event"):
        store.add("u", "8", "like", event_id="client-123")
    assert backend.rows() == [("u", "7", "like")]


WRITER = """
import json, sys, threading
from agent.feedback import FeedbackStore
store = FeedbackStore(sys.argv[1])
proc, threads, per = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ids = []
def work(t):
    for j in range(per):
        ids.append(store.add(f"w{proc}", f"{t}-{j}", "seen"))
ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
[t.start() for t in ts]
[t.join() for t in ts]
print(json.dumps(ids))
"""


def test_concurrent_writers_each_event_lands_once(backend):
    """4 processes x 4 threads x 15 events at once: 240 acknowledged ids, 240 rows, no doubles."""
    backend.store().close()  # schema in place, as a running service would have it
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, backend.target, str(p), "4", "15"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(4)
    ]
    acked: list[int] = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        acked += json.loads(out)
    assert len(acked) == len(set(acked)) == 240
    rows = backend.rows()
    assert len(rows) == 240
    expected = {(f"w{p}", f"{t}-{j}") for p in range(4) for t in range(4) for j in range(15)}
    assert {(u, i) for u, i, _ in rows} == expected


def test_acknowledged_feedback_survives_sigkill_of_the_writer(backend):
    code = textwrap.dedent(
        """
        import sys, time
        from agent.feedback import FeedbackStore
        store = FeedbackStore(sys.argv[1])
        for i in range(3):
            store.add("killed-user", str(50 + i), "like")
        print("ack", flush=True)
        while True:  # keeps writing when the kill lands
            store.add("killed-user", "busy", "seen")
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, backend.target], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ack"
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    rows = backend.rows("killed-user")
    assert rows[:3] == [("killed-user", str(50 + i), "like") for i in range(3)]
    assert all(r == ("killed-user", "busy", "seen") for r in rows[3:])
    # The store still opens and takes writes after the crash.
    store = backend.store()
    store.add("killed-user", "after", "seen")
    assert backend.rows("killed-user")[-1] == ("killed-user", "after", "seen")


def test_an_old_sqlite_file_is_migrated_on_first_use(tmp_path):
    path = tmp_path / "feedback.sqlite"
    with sqlite3.connect(path) as db:  # the schema before client event ids (version 0/1)
        db.executescript(
            "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, "
            "item_id TEXT NOT NULL, event TEXT NOT NULL CHECK (event IN ('like', 'dislike', "
            "'seen')), ts REAL NOT NULL); CREATE INDEX events_user ON events (user_id, id);"
            "INSERT INTO events (user_id, item_id, event, ts) VALUES ('old', '1', 'like', 1.0);"
        )
    store = FeedbackStore(path)
    assert store.add("old", "2", "seen", event_id="e-1") == store.add("old", "2", "seen", "e-1")
    assert [(u, i, e) for u, i, e, _ in store.events("old")] == [
        ("old", "1", "like"),
        ("old", "2", "seen"),
    ]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2


def test_a_file_that_is_not_a_database_is_one_clear_error(tmp_path):
    path = tmp_path / "feedback.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(FeedbackStoreError, match="cannot open the feedback store"):
        FeedbackStore(path)


# ---- PostgreSQL only ----------------------------------------------------------------------------
@pytest.mark.slow
def test_postgres_killed_mid_write_then_restarted_loses_and_doubles_nothing():
    """Writers keep adding while the PostgreSQL server is SIGKILLed and started again: every
    call either returns an id or raises; every returned id is in the table with its event;
    nothing lands twice (the retried insert carries the same uid)."""
    from tests.conftest import start_postgres

    server = start_postgres()
    try:
        url = server.create_database("crash")
        store = PostgresFeedbackStore(url, pool_size=4, retry_s=60)
        store.add("warm", "0", "seen")
        acked: dict[tuple[str, str], int] = {}
        failed: list[str] = []
        stop = threading.Event()
        lock = threading.Lock()

        def writer(w: int) -> None:
            j = 0
            while not stop.is_set():
                item = f"{w}-{j}"
                try:
                    row = store.add(f"writer{w}", item, "like")
                except FeedbackStoreError as e:
                    failed.append(str(e))
                else:
                    with lock:
                        acked[(f"writer{w}", item)] = row
                j += 1

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        while len(acked) < 200:
            time.sleep(0.01)
        server.kill()
        at_kill = len(acked)
        time.sleep(1.0)  # writers are now retrying against a dead server
        server.restart_after_crash()
        deadline = time.monotonic() + 60
        while len(acked) < at_kill + 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join(60)
        assert not failed, failed[:3]
        assert len(acked) >= at_kill + 200, "writers did not resume after the restart"
        import psycopg

        with psycopg.connect(url) as db:
            rows = db.execute(
                "SELECT id, user_id, item_id, event FROM mtrec_feedback_events "
                "WHERE user_id LIKE 'writer%%'"
            ).fetchall()
        stored = {(u, i): row_id for row_id, u, i, e in rows}
        assert len(stored) == len(rows), "an event landed twice"
        assert stored == acked  # nothing lost, nothing unacknowledged, nothing doubled
        print(f"{at_kill} acknowledged before the kill, {len(acked)} in all, {len(rows)} rows")
    finally:
        server.destroy()


def test_unreachable_postgres_is_one_line_without_the_password(
    trained_workspace, capsys, monkeypatch
):
    from agent.distributed import free_port

    secret = "pw-Zq81x-never-printed"
    url = f"postgresql://mtrec:{secret}@127.0.0.1:{free_port()}/nodb"
    store = PostgresFeedbackStore(url, retry_s=0.5)
    with pytest.raises(FeedbackStoreError) as info:
        store.add("u", "1", "like")
    message = str(info.value)
    assert "127.0.0.1" in message and secret not in message and "\n" not in message
    assert secret not in repr(store) and secret not in store.describe()
    store.close()

    monkeypatch.setenv("MTREC_FEEDBACK_URL", url)
    monkeypatch.setenv("MTREC_FEEDBACK_RETRY_S", "0.5")
    code, out, err = run_cli(
        ["recommend", "--user", "1", "--llm", "none", "-w", str(trained_workspace)], capsys
    )
    assert code == 1 and "cannot read the feedback store" in err, err
    assert secret not in out + err and len(err.strip().splitlines()) == 1


def test_a_feedback_url_that_is_not_postgres_is_exit_2(trained_workspace, capsys, monkeypatch):
    monkeypatch.setenv("MTREC_FEEDBACK_URL", "mysql://u@127.0.0.1/db")
    code, _, err = run_cli(["recommend", "--user", "1", "-w", str(trained_workspace)], capsys)
    assert code == 2 and "MTREC_FEEDBACK_URL must be a postgresql:// URL" in err


def test_open_feedback_store_follows_the_environment(pg_url, tmp_path, monkeypatch):
    from agent.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    monkeypatch.delenv("MTREC_FEEDBACK_URL", raising=False)
    assert open_feedback_store(ws, create=False) is None
    assert open_feedback_store(ws).backend == "sqlite"
    monkeypatch.setenv("MTREC_FEEDBACK_URL", pg_url)
    store = open_feedback_store(ws, create=False)
    assert store is not None and store.backend == "postgresql"
