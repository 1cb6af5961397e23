"""The HTTP service against a live ``mtrec serve`` on a free loopback port (real ml-100k),
once with each feedback backend (the workspace's SQLite file, a real PostgreSQL)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.agent.conftest import free_port
from tests.feedback_backends import BACKENDS, Backend, backend_for

ROOT = Path(__file__).resolve().parents[2]


def copy_workspace(src: Path, dst: Path) -> Path:
    """A private copy of a workspace (without its feedback), so writes stay in this module."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("feedback.sqlite*", ".lock"))
    return dst


@pytest.fixture(scope="module", params=BACKENDS)
def backend_name(request) -> str:
    """Each feedback backend in turn: the module runs once per backend."""
    return request.param


@pytest.fixture(scope="module")
def workspace(backend_name, trained_workspace, tmp_path_factory) -> Path:
    """A private workspace copy per feedback backend."""
    return copy_workspace(trained_workspace, tmp_path_factory.mktemp("serve") / "ws")


@pytest.fixture(scope="module")
def served_backend(request, backend_name, workspace) -> Backend:
    """The feedback backend of this module's server."""
    return backend_for(backend_name, workspace, request)


@contextmanager
def serve_process(
    workspace: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> Iterator[str]:
    """``mtrec serve -w WORKSPACE ARGS`` as a subprocess; yields its URL once /health answers.

    On exit it stops the server and checks that its log holds no traceback.
    """
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
    log = workspace.parent / f"serve-{port}.log"
    cmd = [sys.executable, "-m", "agent", "serve", "-w", str(workspace), "--port", str(port)]
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [*cmd, *args], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mtrec serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mtrec serve not healthy within {timeout:.0f} s:\n{log.read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def server(workspace, served_backend) -> Iterator[str]:
    """``mtrec serve`` (model-only tier) as a subprocess, on the module's feedback backend."""
    with serve_process(workspace, "--llm", "none", env=served_backend.env()) as url:
        yield url


@pytest.fixture(scope="module")
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


def ids(items: list[dict]) -> list[str]:
    return [it["item_id"] for it in items]


def test_health_docs_and_chat_page(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["items"] == 1682 and h["users"] == 943
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/similar/{item_id}", "/feedback", "/chat", "/health"} <= set(paths)
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="message"' in page.text and "/chat" in page.text


def test_recommend_by_user(client):
    r = client.post("/recommend", json={"user_id": "42", "k": 5, "llm": "none"})
    assert r.status_code == 200
    res = r.json()
    assert res["tier"] == "none" and res["user_id"] == "42" and len(res["items"]) == 5
    assert all(it["explanation"] and it["grounded"] for it in res["items"])


def test_recommend_by_history_with_query_and_filters(client):
    r = client.post(
        "/recommend",
        json={
            "history": ["1", {"item_id": "71", "rating": 5}, "95"],
            "query": "space adventure with aliens",
            "k": 5,
            "filters": {"categories": ["Sci-Fi"], "year_min": 1970},
        },
    )
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["history_size"] == 3 and res["query"] == "space adventure with aliens"
    assert len(res["items"]) == 5
    assert all("Sci-Fi" in it["categories"] and it["year"] >= 1970 for it in res["items"])
    assert any("query" in it["source"] for it in res["items"])


def test_similar(client):
    r = client.get("/similar/1", params={"k": 4})
    assert r.status_code == 200
    sims = r.json()
    assert len(sims) == 4 and "1" not in ids(sims) and all(s["title"] for s in sims)


def test_feedback_creates_the_store_and_changes_the_next_list(client, workspace, served_backend):
    health = client.get("/health").json()
    on_pg = served_backend.name == "postgresql"
    # SQLite: the file appears with the first event; PostgreSQL: the store is there from start.
    assert health["feedback_store"] is on_pg
    assert health.get("feedback_backend") == ("postgresql" if on_pg else None)
    assert not (workspace / "feedback.sqlite").exists() and served_backend.rows() == []
    before = client.post("/recommend", json={"user_id": "13", "k": 10, "llm": "none"}).json()
    size = before["history_size"]
    first = ids(before["items"])
    for item, event in [(first[0], "like"), (first[1], "dislike"), (first[2], "dislike")]:
        ack = client.post("/feedback", json={"user_id": "13", "item_id": item, "event": event})
        assert ack.status_code == 200, ack.text
        assert ack.json()["stored"] and ack.json()["id"] >= 1
        assert ack.json()["backend"] == served_backend.name
    assert ack.json()["history_size"] == size + 3
    assert served_backend.rows("13") == [
        ("13", first[0], "like"),
        ("13", first[1], "dislike"),
        ("13", first[2], "dislike"),
    ]
    assert (workspace / "feedback.sqlite").exists() is not on_pg
    health = client.get("/health").json()
    assert health["feedback_store"] is True and health["feedback_backend"] == served_backend.name
    after = client.post("/recommend", json={"user_id": "13", "k": 10, "llm": "none"}).json()
    assert after["history_size"] == size + 3 and not after["cached"]
    assert ids(after["items"]) != first
    assert not set(first[:3]) & set(ids(after["items"]))


def test_a_repeated_event_id_is_stored_once(client, served_backend):
    body = {"user_id": "web-retry", "item_id": "50", "event": "like", "event_id": "retry-1"}
    first = client.post("/feedback", json=body).json()
    again = client.post("/feedback", json=body).json()
    assert first["id"] == again["id"] and served_backend.rows("web-retry") == [
        ("web-retry", "50", "like")
    ]
    clash = client.post("/feedback", json={**body, "item_id": "51"})
    assert clash.status_code == 422 and "already used for a different event" in clash.text


def test_feedback_gives_a_new_user_a_history(client):
    r = client.post("/recommend", json={"user_id": "web-new-1", "k": 3})
    assert r.status_code == 404 and "web-new-1" in r.json()["detail"]
    ack = client.post("/feedback", json={"user_id": "web-new-1", "item_id": "50", "event": "like"})
    assert ack.status_code == 200 and ack.json()["history_size"] == 1
    res = client.post("/recommend", json={"user_id": "web-new-1", "k": 3, "llm": "none"}).json()
    assert res["history_size"] == 1 and "50" not in ids(res["items"])


def test_chat(client):
    one = client.post("/chat", json={"session_id": "t-1", "message": "comedies from the 90s"})
    assert one.status_code == 200, one.text
    a = one.json()
    assert a["reply"] and len(a["items"]) == 5 and a["parser"] == "rules"
    assert all("Comedy" in it["categories"] and 1990 <= it["year"] <= 1999 for it in a["items"])
    assert all(it["explanation"] for it in a["items"])
    two = client.post("/chat", json={"session_id": "t-1", "message": "not the second one"}).json()
    assert ids(a["items"])[1] not in ids(two["items"])
    assert all("Comedy" in it["categories"] for it in two["items"])
    # A rating through /feedback with the session answers with the session's updated list.
    top = ids(two["items"])[0]
    fb = client.post("/feedback", json={"session_id": "t-1", "item_id": top, "event": "dislike"})
    assert fb.status_code == 200, fb.text
    body = fb.json()
    assert body["stored"] is False and top not in ids(body["chat"]["items"])
    # The echoed state continues the chat in a session this process has never seen.
    moved = client.post(
        "/chat",
        json={"session_id": "t-2", "message": "more like #1", "state": body["chat"]["state"]},
    ).json()
    assert moved["state"]["categories"] == ["Comedy"] and moved["state"]["like_item"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("post", "/recommend", {"user_id": "no-such-user"}, 404, "no-such-user"),
        ("post", "/recommend", {"user_id": "42", "k": 0}, 422, "greater than or equal to 1"),
        ("post", "/recommend", {"history": ["1", "nope-item"]}, 404, "nope-item"),
        ("post", "/recommend", {}, 422, "give a user_id or a history"),
        ("post", "/recommend", {"user_id": "42", "filters": {"categories": ["Polka"]}}, 422,
         "unknown categories"),
        ("post", "/recommend", {"user_id": "42", "llm": "gpt"}, 422, "auto"),
        ("post", "/feedback", {"user_id": "42", "item_id": "1", "event": "meh"}, 422, "like"),
        ("post", "/feedback", {"user_id": "42", "item_id": "nope", "event": "like"}, 404, "nope"),
        ("post", "/feedback", {"item_id": "1", "event": "like"}, 422, "user_id"),
        ("post", "/chat", {"session_id": "bad id!", "message": "hi"}, 422, "session_id"),
        ("get", "/similar/nope-item", None, 404, "nope-item"),
        ("get", "/similar/1?k=0", None, 422, "k"),
    ],
)  # fmt: skip
def test_bad_requests_are_4xx_with_a_clear_message(client, method, path, body, status, needle):
    r = client.post(path, json=body) if method == "post" else client.get(path)
    assert r.status_code == status, r.text
    assert needle in r.text and "Traceback" not in r.text


def test_bad_json_is_422(client):
    r = client.post(
        "/recommend", content=b'{"user_id": "42",', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and "JSON" in r.text


def test_concurrent_requests(client, server):
    """Requests from many threads share the one loaded model; none fails."""
    from concurrent.futures import ThreadPoolExecutor

    def one(u: int) -> int:
        with httpx.Client(base_url=server, timeout=60) as c:
            return c.post("/recommend", json={"user_id": str(u), "k": 5, "llm": "none"}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(100, 124))) == {200}
