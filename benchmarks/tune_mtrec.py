"""Model selection for the multi-task model on the validation phase only (issue 13, item 4).

Trains MTRec with a protocol's defaults plus ``--set`` overrides (early stopping on
validation NDCG@10, as ``mtrec train``) and reports validation figures only: NDCG@10 masked
and unmasked, NDCG@10 against liked validation items, the auxiliary heads on validation rows,
and the wall time. It never evaluates the test phase, so nothing chosen with it has seen test.
Each run appends one JSON line to ``benchmarks/results/tuning-mtrec.jsonl``.

``--neighbour-ks`` also re-fits the item-neighbour memory of the one trained network with each
k (it is filled after training, so the network does not change) and records the weights
``select_fusion`` chooses and their validation figures for each.

Example::

    python benchmarks/tune_mtrec.py --protocol loo --set train.lr=0.002 --set model.dim=96
    python benchmarks/tune_mtrec.py --protocol random --threads 2 \
        --neighbour-ks 25 50 100 200 400 1681
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import command, git_commit  # noqa: E402

LOG = ROOT / "benchmarks" / "results" / "tuning-mtrec.jsonl"
CACHE = Path(os.environ.get("MTREC_TUNE_CACHE", "/tmp/mtrec-tune"))


def cached_text(ds: Any) -> np.ndarray:
    """MiniLM item text embeddings, cached on disk (the same as bench_model computes)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"text-{ds.name}-{ds.n_items}.npy"
    if path.is_file():
        return np.load(path)
    from benchmarks.bench_model import text_embeddings

    text = text_embeddings(ds)
    np.save(path, text)
    return text


def apply_overrides(cfg: Any, pairs: list[str]) -> dict[str, Any]:
    """Set ``section.field=value`` pairs (values parsed as JSON, else taken as strings)."""
    done = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        obj = cfg
        *path, last = key.split(".")
        for p in path:
            obj = getattr(obj, p)
        if not hasattr(obj, last):
            raise SystemExit(f"unknown setting {key!r}")
        setattr(obj, last, value)
        done[key] = value
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--protocol", default="loo")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--tag", default="")
    ap.add_argument("--no-text", action="store_true", help="item tower without text")
    ap.add_argument("--log", type=Path, default=LOG)
    ap.add_argument(
        "--neighbour-ks", type=int, nargs="+", default=[], help="re-fit the memory with each k"
    )
    args = ap.parse_args()

    import torch

    from mtrec.config import MTRecConfig
    from mtrec.data import load_dataset
    from mtrec.evaluation import split_dataset
    from mtrec.evaluation.evaluator import evaluate_ranking
    from mtrec.evaluation.tasks import evaluate_tasks
    from mtrec.model.multitask import MultiTaskModel
    from mtrec.selection import liked_split, select_fusion
    from mtrec.training import train_multitask

    torch.set_num_threads(args.threads)
    ds = load_dataset(args.dataset)
    text = None if args.no_text else cached_text(ds)
    cfg = MTRecConfig.for_protocol(args.protocol, ds.profile.like_threshold)
    cfg.train.seed = args.seed
    cfg.train.threads = args.threads
    overrides = apply_overrides(cfg, args.sets)
    # The split seed stays the benchmark's (2020) whatever the model seed: one split, as the peers.
    split = split_dataset(ds, args.protocol, seed=2020)
    model = MultiTaskModel.create(ds, cfg, text)
    load0, t0 = list(os.getloadavg()), time.perf_counter()
    curve: list[float] = []
    result = train_multitask(
        model,
        ds,
        split.train,
        split,
        on_epoch=lambda e: (
            curve.append(round(e.valid.get("ndcg@10", 0.0), 4)),
            print(
                f"  epoch {e.epoch} valid ndcg@10={e.valid.get('ndcg@10', 0):.4f} "
                f"({e.seconds:.1f}s) {e.losses}",
                file=sys.stderr,
                flush=True,
            ),
        ),
    )
    seconds = time.perf_counter() - t0
    valid: dict[str, Any] = {}
    for mask in ("history", "none"):
        ev = evaluate_ranking(model, ds, split, "valid", ks=(10,), mask=mask)
        valid[f"ndcg@10/{mask}"] = ev["ndcg@10"]
        valid[f"recall@10/{mask}"] = ev["recall@10"]
    liked = liked_split(ds, split, model.config.train.like_threshold)
    valid["liked_ndcg@10/history"] = evaluate_ranking(model, ds, liked, "valid", ks=(10,))[
        "ndcg@10"
    ]
    valid.update({f"tasks/{k}": v for k, v in evaluate_tasks(model, ds, split, "valid").items()})
    # Training has already chosen the fusion weights on validation (``select_fusion``).
    fusion = model.config.fusion.model_dump()
    by_k = {}
    for k in args.neighbour_ks:
        model.fit_neighbours(ds, split.train, k=k)
        by_k[str(k)] = select_fusion(model, ds, split)
    record = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": git_commit(),
        "command": command(),
        "protocol": args.protocol,
        "seed": args.seed,
        "tag": args.tag,
        "text": not args.no_text,
        "overrides": overrides,
        "threads": args.threads,
        "train_seconds": round(seconds, 1),
        "fusion_seconds": round(result.fusion_seconds, 1),
        "epochs_run": len(result.epochs),
        "best_epoch": result.best_epoch,
        "epoch_seconds": [round(e.seconds, 1) for e in result.epochs],
        "curve": curve,
        "valid": {k: round(float(v), 5) for k, v in valid.items()},
        "fusion": fusion,
        "fusion_by_neighbour_k": by_k,
        "loadavg": [round(x, 2) for x in load0],
    }
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with open(args.log, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
