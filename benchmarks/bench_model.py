"""mtrec's multi-task model and in-project baselines beside RecBole 1.2.1, on ml-100k.

Runs both protocols with the same splits, the same full-ranking evaluation and the same
tie handling for every in-project model, reads the RecBole results that
``benchmarks/recbole_peer.py`` wrote (run it in the same session), and prints one table
with NDCG@10, Recall@10, MRR@10, train seconds and the ratio to the best RecBole model.

Example::

    python benchmarks/bench_model.py --protocols loo random
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, write_results  # noqa: E402


def text_embeddings(ds: Any) -> Any:
    from retrieval import Embedder

    return Embedder().encode([it.document() for it in ds.items])


def run_protocol(ds: Any, text: Any, protocol: str, seed: int, baselines: bool) -> dict[str, Any]:
    from mtrec.config import MTRecConfig
    from mtrec.evaluation import evaluate_ranking, split_dataset
    from mtrec.evaluation.tasks import evaluate_tasks
    from mtrec.model.baselines import BPRModel, ContentModel, ItemKNNModel, PopularityModel
    from mtrec.model.multitask import MultiTaskModel
    from mtrec.training import train_multitask

    split = split_dataset(ds, protocol, seed=2020)
    out: dict[str, Any] = {}
    cfg = MTRecConfig.for_protocol(protocol)
    cfg.train.seed = seed
    model = MultiTaskModel.create(ds, cfg, text)
    t0 = time.perf_counter()
    result = train_multitask(
        model,
        ds,
        split.train,
        split,
        on_epoch=lambda e: print(
            f"  {protocol} epoch {e.epoch} valid ndcg@10="
            f"{e.valid.get('ndcg@10', 0):.4f} ({e.seconds:.1f}s)",
            file=sys.stderr,
            flush=True,
        ),
    )
    train_s = time.perf_counter() - t0
    metrics = evaluate_ranking(model, ds, split, "test")
    metrics.update(evaluate_tasks(model, ds, split, "test"))
    metrics.update(
        train_seconds=train_s, best_epoch=result.best_epoch, epochs_run=len(result.epochs)
    )
    out["MTRec"] = metrics
    if baselines:
        for m in (PopularityModel(), ItemKNNModel(), BPRModel(), ContentModel(text, recent=20)):
            t0 = time.perf_counter()
            m.fit(ds, split.train)
            fit_s = time.perf_counter() - t0
            metrics = evaluate_ranking(m, ds, split, "test")
            metrics["train_seconds"] = fit_s
            out[m.name] = metrics
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocols", nargs="+", default=["loo", "random"])
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--no-baselines", action="store_true")
    args = ap.parse_args()

    from mtrec.data import load_dataset

    ds = load_dataset("ml-100k")
    t0 = time.perf_counter()
    text = text_embeddings(ds)
    embed_s = time.perf_counter() - t0
    peer_path = RESULTS / "recbole_peer.json"
    peer = json.loads(peer_path.read_text())["results"] if peer_path.is_file() else {}
    previous = RESULTS / "model.json"
    kept = json.loads(previous.read_text()).get("protocols", {}) if previous.is_file() else {}
    # Protocols not run this time keep their last figures (each carries its own date).
    results: dict[str, Any] = {"embed_seconds": embed_s, "protocols": kept}
    for protocol in args.protocols:
        ours = run_protocol(ds, text, protocol, args.seed, not args.no_baselines)
        rb_key = "loo" if protocol == "loo" else "rs"
        recbole = {
            k.split("/")[0]: {
                "ndcg@10": v["test_result"]["ndcg@10"],
                "recall@10": v["test_result"]["recall@10"],
                "mrr@10": v["test_result"]["mrr@10"],
                "train_seconds": v.get("wall_seconds"),
            }
            for k, v in peer.items()
            if k.endswith("/" + rb_key) and v.get("status") == "ok" and v.get("test_result")
        }
        best = max(recbole.items(), key=lambda kv: kv[1]["ndcg@10"], default=(None, None))
        results["protocols"][protocol] = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "mtrec": ours,
            "recbole": recbole,
            "best_recbole": best[0],
            "ratio_to_best_recbole": (
                ours["MTRec"]["ndcg@10"] / best[1]["ndcg@10"] if best[1] else None
            ),
        }
        print(f"\n{protocol}: model            NDCG@10  Recall@10  MRR@10  train s")
        for name, m in ours.items():
            print(
                f"  mtrec {name:12s} {m['ndcg@10']:.4f}   {m['recall@10']:.4f}    "
                f"{m['mrr@10']:.4f}  {m['train_seconds']:.1f}"
            )
        for name, m in sorted(recbole.items(), key=lambda kv: -kv[1]["ndcg@10"]):
            print(
                f"  RecBole {name:10s} {m['ndcg@10']:.4f}   {m['recall@10']:.4f}    "
                f"{m['mrr@10']:.4f}  {m['train_seconds'] or 0:.1f}"
            )
        ratio = results["protocols"][protocol]["ratio_to_best_recbole"]
        if ratio:
            print(f"  MTRec / best RecBole ({best[0]}) NDCG@10 = {ratio:.3f}x")
        path = write_results("model", results)  # after each protocol: a partial run keeps numbers
        print(f"\nwrote {path}", flush=True)


if __name__ == "__main__":
    main()
