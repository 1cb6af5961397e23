"""Atomic checkpoints: safetensors weights, config JSON, id maps and metrics.

Each save writes a fresh directory ``ckpt-NNNNNN`` and then replaces the one-line
``LATEST`` pointer with ``os.replace``, which is atomic: a crash at any moment leaves
``LATEST`` naming a complete checkpoint (the previous one until the new one is whole).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtrec.config import MTRecConfig

if TYPE_CHECKING:  # torch loads only to save or load weights: `mtrec info` reads the JSON parts
    import torch

POINTER = "LATEST"
KEEP = 2


class CheckpointError(RuntimeError):
    """No usable checkpoint at a path."""


@dataclass
class Checkpoint:
    """A loaded checkpoint's parts."""

    path: Path
    config: MTRecConfig
    state: dict[str, torch.Tensor]
    item_ids: list[str]
    user_ids: list[str]
    categories: list[str]
    metrics: dict[str, Any]


def _fsync_write(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(
    root: str | Path,
    state: dict[str, torch.Tensor],
    config: MTRecConfig,
    item_ids: list[str],
    user_ids: list[str],
    categories: list[str],
    metrics: dict[str, Any],
) -> Path:
    """Write a new checkpoint under ``root`` and point ``LATEST`` at it.

    Returns:
        The new checkpoint directory.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    existing = sorted(p for p in root.glob("ckpt-*") if p.is_dir())
    number = int(existing[-1].name.split("-")[1]) + 1 if existing else 1
    target = root / f"ckpt-{number:06d}"
    partial = root / f".partial-{number:06d}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    from safetensors.torch import save_file

    save_file(
        {k: v.detach().cpu().contiguous() for k, v in state.items()},
        str(partial / "model.safetensors"),
    )
    _fsync_write(partial / "config.json", config.model_dump_json(indent=2))
    _fsync_write(
        partial / "idmaps.json",
        json.dumps({"items": item_ids, "users": user_ids, "categories": categories}),
    )
    _fsync_write(partial / "metrics.json", json.dumps(metrics, indent=2))
    partial.rename(target)
    tmp = root / f".{POINTER}.tmp"
    _fsync_write(tmp, target.name + "\n")
    os.replace(tmp, root / POINTER)
    for old in sorted(p for p in root.glob("ckpt-*") if p.is_dir())[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return target


def latest_checkpoint(root: str | Path) -> Path | None:
    root = Path(root)
    pointer = root / POINTER
    if not pointer.is_file():
        return None
    target = root / pointer.read_text().strip()
    return target if target.is_dir() else None


def load_checkpoint(root: str | Path) -> Checkpoint:
    """Load the checkpoint ``LATEST`` names under ``root`` (or ``root`` itself if it is one).

    Raises:
        CheckpointError: nothing usable there, with what to run to make one.
    """
    root = Path(root)
    path = root if (root / "model.safetensors").is_file() else latest_checkpoint(root)
    if path is None:
        raise CheckpointError(f"no trained model in {root}; run `mtrec train` first")
    from safetensors.torch import load_file

    try:
        cfg = MTRecConfig.model_validate_json((path / "config.json").read_text())
        maps = json.loads((path / "idmaps.json").read_text())
        metrics = json.loads((path / "metrics.json").read_text())
        state = load_file(str(path / "model.safetensors"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is unreadable: {e}") from None
    return Checkpoint(path, cfg, state, maps["items"], maps["users"], maps["categories"], metrics)
