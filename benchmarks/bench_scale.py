"""How mtrec grows with the catalog: 10k, 30k and 100k items on this machine.

For each size, a synthetic dataset from ``mtrec.data.synthetic`` with users and interactions
scaled with the catalog (100k items: 50k users, 1M interactions) is put in a fresh workspace
(``synthetic:ITEMS:USERS:INTERACTIONS``, the same generator the CLI reads), and measured:

* **index**: the item texts into Chroma through ``retrieval.ItemIndex.sync``. Embedding 100k
  texts with MiniLM takes 4-20 minutes on 2 shared cores, so by default (``--embed sample``)
  the embedding rate is measured on ``--embed-sample`` real texts and the Chroma side (hash
  scan, metadata, upserts, HNSW build) on the whole catalog with a stand-in embedder that
  returns unit vectors instantly; the projected index time is ``n / embed rate + Chroma time``.
  ``--embed full`` embeds everything for real.
* **query**: ``ItemIndex.similar`` and ``search_vector`` latency against that index.
* **train**: one training epoch (leave-one-out defaults of ``mtrec train``) and the training
  process's peak RSS, in a child process.
* **batch**: ``mtrec batch``'s model-only throughput over every user (``agent.batch``), in a
  child process.
* **serve**: the RSS of a serving process (``Recommender.load`` plus the warm-up request
  ``mtrec serve`` runs: index, embedder, model), then after one request through the local LLM
  tier (Gemma 3 270M via ``agent.llm.local``), in a child process.

Growth exponents are log-log slopes between consecutive sizes and a least-squares slope over
all of them (1.0 = linear in the catalog size).

Example::

    python benchmarks/bench_scale.py                  # 10k, 30k, 100k items
    python benchmarks/bench_scale.py --sizes 10000 --threads 1

Results go to ``benchmarks/results/scale.json`` (``--name``), rewritten after every size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import write_results  # noqa: E402

TARGETS = {
    "train_epoch_s_at_1m_max": 300.0,
    "batch_users_per_s_min": 500.0,
    "serve_rss_mb_with_local_llm_max": 1536.0,
}


def rss_mb() -> float:
    """Current resident set size of this process (MiB)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load() -> float:
    return round(os.getloadavg()[0], 2)


def scaled(items: int, ratio_users: float, per_item: float) -> tuple[int, int, int]:
    """(items, users, interactions) for a catalog size: 100k -> 50k users, 1M interactions."""
    return items, int(items * ratio_users), int(items * per_item)


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) on log(x); None when a value is missing or not positive."""
    if len(xs) < 2 or any(y is None or not y > 0 for y in ys):
        return None
    lx, ly = np.log(xs), np.log(ys)
    return round(float(np.polyfit(lx, ly, 1)[0]), 3)


def latency(fn: Any, args: list[Any], warmup: int = 5) -> dict[str, float]:
    for a in args[:warmup]:
        fn(a)
    ms = []
    for a in args:
        t = time.perf_counter()
        fn(a)
        ms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 3),
    }


# ---- parent-side phases ------------------------------------------------------------------------
def stand_in_embedder(real: Any) -> Any:
    """An ``Embedder`` with the real one's id and width whose vectors cost nothing."""
    from retrieval import Embedder

    class StandIn(Embedder):
        def __init__(self) -> None:
            self.__dict__.update({k: v for k, v in real.__dict__.items() if k != "_model"})
            self._rng = np.random.default_rng(0)

        def encode(self, texts: Any, show_progress: bool = False) -> np.ndarray:
            v = self._rng.standard_normal((len(texts), self.dimension)).astype(np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

    return StandIn()


def phase_index(ws: Any, args: argparse.Namespace, real: Any) -> tuple[dict, Any]:
    """Index the workspace's catalog; returns the figures and the open index."""
    from agent.workspace import index_items
    from retrieval import ItemIndex

    records = index_items(ws.dataset)
    out: dict[str, Any] = {"mode": args.embed, "load_before": load()}
    sample = [r.text for r in records[: args.embed_sample]]
    real.encode(sample[:64])  # warm
    t = time.perf_counter()
    real.encode(sample)
    out["embed_items_per_s"] = round(len(sample) / (time.perf_counter() - t), 1)
    out["embed_sample"] = len(sample)
    embedder = real if args.embed == "full" else stand_in_embedder(real)
    index = ItemIndex(path=ws.chroma_dir, embedder=embedder, rebuild=True)
    t = time.perf_counter()
    report = index.sync(records, show_progress=False)
    seconds = time.perf_counter() - t
    if args.embed == "full":
        out["index_s"] = round(seconds, 2)
        out["index_items_per_s"] = round(len(records) / seconds, 1)
    else:
        out["chroma_s"] = round(seconds, 2)
        out["chroma_items_per_s"] = round(len(records) / seconds, 1)
        projected = len(records) / out["embed_items_per_s"] + seconds
        out["index_s_projected"] = round(projected, 1)
        out["index_items_per_s_projected"] = round(len(records) / projected, 1)
    out["added"] = report.added
    out["load_after"] = load()
    return out, index


def phase_query(index: Any, n_items: int, queries: int) -> dict:
    rng = random.Random(1)
    ids = [str(rng.randrange(n_items)) for _ in range(queries)]
    vectors = index.get_embeddings(ids)
    out = {"load_before": load()}
    out["similar"] = latency(lambda i: index.similar(i, 10), ids)
    out["search_vector"] = latency(
        lambda j: index.search_vector(vectors[j], 10), list(range(len(ids)))
    )
    return out


def child(kind: str, root: Path, args: argparse.Namespace, timeout: float) -> dict:
    """Run one measured phase in a fresh process; returns its JSON (or an error)."""
    cmd = [sys.executable, __file__, "--child", kind, "--workspace", str(root)]
    cmd += ["--threads", str(args.threads), "--chunk-size", str(args.chunk_size)]
    if args.no_llm:
        cmd.append("--no-llm")
    return run_json(cmd, timeout)


def run_json(cmd: list[str], timeout: float) -> dict:
    """Run a command; its last stdout line that is a JSON object, plus ``wall_s`` (or an
    ``error`` entry when it timed out, failed or printed none)."""
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-800:]}"}
    data = json.loads(lines[-1])
    data["wall_s"] = round(time.perf_counter() - t, 1)
    return data


def phase_ddp(root: Path, text: Path, timeout: float) -> dict:
    """One epoch with ``torchrun --nproc-per-node 2 -m mtrec.train`` (gloo)."""
    from agent.distributed import free_port, torchrun_command
    from agent.workspace import Workspace

    spec = Workspace(root).dataset_spec()
    train_args = ["--dataset", spec.source, "--text", str(text), "--out", str(root / "ddp")]
    train_args += ["--epochs", "1", "--device", "cpu", "--valid-users", "50", "--json"]
    s = run_json(torchrun_command(2, free_port(), train_args), timeout)
    if "error" in s:
        return s
    return {
        "processes": 2,
        "epoch_s_incl_valid_50_users": s["epoch_seconds"][0],
        "wall_s": s["wall_s"],
    }


# ---- child-side phases -------------------------------------------------------------------------
def child_train(root: Path, threads: int) -> dict:
    from agent.workspace import Workspace
    from mtrec.config import MTRecConfig
    from mtrec.evaluation import split_dataset
    from mtrec.model.multitask import MultiTaskModel
    from mtrec.training import train_multitask

    ws = Workspace(root)
    ds = ws.dataset
    text = np.load(root / "text.npy")
    cfg = MTRecConfig.for_protocol("loo")
    cfg.train.epochs = 1
    cfg.train.device = "cpu"
    cfg.train.threads = threads
    split = split_dataset(ds, "loo", seed=cfg.train.seed)
    model = MultiTaskModel.create(ds, cfg, text)
    rss_before = rss_mb()
    t = time.perf_counter()
    result = train_multitask(model, ds, split.train)
    total = time.perf_counter() - t
    model.save(ws.model_dir, {"bench": "scale"})
    epoch = result.epochs[0]
    return {
        "epoch_s": round(epoch.seconds, 2),
        "windows_and_setup_s": round(total - epoch.seconds, 2),
        "train_rows": len(split.train),
        "sampled_softmax": ds.n_items > cfg.train.full_softmax_max_items,
        "batch_size": cfg.train.batch_size,
        "losses": {k: round(v, 4) for k, v in epoch.losses.items()},
        "rss_before_train_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "threads": threads or None,
    }


def child_batch(root: Path, chunk_size: int) -> dict:
    from agent.batch import read_users, run_batch
    from agent.recommender import Recommender

    t = time.perf_counter()
    rec = Recommender.load(root, llm="none")
    load_s = time.perf_counter() - t
    users = read_users(rec, "all")
    out = root / "recs.parquet"
    s = run_batch(rec, users, out, k=10, llm="none", chunk_size=chunk_size, overwrite=True)
    return {
        "users": s.users,
        "rows": s.rows,
        "seconds": s.seconds,
        "users_per_s": s.users_per_s,
        "chunk_size": chunk_size,
        "recommender_load_s": round(load_s, 2),
        "output_mb": round(out.stat().st_size / 2**20, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def child_serve(root: Path, with_llm: bool) -> dict:
    from agent.recommender import Recommender

    t = time.perf_counter()
    # 10 candidates instead of 30 keep the local request short; memory does not depend on it.
    rec = Recommender.load(root, candidates=10)
    user = rec.ds.users[0].user_id
    rec.recommend(user_id=user, query="warm up", k=1, llm="none")  # what `mtrec serve` does
    out: dict[str, Any] = {"startup_s": round(time.perf_counter() - t, 2)}
    out["rss_mb"] = round(rss_mb(), 1)
    if with_llm:
        from agent.llm.local import local_available

        if not local_available(rec.settings):
            out["llm_error"] = "the local tier is not installed (mtrec[local])"
            return out
        t = time.perf_counter()
        res = rec.recommend(user_id=user, k=10, llm="local")
        out["local_request_s"] = round(time.perf_counter() - t, 2)
        out["local_tier_used"] = res.tier
        out["rss_with_local_llm_mb"] = round(rss_mb(), 1)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def run_child(args: argparse.Namespace) -> None:
    root = Path(args.workspace)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.child == "train":
        data = child_train(root, args.threads)
    elif args.child == "batch":
        data = child_batch(root, args.chunk_size)
    else:
        data = child_serve(root, not args.no_llm)
    data["load_at_end"] = load()
    print(json.dumps(data), flush=True)


# ---- main -------------------------------------------------------------------------------------
FIGURES = {
    "index_s (projected when sampled)": lambda s: (
        s["index"].get("index_s") or s["index"].get("index_s_projected")
    ),
    "chroma_s (stand-in vectors)": lambda s: s["index"].get("chroma_s"),
    "similar_p50_ms": lambda s: s["query"]["similar"]["p50_ms"],
    "train_epoch_s": lambda s: s["train"].get("epoch_s"),
    "train_peak_rss_mb": lambda s: s["train"].get("peak_rss_mb"),
    "batch_users_per_s": lambda s: s["batch"].get("users_per_s"),
    "serve_rss_mb": lambda s: s["serve"].get("rss_mb"),
    "serve_rss_with_local_llm_mb": lambda s: s["serve"].get("rss_with_local_llm_mb"),
}


def exponents(sizes: list[dict]) -> dict[str, Any]:
    xs = [s["items"] for s in sizes]
    out: dict[str, Any] = {}
    for name, get in FIGURES.items():
        try:
            ys = [get(s) for s in sizes]
        except (KeyError, TypeError):
            continue
        pairs = {}
        for a, b in zip(range(len(xs)), range(1, len(xs)), strict=False):
            if ys[a] and ys[b] and ys[a] > 0 and ys[b] > 0:
                key = f"{xs[a] // 1000}k->{xs[b] // 1000}k"
                pairs[key] = round(math.log(ys[b] / ys[a]) / math.log(xs[b] / xs[a]), 3)
        out[name] = {"values": ys, "pairwise": pairs, "fit": slope(xs, ys)}
    return out


def verdicts(sizes: list[dict]) -> dict[str, Any]:
    big = max(sizes, key=lambda s: s["items"])
    out: dict[str, Any] = {"at_items": big["items"], "interactions": big["interactions"]}
    epoch = big["train"].get("epoch_s")
    if epoch is not None:
        out["train_epoch"] = {
            "value_s": epoch,
            "target_s": TARGETS["train_epoch_s_at_1m_max"],
            "met": epoch <= TARGETS["train_epoch_s_at_1m_max"] and big["interactions"] >= 1e6,
        }
    ups = big["batch"].get("users_per_s")
    if ups is not None:
        out["batch"] = {
            "value_users_per_s": ups,
            "target": TARGETS["batch_users_per_s_min"],
            "met": ups >= TARGETS["batch_users_per_s_min"],
        }
    rss = big["serve"].get("rss_with_local_llm_mb")
    if rss is not None:
        out["serve_rss_with_local_llm"] = {
            "value_mb": rss,
            "target_mb": TARGETS["serve_rss_mb_with_local_llm_max"],
            "met": rss <= TARGETS["serve_rss_mb_with_local_llm_max"],
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    p.add_argument("--users-per-item", type=float, default=0.5)
    p.add_argument("--interactions-per-item", type=float, default=10.0)
    p.add_argument("--embed", choices=["sample", "full"], default="sample")
    p.add_argument("--embed-sample", type=int, default=2000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="Torch threads in the children (0 = torch's default for batch scoring, the free "
        "cores for training). 1 by default: on 2 shared "
        "cores, 2 OpenMP threads per process ran training 8x slower at load 7.",
    )
    p.add_argument("--chunk-size", type=int, default=1000)
    p.add_argument(
        "--ddp", action="store_true", help="Also time a 2-process DDP epoch at the largest size."
    )
    p.add_argument("--no-llm", action="store_true", help="Skip the local LLM in the serve phase.")
    p.add_argument("--workdir", type=Path, help="Where workspaces go (default: a temp dir).")
    p.add_argument("--name", default="scale")
    p.add_argument("--child", choices=["train", "batch", "serve"], help=argparse.SUPPRESS)
    p.add_argument("--workspace", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        run_child(args)
        return

    from agent.workspace import DatasetSpec, Workspace
    from retrieval import Embedder

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mtrec-scale-"))
    real = Embedder()
    results: dict[str, Any] = {
        "targets": TARGETS,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "sizes": [],
    }
    for n in sorted(args.sizes):
        items, users, inter = scaled(n, args.users_per_item, args.interactions_per_item)
        print(f"== {items} items, {users} users, {inter} interactions (load {load()})", flush=True)
        root = workdir / f"ws-{items}"
        ws = Workspace(root)
        ws.set_dataset(DatasetSpec(f"synthetic:{items}:{users}:{inter}"))
        t = time.perf_counter()
        ds = ws.dataset
        size: dict[str, Any] = {
            "items": ds.n_items,
            "users": ds.n_users,
            "interactions": ds.n_interactions,
            "generate_s": round(time.perf_counter() - t, 2),
        }
        size["index"], index = phase_index(ws, args, real)
        print(f"   index {size['index']}", flush=True)
        size["query"] = phase_query(index, ds.n_items, args.queries)
        print(f"   query {size['query']}", flush=True)
        np.save(root / "text.npy", index.get_embeddings(ds.item_ids))
        del index
        size["train"] = child("train", root, args, timeout=1800)
        print(f"   train {size['train']}", flush=True)
        if args.ddp and n == max(args.sizes):
            size["train_ddp"] = phase_ddp(root, root / "text.npy", timeout=1800)
            print(f"   ddp {size['train_ddp']}", flush=True)
        size["batch"] = child("batch", root, args, timeout=1800)
        print(f"   batch {size['batch']}", flush=True)
        size["serve"] = child("serve", root, args, timeout=900)
        print(f"   serve {size['serve']}", flush=True)
        results["sizes"].append(size)
        results["exponents"] = exponents(results["sizes"])
        results["verdicts"] = verdicts(results["sizes"])
        path = write_results(args.name, results)
        print(f"   -> {path}", flush=True)
    print(
        json.dumps({"exponents": results["exponents"], "verdicts": results["verdicts"]}, indent=2)
    )


if __name__ == "__main__":
    main()
