"""``mtrec serve --workers 2`` sharing one Chroma server and one feedback store (issue 8).

Two uvicorn worker processes each load the model and talk to the same ``chroma run`` server;
feedback posted concurrently through both lands once each in the one SQLite store, and every
worker's next answer reflects all of it. Run once with each feedback backend (the SQLite
file, a real PostgreSQL).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.agent.test_server import ROOT, copy_workspace, serve_process
from tests.feedback_backends import BACKENDS, Backend, backend_for


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request, trained_workspace: Path, chroma_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Backend]]:
    ws = copy_workspace(trained_workspace, tmp_path_factory.mktemp("workers") / "ws")
    backend = backend_for(request.param, ws, request)
    env = {**os.environ, "MTREC_CHROMA_URL": chroma_url, "MTREC_LLM": "none", **backend.env()}
    indexed = subprocess.run(
        [sys.executable, "-m", "agent", "index", "-w", str(ws)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert indexed.returncode == 0, indexed.stderr
    with serve_process(ws, "--workers", "2", "--llm", "none", env=env, timeout=300) as url:
        yield url, backend


def test_both_workers_share_one_store_and_one_index(served: tuple[str, Backend]) -> None:
    url, backend = served
    with httpx.Client(base_url=url, timeout=60) as c:
        base = c.post("/recommend", json={"user_id": "7", "k": 5}).json()["history_size"]
        items = c.post("/recommend", json={"user_id": "7", "k": 40}).json()["items"]
    targets = [it["item_id"] for it in items][:40]

    def post(item_id: str) -> tuple[int, int]:
        # A fresh connection per request spreads the requests over both workers.
        with httpx.Client(base_url=url, timeout=60) as c:
            r = c.post("/feedback", json={"user_id": "7", "item_id": item_id, "event": "seen"})
            return r.status_code, r.json().get("id", -1)

    with ThreadPoolExecutor(8) as pool:
        acks = list(pool.map(post, targets))
    assert {status for status, _ in acks} == {200}
    assert len({event_id for _, event_id in acks}) == len(targets)  # no lost or doubled writes

    stored = [item for _, item, _ in backend.rows("7")]
    assert sorted(stored) == sorted(targets)

    def answer(_: int) -> tuple[int, int, list[str]]:
        with httpx.Client(base_url=url, timeout=60) as c:
            r = c.post("/recommend", json={"user_id": "7", "k": 10}).json()
            sim = c.get("/similar/50", params={"k": 3})
            return r["history_size"], sim.status_code, [it["item_id"] for it in r["items"]]

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(answer, range(12)))
    # Whichever worker answered, it saw every event and served /similar from the one index.
    assert {size for size, _, _ in answers} == {base + len(targets)}
    assert {status for _, status, _ in answers} == {200}
    assert all(not set(targets) & set(ids) for _, _, ids in answers)
