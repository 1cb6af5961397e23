"""The model side of ``bench_scale.py`` on a CUDA GPU: training epoch, scoring, nccl DDP.

Measured per catalog size (the same synthetic datasets as ``bench_scale.py``; item text
embeddings are random unit vectors of the MiniLM width, since only the model is timed):

* one training epoch of ``mtrec train``'s leave-one-out defaults on the GPU, and the GPU's
  peak allocated memory;
* model-only scoring throughput over every user: user states, logits over the whole catalog,
  seen items masked, top ``candidates`` and their like/rating heads, top-k (what
  ``mtrec batch --llm none`` computes per user, without writing Parquet);
* with ``--ddp``, one epoch through ``torchrun --nproc-per-node N -m mtrec.train --device cuda``
  (the nccl backend), N = the visible GPUs.

Needs only ``mtrec`` (no Chroma, no agent). Example::

    python benchmarks/bench_scale_gpu.py --ddp

Results: ``benchmarks/results/scale-gpu.json`` (``--name``), with the card's name.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import write_results  # noqa: E402
from mtrec.config import MTRecConfig  # noqa: E402
from mtrec.data import generate_synthetic  # noqa: E402
from mtrec.data.history import user_histories  # noqa: E402
from mtrec.evaluation import split_dataset  # noqa: E402
from mtrec.model.multitask import MultiTaskModel  # noqa: E402
from mtrec.training import train_multitask  # noqa: E402


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@torch.inference_mode()
def score_all(model: MultiTaskModel, hists: list, k: int, candidates: int, batch: int) -> float:
    """Seconds to score every user (see the module docstring)."""
    net = model.net
    vectors = model.item_vectors_tensor()
    biases = net.items.all_biases()
    _sync()
    t = time.perf_counter()
    for s in range(0, len(hists), batch):
        hs = hists[s : s + batch]
        state = model.user_state(hs)
        logits = state.interest @ vectors.T + biases
        lens = [len(h) for h in hs]
        r = torch.as_tensor(np.repeat(np.arange(len(hs)), lens), device=logits.device)
        c = torch.as_tensor(np.concatenate([h.items for h in hs]), device=logits.device)
        logits[r, c] = -torch.inf
        top, cand = torch.topk(logits, candidates, dim=1)
        v = vectors[cand]
        like = torch.sigmoid(net.like_logit(state.like[:, None, :].expand_as(v), v))
        rating = net.rating(state.rating[:, None, :].expand_as(v), v)
        fused = top + 0.0 * like + 0.0 * rating
        order = torch.argsort(-fused, dim=1, stable=True)[:, :k]
        torch.gather(cand, 1, order).cpu()
    _sync()
    return time.perf_counter() - t


def ddp_epoch(source: str, text: Path, nproc: int, workdir: Path, device: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1"]
    cmd += ["--nproc-per-node", str(nproc), "--master-addr", "127.0.0.1"]
    cmd += ["--master-port", str(free_port()), "-m", "mtrec.train", "--dataset", source]
    cmd += ["--text", str(text), "--out", str(workdir / "ddp"), "--epochs", "1"]
    cmd += ["--device", device, "--valid-users", "200", "--json"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-1500:]}"}
    s = json.loads(lines[-1])
    return {
        "processes": s["world_size"],
        "backend": s["backend"],
        "epoch_s_incl_valid_200_users": s["epoch_seconds"][0],
        "wall_s": round(time.perf_counter() - t, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    p.add_argument("--score-batch", type=int, default=2048)
    p.add_argument("--ddp", action="store_true")
    p.add_argument("--name", default="scale-gpu")
    p.add_argument("--device", default="cuda", help="cuda (cpu only to smoke-test the script).")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    cuda = args.device == "cuda"
    workdir = Path(tempfile.mkdtemp(prefix="mtrec-scale-gpu-"))
    card = torch.cuda.get_device_name(0) if cuda else "cpu"
    results: dict[str, Any] = {"card": card, "sizes": []}
    for n in sorted(args.sizes):
        users, inter = n // 2, n * 10
        ds = generate_synthetic(n, users, inter)
        rng = np.random.default_rng(0)
        text = rng.standard_normal((ds.n_items, 384)).astype(np.float32)
        text /= np.linalg.norm(text, axis=1, keepdims=True)
        cfg = MTRecConfig.for_protocol("loo")
        cfg.train.epochs = 1
        cfg.train.device = args.device
        split = split_dataset(ds, "loo", seed=cfg.train.seed)
        model = MultiTaskModel.create(ds, cfg, text)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        result = train_multitask(model, ds, split.train)
        size: dict[str, Any] = {
            "items": ds.n_items,
            "users": ds.n_users,
            "interactions": ds.n_interactions,
            "train_epoch_s": round(result.epochs[0].seconds, 2),
            "train_total_s": round(time.perf_counter() - t, 2),
            "train_gpu_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else 0,
        }
        model.net.to(args.device).eval()
        model.invalidate_cache()
        hists = user_histories(ds)
        score_all(model, hists[: args.score_batch], 10, 30, args.score_batch)  # warm-up
        secs = score_all(model, hists, 10, 30, args.score_batch)
        size["score_users_per_s"] = round(len(hists) / secs, 1)
        if args.ddp and n == max(args.sizes):
            np.save(workdir / "text.npy", text)
            size["ddp"] = ddp_epoch(
                f"synthetic:{n}:{users}:{inter}",
                workdir / "text.npy",
                torch.cuda.device_count() if cuda else 1,
                workdir,
                args.device,
            )
        print(json.dumps(size), flush=True)
        results["sizes"].append(size)
        xs = [s["items"] for s in results["sizes"]]
        fits = {}
        for key in ("train_epoch_s", "train_gpu_peak_mb", "score_users_per_s"):
            ys = [s[key] for s in results["sizes"]]
            if len(xs) > 1 and min(ys) > 0:
                fits[key] = round(float(np.polyfit(np.log(xs), np.log(ys), 1)[0]), 3)
        results["exponents"] = fits
        write_results(args.name, results)


if __name__ == "__main__":
    main()
