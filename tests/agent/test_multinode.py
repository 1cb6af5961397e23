"""Multi-node training: two "nodes" (two `mtrec train` processes on two copies of one
workspace, one process each) meet at a c10d TCP store on loopback and train one model; node 0
writes a checkpoint that loads like any other. The README's command, on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.distributed import free_port
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
DATASET = "synthetic:300:240:14000"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("nodes") / "ws"
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "index", "--dataset", DATASET, "-w", str(ws), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return ws


@pytest.mark.slow
def test_two_nodes_train_one_model_and_node_0_writes_it(indexed: Path, tmp_path: Path):
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    for n in nodes:  # each node has its own copy: no shared files
        shutil.copytree(indexed, n, ignore=shutil.ignore_patterns(".lock"))
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent",
                "train",
                "-w",
                str(ws),
                "--nnodes",
                "2",
                "--node-rank",
                str(rank),
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                str(port),
                "--nproc",
                "1",
                "--epochs",
                "2",
                "--device",
                "cpu",
                "--json",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank, ws in enumerate(nodes)
    ]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=600)
            assert p.returncode == 0, err[-3000:]
            outs.append((json.loads(out), err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    (summary, err0), (other, _) = outs
    assert summary["world_size"] == 2 and summary["backend"] == "gloo"
    assert summary["epochs_run"] == 2 and summary["checkpoint"] == str(nodes[0] / "model")
    assert "[2 processes]" in err0  # rank 0's epoch lines count both nodes' processes
    assert other == {"node_rank": 1, "nnodes": 2, "checkpoint": None}
    assert not (nodes[1] / "model" / "LATEST").exists()  # only global rank 0 writes

    # Loaded and served the normal way, in a fresh process (as a serving node would).
    load = (
        "import json, sys; from agent.recommender import Recommender; "
        "rec = Recommender.load(sys.argv[1], llm='none'); "
        "res = rec.recommend(user_id=rec.ds.users[0].user_id, k=5, llm='none'); "
        "print(json.dumps([rec.model.metrics.get('world_size'), len(res.items)]))"
    )
    served = subprocess.run(
        [sys.executable, "-c", load, str(nodes[0])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert served.returncode == 0, served.stderr[-2000:]
    assert json.loads(served.stdout.strip().splitlines()[-1]) == [2, 5]


def test_bad_node_options_are_one_line_and_exit_2(indexed, capsys):
    base = ["train", "-w", str(indexed), "--epochs", "1"]
    cases = [
        (["--nnodes", "2"], "--master-addr and --master-port"),
        (
            ["--nnodes", "2", "--node-rank", "2", "--master-addr", "h", "--master-port", "1"],
            "--node-rank must be in [0, 1]",
        ),
        (["--nnodes", "0"], "--nnodes must be >= 1"),
        (
            ["--nnodes", "2", "--node-rank", "1", "--master-addr", "h", "--master-port", "0"],
            "--master-port must be in",
        ),
    ]
    for args, needle in cases:
        code, _, err = run_cli([*base, *args], capsys)
        assert code == 2 and needle in err, (args, err)
        assert len(err.strip().splitlines()) == 1
