"""Two serving nodes, one truth: two `mtrec serve` processes standing in for two hosts
(different workspace copies and ports, no shared files) on one `chroma run` server and one
PostgreSQL. Feedback posted to node A changes node B's next answer; `kill -9` of a node while
it takes feedback loses no acknowledged event, and retries of the unacknowledged ones (same
`event_id`, on the other node) land exactly once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.distributed import free_port
from tests.agent.test_server import ROOT, copy_workspace
from tests.feedback_backends import Backend


def start_node(ws: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "agent", "serve", "-w", str(ws), "--port", str(port)]
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [*cmd, "--llm", "none"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            pytest.fail(f"node exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"node not healthy in 300 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def cluster(
    trained_workspace: Path, chroma_url: str, postgres_server, tmp_path_factory
) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("two-nodes")
    a = copy_workspace(trained_workspace, root / "host-a")
    env = {
        "MTREC_CHROMA_URL": chroma_url,
        "MTREC_FEEDBACK_URL": postgres_server.create_database("nodes"),
        "MTREC_LLM": "none",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    indexed = subprocess.run(
        [sys.executable, "-m", "agent", "index", "-w", str(a)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert indexed.returncode == 0, indexed.stderr[-2000:]
    b = root / "host-b"
    shutil.copytree(a, b, ignore=shutil.ignore_patterns(".lock", "feedback.sqlite*"))
    nodes = {}
    for name, ws in (("a", a), ("b", b)):
        nodes[name] = start_node(ws, env, root / f"node-{name}.log")
    try:
        yield {"env": env, "a": nodes["a"], "b": nodes["b"], "root": root, "ws": (a, b)}
    finally:
        for proc, _ in nodes.values():
            stop(proc)
    for ws in (a, b):
        assert not (ws / "feedback.sqlite").exists()  # nothing went to a node-local file


def ids(res: dict) -> list[str]:
    return [it["item_id"] for it in res["items"]]


def test_feedback_to_node_a_changes_node_b_next_answer(cluster):
    a, b = cluster["a"][1], cluster["b"][1]
    pg = Backend("postgresql", cluster["env"]["MTREC_FEEDBACK_URL"])
    for url in (a, b):
        h = httpx.get(url + "/health", timeout=30).json()
        assert h["feedback_backend"] == "postgresql" and h["items"] == 1682
    assert httpx.get(a + "/health").json()["pid"] != httpx.get(b + "/health").json()["pid"]
    before = httpx.post(b + "/recommend", json={"user_id": "13", "k": 10}, timeout=60).json()
    first = ids(before)
    for item, event in [(first[0], "like"), (first[1], "dislike"), (first[2], "dislike")]:
        ack = httpx.post(
            a + "/feedback", json={"user_id": "13", "item_id": item, "event": event}, timeout=60
        )
        assert ack.status_code == 200 and ack.json()["backend"] == "postgresql"
    assert pg.rows("13") == [
        ("13", first[0], "like"),
        ("13", first[1], "dislike"),
        ("13", first[2], "dislike"),
    ]
    after = httpx.post(b + "/recommend", json={"user_id": "13", "k": 10}, timeout=60).json()
    assert after["history_size"] == before["history_size"] + 3
    assert not set(first[:3]) & set(ids(after)) and ids(after) != first
    sim = httpx.get(b + "/similar/50", params={"k": 3}, timeout=60)
    assert sim.status_code == 200 and len(sim.json()) == 3  # the one shared Chroma index


def seen(client: httpx.Client, item: str, event_id: str) -> httpx.Response:
    body = {"user_id": "21", "item_id": item, "event": "seen", "event_id": event_id}
    return client.post("/feedback", json=body)


@pytest.mark.slow
def test_kill_9_of_a_node_loses_no_acknowledged_event(cluster):
    proc_a, a = cluster["a"]
    b = cluster["b"][1]
    pg = Backend("postgresql", cluster["env"]["MTREC_FEEDBACK_URL"])
    items = httpx.post(b + "/recommend", json={"user_id": "21", "k": 200}, timeout=60).json()
    targets = ids(items)
    acked: dict[str, str] = {}  # event_id -> item
    lock = threading.Lock()
    stop_at = threading.Event()

    def writer(w: int) -> None:
        with httpx.Client(base_url=a, timeout=30) as c:
            for j, item in enumerate(targets[w::4]):
                if stop_at.is_set():
                    return
                event_id = f"kill-{w}-{j}"
                try:
                    r = seen(c, item, event_id)
                except httpx.HTTPError:
                    return  # the node died mid-request: not acknowledged
                if r.status_code == 200:
                    with lock:
                        acked[event_id] = item

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while len(acked) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc_a.pid, signal.SIGKILL)  # node A dies while requests are in flight
    proc_a.wait(30)
    stop_at.set()
    for t in threads:
        t.join(60)
    assert len(acked) >= 40
    stored = [item for _, item, _ in pg.rows("21")]
    assert set(acked.values()) <= set(stored), "an acknowledged event was lost"
    assert len(stored) == len(set(stored))

    # The client retries everything it sent to A on B, with the same event ids: the events
    # that A had stored but not acknowledged are not stored twice.
    with httpx.Client(base_url=b, timeout=60) as c:
        for w in range(4):
            for j, item in enumerate(targets[w::4]):
                assert seen(c, item, f"kill-{w}-{j}").status_code == 200
    final = [item for _, item, _ in pg.rows("21")]
    assert sorted(final) == sorted(targets)  # each exactly once
    after = httpx.post(b + "/recommend", json={"user_id": "21", "k": 10}, timeout=60).json()
    assert not set(targets) & set(ids(after))
    print(f"{len(acked)} acknowledged by node A before its kill; {len(stored)} stored")
