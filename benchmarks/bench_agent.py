"""Latency per tier and NDCG@10 of the model alone versus fused with each LLM tier.

Latency: ``Recommender.recommend`` p50/p95 on ml-100k for the model-only tier, the cached
answer, the local tier (in process) and the remote tier (llama.cpp's OpenAI-compatible
server on loopback, started by this script). Accuracy: the leave-one-out protocol on a
seeded sample of users, history = everything before each user's test item, the same
candidates for every tier; the test item's position in the final top-10 gives NDCG@10.

Example::

    python benchmarks/bench_agent.py --workspace mtrec-workspace --users 200
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_results  # noqa: E402


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


def summary(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 2),
        "p95_ms": round(pct(ms, 95), 2),
        "mean_ms": round(statistics.fmean(ms), 2) if ms else float("nan"),
    }


def start_llama_server(port: int) -> subprocess.Popen[bytes]:
    from agent.llm.local import default_model_path

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(default_model_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--n_threads",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(240):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1)
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("llama_cpp.server did not start")


def loo_histories(rec: Any, users: np.ndarray) -> list[tuple[list[Any], str]]:
    """(history entries before the test item, test item id) per sampled user."""
    from agent.schema import HistoryEntry
    from mtrec.data.history import user_histories
    from mtrec.evaluation import split_dataset

    ds = rec.ds
    split = split_dataset(ds, "loo")
    hist = user_histories(ds, split.rows_before("test"))
    test_item = {int(ds.user_idx[r]): int(ds.item_idx[r]) for r in split.test}
    out = []
    for u in users:
        h = hist[u]
        entries = [
            HistoryEntry(item_id=ds.items[i].item_id, rating=None if np.isnan(v) else float(v))
            for i, v in zip(h.items, h.values, strict=True)
        ]
        out.append((entries, ds.items[test_item[u]].item_id))
    return out


def ndcg_at_10(item_ids: list[str], target: str) -> float:
    for r, i in enumerate(item_ids[:10], start=1):
        if i == target:
            return 1.0 / float(np.log2(r + 1))
    return 0.0


def fresh_request(rec: Any) -> None:
    """No cached answer and closed circuit breakers, so every request tries the tier under
    test. (In service the breaker sheds a failing endpoint after a few failures; here that
    would turn the remote rows into local-tier rows.)"""
    rec.cache.clear()
    rec.chain.reset_breakers()


def replay_fusion(result: Any, weight: float) -> list[str]:
    """The recommender's final order at another LLM weight, from the model order and the LLM
    order a result carries (the same fusion as ``Recommender.run``)."""
    from agent.pipeline.fusion import reciprocal_rank_fusion

    if not result.llm_order:
        return list(result.model_order)
    rrf = reciprocal_rank_fusion([result.model_order, result.llm_order], [1 - weight, weight])
    return sorted(result.model_order, key=lambda i: -rrf.get(i, 0.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default="mtrec-workspace")
    ap.add_argument("--latency-requests", type=int, default=100)
    ap.add_argument("--llm-requests", type=int, default=20)
    ap.add_argument("--users", type=int, default=200, help="users in the accuracy sample")
    ap.add_argument("--tiers", nargs="+", default=["none", "local", "remote"])
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--llm-weight", type=float, default=None)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument(
        "--remote-max-tokens",
        type=int,
        default=400,
        help="generation cap of the remote tier's calls",
    )
    ap.add_argument("--remote-timeout", type=float, default=60.0)
    ap.add_argument("--name", default="agent", help="results file: benchmarks/results/NAME.json")
    args = ap.parse_args()

    from agent import Recommender

    overrides: dict[str, Any] = {"candidates": args.candidates}
    if args.llm_weight is not None:
        overrides["llm_weight"] = args.llm_weight
    server = None
    if "remote" in args.tiers:
        server = start_llama_server(args.port)
        overrides.update(
            llm_base_url=f"http://127.0.0.1:{args.port}/v1",
            llm_api_key="none",
            llm_model="gemma-3-270m",
            llm_timeout_s=args.remote_timeout,
            llm_max_tokens=args.remote_max_tokens,
        )
    try:
        rec = Recommender.load(args.workspace, **overrides)
        rng = np.random.default_rng(2020)
        users = [u.user_id for u in rec.ds.users]
        results: dict[str, Any] = {
            "settings": {k: v for k, v in overrides.items() if k != "llm_api_key"},
            "latency": {},
            "accuracy": {},
        }
        # Latency ----------------------------------------------------------------------------
        for tier in args.tiers:
            n = args.latency_requests if tier == "none" else args.llm_requests
            ms: list[float] = []
            tiers_seen: dict[str, int] = {}
            for uid in rng.choice(users, n, replace=False):
                fresh_request(rec)
                t0 = time.perf_counter()
                res = rec.recommend(user_id=str(uid), k=10, llm=tier)
                ms.append((time.perf_counter() - t0) * 1000)
                tiers_seen[res.tier] = tiers_seen.get(res.tier, 0) + 1
            results["latency"][tier] = {**summary(ms), "answered_by": tiers_seen}
            if tier == "none":
                cached = []
                for uid in rng.choice(users, n, replace=False):
                    rec.recommend(user_id=str(uid), k=10, llm="none")
                    t0 = time.perf_counter()
                    rec.recommend(user_id=str(uid), k=10, llm="none")
                    cached.append((time.perf_counter() - t0) * 1000)
                results["latency"]["cached"] = summary(cached)
            print(tier, results["latency"][tier], flush=True)
        # Accuracy -----------------------------------------------------------------------------
        # Each result carries the model's and the LLM's full orders over the candidates, so the
        # final top 10 under any LLM weight can be recomputed; the run's own weight is
        # recomputed too, as a check that the replay matches.
        # Its own seed: the same users whichever tiers this run measures.
        sample_rng = np.random.default_rng(2021)
        sample = np.sort(
            sample_rng.choice(rec.ds.n_users, min(args.users, rec.ds.n_users), replace=False)
        )
        cases = loo_histories(rec, sample)
        weights = sorted({0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, rec.settings.llm_weight})
        for tier in args.tiers:
            by_weight: dict[float, list[float]] = {w: [] for w in weights}
            answered: dict[str, int] = {}
            llm_kept = llm_replaced = replay_mismatch = 0
            t_tier = time.perf_counter()
            for entries, target in cases:
                fresh_request(rec)
                res = rec.recommend(history=entries, k=10, llm=tier)
                answered[res.tier] = answered.get(res.tier, 0) + 1
                llm_kept += sum(it.explanation_source == "llm" for it in res.items)
                llm_replaced += res.dropped.ungrounded
                for w in weights:
                    by_weight[w].append(ndcg_at_10(replay_fusion(res, w), target))
                if replay_fusion(res, rec.settings.llm_weight)[:10] != [
                    it.item_id for it in res.items[:10]
                ]:
                    replay_mismatch += 1
            results["accuracy"][tier] = {
                "users": len(cases),
                "ndcg@10_by_llm_weight": {
                    str(w): {
                        "mean": round(float(np.mean(v)), 4),
                        "stderr": round(float(np.std(v) / np.sqrt(len(v))), 4),
                    }
                    for w, v in by_weight.items()
                },
                # Paired over the same users: fused minus model alone (weight 0).
                "paired_gain_vs_model_only": {
                    str(w): {
                        "mean": round(float(np.mean(np.subtract(v, by_weight[0.0]))), 4),
                        "stderr": round(
                            float(np.std(np.subtract(v, by_weight[0.0])) / np.sqrt(len(v))), 4
                        ),
                    }
                    for w, v in by_weight.items()
                    if w > 0
                },
                "per_user_ndcg@10": {
                    str(w): [round(x, 4) for x in v] for w, v in by_weight.items()
                },
                "ndcg@10": round(float(np.mean(by_weight[rec.settings.llm_weight])), 4),
                "llm_weight": rec.settings.llm_weight,
                "answered_by": answered,
                "llm_explanations_kept": llm_kept,
                "llm_explanations_replaced": llm_replaced,
                "replay_mismatches": replay_mismatch,
                "seconds": round(time.perf_counter() - t_tier, 1),
            }
            shown = {k: v for k, v in results["accuracy"][tier].items() if not k.startswith("per_")}
            print(tier, shown, flush=True)
        path = write_results(args.name, results)
        print(f"wrote {path}")
    finally:
        if server is not None:
            server.terminate()


if __name__ == "__main__":
    main()
