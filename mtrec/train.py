"""Train the multi-task model from the command line, in one process or under ``torchrun``.

One process::

    python -m mtrec.train --dataset ml-100k --out runs/model --epochs 10

PyTorch Distributed Data Parallel, N processes on this machine (gloo on CPU, nccl on GPUs)::

    torchrun --nproc-per-node 2 -m mtrec.train --dataset ml-100k --out runs/model

Every process loads the dataset and builds the same split and training windows; each trains
on its shard of the windows (``DistributedSampler``) and DDP averages the gradients. Rank 0
alone evaluates validation, prints progress and writes the checkpoint (the same format as a
one-process run: ``MultiTaskModel.load(OUT)`` reads it in any single process). ``mtrec train
--nproc N`` runs this module through ``python -m torch.distributed.run``.

This module imports nothing from ``agent`` or ``retrieval``: text embeddings come in as an
``.npy`` file (rows in the dataset's dense item order).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist

from mtrec.config import MTRecConfig
from mtrec.training import (
    RESUME_FILE,
    EpochLog,
    can_resume,
    from_rank0,
    resolve_device,
    train_multitask,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of ``python -m mtrec.train``."""
    p = argparse.ArgumentParser(
        prog="python -m mtrec.train", description="Train the multi-task model (DDP-aware)."
    )
    p.add_argument(
        "--dataset",
        required=True,
        help="A dataset name (ml-100k), a directory or table file, or synthetic:ITEMS:USERS:N.",
    )
    p.add_argument("--format", default="auto", help="Dataset format (see mtrec.data.FORMATS).")
    p.add_argument("--text", type=Path, help="(n_items, d) .npy item text embeddings.")
    p.add_argument("--out", type=Path, required=True, help="Checkpoint directory.")
    p.add_argument("--protocol", default="loo", help="loo or random.")
    p.add_argument("--epochs", type=int, help="Maximum epochs.")
    p.add_argument("--batch-size", type=int, help="Sequences per batch and process.")
    p.add_argument("--seed", type=int, help="Random seed (the same on every rank).")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto.")
    p.add_argument("--threads", type=int, help="Torch threads per process (0 = the free cores).")
    p.add_argument("--valid-users", type=int, help="Validate on at most this many users.")
    p.add_argument("--no-resume", action="store_true", help="Start over even if resumable.")
    p.add_argument("--json", action="store_true", help="Print the summary as JSON (rank 0).")
    return p.parse_args(argv)


def init_distributed(device: str) -> tuple[bool, int, int]:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Returns:
        ``(distributed, rank, world_size)``; ``(False, 0, 1)`` outside torchrun.
    """
    if "WORLD_SIZE" not in os.environ or dist.is_initialized():
        if dist.is_initialized():
            return True, dist.get_rank(), dist.get_world_size()
        return False, 0, 1
    backend = "nccl" if resolve_device(device).type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=dt.timedelta(hours=2))
    return True, dist.get_rank(), dist.get_world_size()


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Train and (on rank 0) save the model; returns the summary on rank 0, else None."""
    from mtrec.data import load_dataset
    from mtrec.evaluation import PROTOCOLS, split_dataset
    from mtrec.model.multitask import MultiTaskModel

    args = parse_args(argv)
    if args.protocol not in PROTOCOLS:
        raise SystemExit(f"error: unknown protocol {args.protocol!r}; use {', '.join(PROTOCOLS)}")
    distributed, rank, world = init_distributed(args.device)
    main_rank = rank == 0
    try:
        ds = load_dataset(args.dataset, format=args.format)
        text = np.load(args.text) if args.text else None
        if text is not None and text.shape[0] != ds.n_items:
            raise SystemExit(f"error: {args.text} has {text.shape[0]} rows for {ds.n_items} items")
        cfg = MTRecConfig.for_protocol(args.protocol, ds.profile.like_threshold)
        cfg.train.device = args.device
        if args.epochs is not None:
            cfg.train.epochs = args.epochs
        if args.batch_size is not None:
            cfg.train.batch_size = args.batch_size
        if args.seed is not None:
            cfg.train.seed = args.seed
        if args.threads is not None:
            cfg.train.threads = args.threads
        split = split_dataset(ds, args.protocol, seed=cfg.train.seed)
        model = MultiTaskModel.create(ds, cfg, text)
        resume = False
        if main_rank:
            resume = not args.no_resume and can_resume(args.out, model.config)
            if not resume:
                (args.out / RESUME_FILE).unlink(missing_ok=True)
        resume = from_rank0(resume, distributed)
        valid_users = None
        if args.valid_users:
            users = np.unique(ds.user_idx[split.valid])
            rng = np.random.default_rng(cfg.train.seed)
            valid_users = np.sort(rng.choice(users, min(args.valid_users, len(users)), False))

        def on_epoch(log: EpochLog) -> None:
            losses = " ".join(f"{k}={v:.4f}" for k, v in log.losses.items())
            ndcg = log.valid.get("ndcg@10", float("nan"))
            print(
                f"epoch {log.epoch:3d}  {losses}  valid ndcg@10={ndcg:.4f}  ({log.seconds:.1f}s)"
                f"  [{world} process{'es' if world > 1 else ''}]",
                file=sys.stderr,
                flush=True,
            )

        result = train_multitask(
            model,
            ds,
            split.train,
            split,
            checkpoint_dir=args.out,
            resume=resume,
            on_epoch=on_epoch,
            valid_users=valid_users,
        )
        summary: dict[str, Any] | None = None
        if main_rank:
            summary = {
                "protocol": args.protocol,
                "world_size": world,
                "backend": dist.get_backend() if distributed else None,
                "best_epoch": result.best_epoch,
                "valid_ndcg@10": round(result.best_ndcg10, 4),
                "epochs_run": len(result.epochs),
                "resumed_from_epoch": result.resumed_from,
                "train_seconds": round(result.seconds, 1),
                "epoch_losses": [
                    {k: round(v, 5) for k, v in e.losses.items()} for e in result.epochs
                ],
                "epoch_seconds": [round(e.seconds, 2) for e in result.epochs],
                "checkpoint": str(args.out),
            }
            model.save(args.out, {"valid_ndcg@10": result.best_ndcg10, **summary})
            (args.out / RESUME_FILE).unlink(missing_ok=True)
            if args.json:
                print(json.dumps(summary), flush=True)
            else:
                print(
                    f"best epoch {result.best_epoch}: valid NDCG@10 {result.best_ndcg10:.4f} "
                    f"({result.seconds:.0f}s, {world} process{'es' if world > 1 else ''}); "
                    f"saved to {args.out}",
                    file=sys.stderr,
                )
        if distributed:
            dist.barrier()
        return summary
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
