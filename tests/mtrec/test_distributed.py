"""DDP training: two CPU processes (gloo, loopback) train, and rank 0's checkpoint is normal."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mtrec.data import load_dataset
from mtrec.data.history import user_histories
from mtrec.model.checkpoint import load_checkpoint
from mtrec.model.multitask import MultiTaskModel
from mtrec.train import main as train_main

DATASET = "synthetic:300:240:14000"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    """``torchrun --nproc-per-node 2 -m mtrec.train`` on a small synthetic set, 3 epochs."""
    out = tmp_path_factory.mktemp("ddp") / "model"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        "-m",
        "mtrec.train",
        "--dataset",
        DATASET,
        "--out",
        str(out),
        "--epochs",
        "3",
        "--device",
        "cpu",
        "--json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, proc.stdout  # rank 0 alone prints the summary
    return out, json.loads(lines[0]), proc.stderr


@pytest.mark.slow
def test_two_processes_train_and_the_loss_falls(ddp_run):
    _, summary, stderr = ddp_run
    assert summary["world_size"] == 2 and summary["backend"] == "gloo"
    assert summary["epochs_run"] == 3
    losses = [e["engagement"] for e in summary["epoch_losses"]]
    assert losses[-1] < losses[0]
    # Only rank 0 reports epochs.
    assert sum(line.startswith("epoch ") for line in stderr.splitlines()) == 3


@pytest.mark.slow
def test_checkpoint_matches_a_single_process_run_and_loads(ddp_run, tmp_path):
    out, _, _ = ddp_run
    single = tmp_path / "single"
    threads = torch.get_num_threads()
    try:
        # One thread, like each DDP process: two spinning OpenMP threads on two shared cores
        # can be 10x slower on a busy machine.
        args = ["--dataset", DATASET, "--out", str(single), "--epochs", "1", "--device", "cpu"]
        summary = train_main([*args, "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert summary is not None and summary["world_size"] == 1
    ddp, one = load_checkpoint(out), load_checkpoint(single)
    assert ddp.config.model == one.config.model
    assert ddp.item_ids == one.item_ids and ddp.categories == one.categories
    assert {k: tuple(v.shape) for k, v in ddp.state.items()} == {
        k: tuple(v.shape) for k, v in one.state.items()
    }
    assert not any(k.startswith("module.") for k in ddp.state)
    assert not (out / "resume.pt").exists()

    # The normal loading path, in this (single) process.
    model = MultiTaskModel.load(out)
    ds = load_dataset(DATASET)
    hist = user_histories(ds)[:4]
    items, scores = model.recommend_batch(hist, k=10)
    assert items.shape == (4, 10) and np.isfinite(scores).all()
    for h, row in zip(hist, items, strict=True):
        assert not set(row) & set(h.items.tolist())
