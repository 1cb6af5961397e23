"""``mtrec train --nproc N``: the workspace's training run as a PyTorch DDP job (torchrun)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from agent.workspace import Workspace


def free_port() -> int:
    """A TCP port that is free on the loopback interface right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun_command(
    nproc: int, port: int, train_args: list[str], python: str = sys.executable
) -> list[str]:
    """``python -m torch.distributed.run`` for ``nproc`` local processes of ``mtrec.train``."""
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(nproc),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port),
        "-m",
        "mtrec.train",
        *train_args,
    ]


def run_distributed_training(
    ws: Workspace,
    nproc: int,
    protocol: str = "loo",
    epochs: int | None = None,
    device: str = "auto",
    resume: bool = True,
    seed: int | None = None,
    json_out: bool = False,
) -> dict[str, Any] | None:
    """Train the workspace's model with ``nproc`` DDP processes on this machine.

    The workspace stays locked for the whole run; the item text embeddings are read from the
    index once and handed to every process as an ``.npy`` file. Rank 0 writes the checkpoint
    to ``WORKSPACE/model`` in the usual format.

    Returns:
        The run's summary (rank 0's JSON) when ``json_out``, else None.

    Raises:
        ValueError: ``nproc`` < 1 or bad epochs.
        RuntimeError: the distributed job failed (its output is above the message).
    """
    from mtrec.evaluation import PROTOCOLS

    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    if epochs is not None and epochs <= 0:
        raise ValueError(f"--epochs must be positive, got {epochs}")
    with ws.lock("training"):
        spec = ws.dataset_spec()
        text = ws.text_embeddings(ws.dataset)
        with tempfile.TemporaryDirectory(prefix="mtrec-ddp-") as tmp:
            text_path = Path(tmp) / "text.npy"
            np.save(text_path, text.astype(np.float32))
            args = [
                "--dataset",
                spec.source,
                "--format",
                spec.format,
                "--text",
                str(text_path),
                "--out",
                str(ws.model_dir),
                "--protocol",
                protocol,
                "--device",
                device,
            ]
            if epochs is not None:
                args += ["--epochs", str(epochs)]
            if seed is not None:
                args += ["--seed", str(seed)]
            if not resume:
                args.append("--no-resume")
            if json_out:
                args.append("--json")
            cmd = torchrun_command(nproc, free_port(), args)
            proc = subprocess.run(
                cmd, stdout=subprocess.PIPE if json_out else None, text=True, check=False
            )
    if proc.returncode != 0:
        raise RuntimeError(
            f"distributed training failed (torchrun exit code {proc.returncode}); "
            "its output is above"
        )
    if not json_out:
        return None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else None
