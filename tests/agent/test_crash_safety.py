"""Crashes and concurrency: ``kill -9`` during indexing and training, two indexers at once.

Everything is real: the ``mtrec`` CLI in a subprocess, the bundled MiniLM embedder and
embedded Chroma. The kill is a real SIGKILL at a point observed from outside (rows in
Chroma's SQLite file, the checkpoint pointer on disk).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MTREC_DEBUG": ""}
#: Items in the indexing catalog: more than two of the CLI's 1000-item embedding batches, so a
#: kill can land after one batch was written and before the last one.
N_ITEMS = 2300
WORDS = [
    "stranger", "river", "town", "gold", "train", "night", "storm", "ship", "island", "robot",
    "city", "war", "love", "detective", "desert", "space", "king", "dragon", "school", "music",
    "heist", "ghost", "winter", "summer", "family", "road", "secret",
]  # fmt: skip


def mtrec(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent", *args]


def start(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen(
            mtrec(*args), cwd=ROOT, env=ENV, stdout=fh, stderr=subprocess.STDOUT
        )


def wait_for(cond: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float, log: Path):
    """Poll ``cond`` until true; fail if the process exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            pytest.fail(
                f"process ended ({proc.returncode}) before the kill point:\n{log.read_text()}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"kill point not reached in {timeout:.0f} s:\n{log.read_text()}")
        time.sleep(0.05)


def sigkill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def chroma_rows(ws: Path) -> int:
    """Rows Chroma has committed, read from outside through SQLite (read-only)."""
    db = ws / "chroma" / "chroma.sqlite3"
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2) as c:
            return int(c.execute("SELECT count(*) FROM embeddings").fetchone()[0])
    except sqlite3.Error:  # tables not created yet, or locked for a moment
        return 0


def write_catalog(d: Path) -> Path:
    """An atomic-format dataset of ``N_ITEMS`` short items and a few interactions."""
    rng = random.Random(7)
    d.mkdir(parents=True)
    items = ["item_id:token\tmovie_title:token_seq\tclass:token_seq\ttext:token_seq"]
    for i in range(N_ITEMS):
        title = " ".join(rng.choice(WORDS).title() for _ in range(3))
        genre = rng.choice(["Drama", "Comedy", "Action", "Horror"])
        text = " ".join(rng.choice(WORDS) for _ in range(8))
        items.append(f"{i}\t{title}\t{genre}\t{text}")
    (d / "crash.item").write_text("\n".join(items) + "\n")
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    inter += [f"{u}\t{rng.randrange(N_ITEMS)}\t{rng.randint(1, 5)}\t{1000 + u}" for u in range(50)]
    (d / "crash.inter").write_text("\n".join(inter) + "\n")
    return d


def test_kill_9_during_indexing_then_rerun_matches_the_catalog(tmp_path):
    from agent.workspace import Workspace, index_items
    from mtrec.data import load_dataset

    data = write_catalog(tmp_path / "crash")
    ws = tmp_path / "ws"
    log = tmp_path / "index.log"
    proc = start("index", "--dataset", str(data), "-w", str(ws), "--json", log=log)
    try:
        # Kill once the first 1000-item batch is committed, while later ones are in flight.
        wait_for(lambda: chroma_rows(ws) >= 1000, proc, timeout=300, log=log)
        # A second indexer on the same workspace meanwhile fails at once, and clearly.
        second = subprocess.run(
            mtrec("index", "--dataset", str(data), "-w", str(ws)),
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=300,
        )
        sigkill(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert second.returncode == 1, second.stderr
    assert "another mtrec process" in second.stderr and "Traceback" not in second.stderr
    at_kill = chroma_rows(ws)
    assert 1000 <= at_kill < N_ITEMS, f"{at_kill} rows at the kill: not mid-way"
    print(f"killed with {at_kill}/{N_ITEMS} items indexed")

    rerun = subprocess.run(
        mtrec("index", "-w", str(ws), "--json"),
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["unchanged"] + summary["added"] + summary["updated"] == N_ITEMS
    assert summary["unchanged"] >= 1000 and summary["added"] <= N_ITEMS - 1000

    # The index holds exactly the catalog: ids, content hashes and usable vectors.
    w = Workspace(ws)
    expected = {it.item_id: it for it in index_items(load_dataset(data))}
    index = w.index()
    stored = {i: (m or {}).get("content_hash") for i, m in index._scan(["metadatas"])}
    assert stored.keys() == expected.keys() and index.count() == N_ITEMS
    assert all(stored[i] == it.content_hash() for i, it in expected.items())
    sample = sorted(random.Random(1).sample(sorted(expected), 40))
    vectors = index.get_embeddings(sample)
    fresh = w.embedder.encode([expected[i].text for i in sample])
    assert np.allclose(vectors, fresh, atol=1e-4)
    hit = index.similar(sample[0], k=1)[0]
    assert hit.item_id in expected


@pytest.fixture(scope="module")
def synthetic_workspace(tmp_path_factory) -> Path:
    """A small synthetic dataset, indexed (real embedder, real Chroma)."""
    ws = tmp_path_factory.mktemp("crash-train") / "ws"
    proc = subprocess.run(
        mtrec("index", "--dataset", "synthetic:200:150:6000", "-w", str(ws), "--json"),
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return ws


def test_kill_9_during_training_keeps_the_last_good_checkpoint(synthetic_workspace, tmp_path):
    from agent.recommender import Recommender
    from mtrec.model.checkpoint import latest_checkpoint
    from mtrec.model.multitask import MultiTaskModel

    ws = synthetic_workspace
    model_dir = ws / "model"
    log = tmp_path / "train.log"
    args = ("train", "-w", str(ws), "--epochs", "30", "--device", "cpu", "--json")
    proc = start(*args, log=log)
    try:
        wait_for(lambda: (model_dir / "LATEST").is_file(), proc, timeout=300, log=log)
        time.sleep(random.Random(3).uniform(0.0, 1.5))  # anywhere in the next epoch or save
        sigkill(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"killed with {sorted(p.name for p in model_dir.iterdir())} in {model_dir.name}/")

    good = latest_checkpoint(model_dir)
    assert good is not None, "LATEST names no complete checkpoint"
    model = MultiTaskModel.load(model_dir)  # the normal loading path
    rec = Recommender.load(ws, llm="none")
    user = rec.ds.users[0].user_id
    res = rec.recommend(user_id=user, k=5, llm="none")
    assert len(res.items) == 5 and model.item_ids == rec.ds.item_ids

    # Training again with the same settings resumes (or restarts) and completes.
    again = subprocess.run(
        mtrec(*args[:4], "1", *args[5:]),
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["epochs_run"] >= 1
    assert not list(model_dir.glob(".partial-*")) and latest_checkpoint(model_dir) is not None
    MultiTaskModel.load(model_dir)
