"""``mtrec train --nproc N [--nnodes M ...]``: the workspace's training as a DDP job (torchrun).

One machine: ``--nproc N`` processes, rendezvous on a free loopback port. Several machines:
the same command on each, with ``--nnodes M --node-rank R --master-addr A --master-port P``
(node 0 at ``A`` hosts torchrun's c10d TCP store on port ``P``; every node reaches it there).
Every node trains on its own copy of the workspace (the same dataset and index); global rank
0 — on node 0 — validates and writes the checkpoint into node 0's workspace.
"""

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
    nproc: int,
    port: int,
    train_args: list[str],
    python: str = sys.executable,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str = "127.0.0.1",
) -> list[str]:
    """``python -m torch.distributed.run`` for ``nproc`` processes of ``mtrec.train`` on this
    node of ``nnodes`` (static rendezvous: node ``node_rank`` of a c10d store at
    ``master_addr:port``)."""
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        str(nnodes),
        "--node-rank",
        str(node_rank),
        "--nproc-per-node",
        str(nproc),
        "--master-addr",
        master_addr,
        "--master-port",
        str(port),
        "-m",
        "mtrec.train",
        *train_args,
    ]


def check_nodes(
    nnodes: int, node_rank: int, master_addr: str | None, master_port: int | None
) -> None:
    """Check the multi-node options before anything is loaded.

    Raises:
        ValueError: what is wrong, in one line.
    """
    if nnodes < 1:
        raise ValueError(f"--nnodes must be >= 1, got {nnodes}")
    if not 0 <= node_rank < nnodes:
        raise ValueError(f"--node-rank must be in [0, {nnodes - 1}], got {node_rank}")
    if nnodes > 1 and (not master_addr or master_port is None):
        raise ValueError(
            "--nnodes > 1 needs --master-addr and --master-port (node 0's address and a port "
            "every node can reach)"
        )
    if master_port is not None and not 1 <= master_port <= 65535:
        raise ValueError(f"--master-port must be in [1, 65535], got {master_port}")


def run_distributed_training(
    ws: Workspace,
    nproc: int,
    protocol: str = "loo",
    epochs: int | None = None,
    device: str = "auto",
    resume: bool = True,
    seed: int | None = None,
    json_out: bool = False,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str | None = None,
    master_port: int | None = None,
) -> dict[str, Any] | None:
    """Train the workspace's model with ``nproc`` DDP processes on this machine, as node
    ``node_rank`` of ``nnodes`` when there are several.

    The workspace stays locked for the whole run; the item text embeddings are read from the
    index once and handed to every process as an ``.npy`` file. Rank 0 writes the checkpoint
    to ``WORKSPACE/model`` in the usual format.

    Returns:
        The run's summary (rank 0's JSON) when ``json_out`` on node 0; None on other nodes
        and without ``json_out``.

    Raises:
        ValueError: ``nproc`` < 1 or bad epochs.
        RuntimeError: the distributed job failed (its output is above the message).
    """
    from mtrec.evaluation import PROTOCOLS

    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    check_nodes(nnodes, node_rank, master_addr, master_port)
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
                *("--dataset", spec.source, "--format", spec.format, "--text", str(text_path)),
                *("--out", str(ws.model_dir), "--protocol", protocol, "--device", device),
                *(["--epochs", str(epochs)] if epochs is not None else []),
                *(["--seed", str(seed)] if seed is not None else []),
                *([] if resume else ["--no-resume"]),
                *(["--json"] if json_out else []),
            ]
            port = master_port if master_port is not None else free_port()
            cmd = torchrun_command(
                nproc, port, args, nnodes=nnodes, node_rank=node_rank,
                master_addr=master_addr or "127.0.0.1",
            )  # fmt: skip
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
