"""Latency per tier, NDCG@10 with each LLM tier, faithfulness of explanations, shuffle cost.

Sections (``--sections``, all by default):

* ``latency``: ``Recommender.recommend`` p50/p95 on ml-100k for the model-only tier, the
  cached answer, the local tier (in process) and the remote tier (llama.cpp's OpenAI-compatible
  server on loopback, started by this script; SmolLM2-135M-Instruct by default).
* ``accuracy``: the leave-one-out protocol on a seeded sample of users, history = everything
  before each user's test item, the same candidates for every tier; the test item's position
  in the final top 10 gives NDCG@10, replayed at several LLM weights from one set of answers,
  paired with the model alone (95 % bootstrap intervals).
* ``faithfulness``: for a seeded sample of known users, every served explanation (template or
  LLM, per tier) is put to a deletion test computed here from the model's public API, not
  read from the result: remove each cited history item from the user's history, recompute the
  user state and the item's model score; a citation passes when the score drops. Also the LLM
  texts the grounding check replaced, and why.
* ``shuffles``: the remote tier asked with ``m`` shuffled candidate orders per request
  (``llm_shuffles``): latency, tokens and calls by ``m``, and how often the top pick is simply
  the candidate shown first.

Every section records the load average at its start and end.

Example::

    python benchmarks/bench_agent.py --workspace mtrec-workspace --users 200
    python benchmarks/bench_agent.py --workspace WS --sections faithfulness --faith-users 100
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_results  # noqa: E402

SECTIONS = ("latency", "accuracy", "faithfulness", "shuffles")
#: A citation passes the deletion test when removing it lowers the score by more than this.
DROP_EPS = 1e-6


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


def summary(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 2),
        "p95_ms": round(pct(ms, 95), 2),
        "mean_ms": round(statistics.fmean(ms), 2) if ms else float("nan"),
    }


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def remote_server(model: str, port: int, log: Path) -> tuple[Any, str]:
    """llama.cpp's server with ``smollm2``, ``gemma`` or a GGUF path; (server, model name)."""
    from agent.llm.local import default_model_path
    from tests.llm_servers import SMOLLM2_NAME, LlamaServer, smollm2_gguf

    if model == "smollm2":
        path, name = smollm2_gguf(), SMOLLM2_NAME
    elif model == "gemma":
        path, name = default_model_path(), "gemma-3-270m"
    else:
        path, name = model, Path(model).stem
    server = LlamaServer(path, port, log)
    server.wait_ready(240)
    return server, name


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


# ---- latency ------------------------------------------------------------------------------------
def bench_latency(rec: Any, tiers: list[str], args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(2020)
    users = [u.user_id for u in rec.ds.users]
    out: dict[str, Any] = {}
    for tier in tiers:
        n = args.latency_requests if tier == "none" else args.llm_requests
        ms: list[float] = []
        tiers_seen: dict[str, int] = {}
        before = load()
        for uid in rng.choice(users, n, replace=False):
            fresh_request(rec)
            t0 = time.perf_counter()
            res = rec.recommend(user_id=str(uid), k=10, llm=tier)
            ms.append((time.perf_counter() - t0) * 1000)
            tiers_seen[str(res.tier)] = tiers_seen.get(str(res.tier), 0) + 1
        out[tier] = {**summary(ms), "answered_by": tiers_seen, "load": [before, load()]}
        if tier == "none":
            cached = []
            for uid in rng.choice(users, n, replace=False):
                rec.recommend(user_id=str(uid), k=10, llm="none")
                t0 = time.perf_counter()
                rec.recommend(user_id=str(uid), k=10, llm="none")
                cached.append((time.perf_counter() - t0) * 1000)
            out["cached"] = summary(cached)
            # The list alone (explain=False): no leave-one-out, no template text.
            bare = []
            for uid in rng.choice(users, n, replace=False):
                fresh_request(rec)
                t0 = time.perf_counter()
                rec.recommend(user_id=str(uid), k=10, llm="none", explain=False)
                bare.append((time.perf_counter() - t0) * 1000)
            out["none_without_explanations"] = summary(bare)
        print("latency", tier, out[tier], flush=True)
    return out


# ---- accuracy -----------------------------------------------------------------------------------
def bench_accuracy(rec: Any, tiers: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Each result carries the model's and the LLM's full orders over the candidates, so the
    final top 10 under any LLM weight is recomputed; the run's own weight is recomputed too,
    as a check that the replay matches."""
    from agent.calibrate import replay_fusion
    from mtrec.evaluation.stats import paired_bootstrap

    # Its own seed: the same users whichever tiers a run measures.
    sample_rng = np.random.default_rng(2021)
    sample = np.sort(
        sample_rng.choice(rec.ds.n_users, min(args.users, rec.ds.n_users), replace=False)
    )
    cases = loo_histories(rec, sample)
    weights = sorted({0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, rec.settings.llm_weight})
    out: dict[str, Any] = {}
    for tier in tiers:
        by_weight: dict[float, list[float]] = {w: [] for w in weights}
        answered: dict[str, int] = {}
        used_weights: dict[str, int] = {}
        llm_kept = llm_replaced = replay_mismatch = 0
        t_tier, before = time.perf_counter(), load()
        for entries, target in cases:
            fresh_request(rec)
            res = rec.recommend(history=entries, k=10, llm=tier)
            answered[str(res.tier)] = answered.get(str(res.tier), 0) + 1
            llm_kept += sum(it.explanation_source == "llm" for it in res.items)
            llm_replaced += res.dropped.ungrounded
            for w in weights:
                by_weight[w].append(ndcg_at_10(replay_fusion(res, w), target))
            own = res.llm_weight if res.llm_weight is not None else 0.0
            used_weights[str(own)] = used_weights.get(str(own), 0) + 1
            if replay_fusion(res, own)[:10] != [it.item_id for it in res.items[:10]]:
                replay_mismatch += 1
        base = np.array(by_weight[0.0])
        gains = {}
        for w, v in by_weight.items():
            if w > 0:
                iv = paired_bootstrap(np.array(v), base)
                gains[str(w)] = {
                    "mean": round(iv.mean_diff, 4),
                    "ci95": [round(iv.low, 4), round(iv.high, 4)],
                    "stderr": round(float(np.std(np.subtract(v, base)) / np.sqrt(len(v))), 4),
                }
        out[tier] = {
            "users": len(cases),
            "ndcg@10_by_llm_weight": {
                str(w): {
                    "mean": round(float(np.mean(v)), 4),
                    "stderr": round(float(np.std(v) / np.sqrt(len(v))), 4),
                }
                for w, v in by_weight.items()
            },
            # Paired over the same users: fused minus model alone (weight 0).
            "paired_gain_vs_model_only": gains,
            "per_user_ndcg@10": {str(w): [round(x, 4) for x in v] for w, v in by_weight.items()},
            "llm_weights_used": used_weights,
            "answered_by": answered,
            "llm_explanations_kept": llm_kept,
            "llm_explanations_replaced": llm_replaced,
            "replay_mismatches": replay_mismatch,
            "seconds": round(time.perf_counter() - t_tier, 1),
            "load": [before, load()],
        }
        shown = {k: v for k, v in out[tier].items() if not k.startswith("per_")}
        print("accuracy", tier, shown, flush=True)
    return out


# ---- faithfulness -------------------------------------------------------------------------------
def fused_scores(rec: Any, histories: list[Any], items: np.ndarray) -> np.ndarray:
    """``(len(histories), len(items))`` model scores of ``items`` after each history, from the
    model's public API: one batched ``user_state``, ``task_scores_batch`` on the items, and the
    fused model score (``fused_model_score``: the definition of ``model_score``)."""
    from agent.pipeline.scoring import fused_model_score

    m = rec.model
    tasks = m.task_scores_batch(m.user_state(histories), np.tile(items, (len(histories), 1)))
    return fused_model_score(tasks, rec.weights)


def deletion_drops(rec: Any, hist: Any, items: np.ndarray, cited: list[int]) -> np.ndarray:
    """``(len(cited), len(items))`` drops of each item's model score when each cited history
    item is removed from the history (every occurrence of it)."""
    from mtrec.data.history import History

    reduced = []
    for c in cited:
        keep = hist.items != c
        reduced.append(History(hist.items[keep], hist.events[keep], hist.values[keep]))
    return fused_scores(rec, [hist], items) - fused_scores(rec, reduced, items)


def replaced_reasons(res: Any) -> list[str]:
    """Why each replaced LLM text was replaced (the kind, without the details)."""
    lines = tuple(getattr(res, "diagnostics", ())) + tuple(res.notes)
    out = []
    for line in lines:
        if " replaced: " in line:
            why = line.split(" replaced: ", 1)[1]
            out.append(why.split(":")[0].split("[")[0].strip())
    return out


def bench_faithfulness(rec: Any, tiers: list[str], args: argparse.Namespace) -> dict[str, Any]:
    ds = rec.ds
    rng = np.random.default_rng(2022)
    users = [ds.users[int(u)].user_id for u in rng.choice(ds.n_users, args.faith_users, False)]
    out: dict[str, Any] = {}
    for tier in tiers:
        groups: dict[str, dict[str, int]] = {}
        failures: list[dict[str, Any]] = []
        answered: dict[str, int] = {}
        why: dict[str, int] = {}
        total = passing = cited_n = mismatches = replaced = 0
        t0, before = time.perf_counter(), load()
        for uid in users:
            fresh_request(rec)
            res = rec.recommend(user_id=uid, k=10, llm=tier)
            answered[str(res.tier)] = answered.get(str(res.tier), 0) + 1
            replaced += res.dropped.ungrounded
            for r in replaced_reasons(res):
                why[r] = why.get(r, 0) + 1
            hist = rec.request_history(uid, None)
            served = [it for it in res.items if it.explanation]
            if not served:
                continue
            items = np.array([ds.item_index(it.item_id) for it in served])
            scores = fused_scores(rec, [hist], items)[0]
            mismatches += sum(
                bool(abs(s - it.model_score) > 1e-3) for s, it in zip(scores, served, strict=True)
            )
            cites = sorted({c for it in served for c in it.evidence.history_items})
            dense = [ds.item_index(c) if ds.has_item(c) else -1 for c in cites]
            known = [d for d in dense if d >= 0]
            drops = deletion_drops(rec, hist, items, known) if known else np.zeros((0, len(items)))
            row = {d: r for r, d in enumerate(known)}
            for j, it in enumerate(served):
                ev = it.evidence
                reason = getattr(ev, "reason", None)
                key = f"{it.explanation_source}:{reason}" if reason else str(it.explanation_source)
                g = groups.setdefault(key, {"n": 0, "cited": 0, "pass": 0})
                g["n"] += 1
                total += 1
                if not ev.history_items:
                    g["pass"] += 1
                    passing += 1
                    continue
                g["cited"] += 1
                cited_n += 1
                item_drops = [
                    float(drops[row[ds.item_index(c)], j]) if ds.has_item(c) else None
                    for c in ev.history_items
                ]
                ok = all(d is not None and d > DROP_EPS for d in item_drops)
                g["pass"] += int(ok)
                passing += int(ok)
                if not ok and len(failures) < 12:
                    failures.append(
                        {
                            "user": uid,
                            "item": it.item_id,
                            "source": it.explanation_source,
                            "reason": reason,
                            "cited": list(ev.history_items),
                            "drops": [None if d is None else round(d, 5) for d in item_drops],
                            "text": it.explanation,
                        }
                    )
        out[tier] = {
            "users": len(users),
            "answered_by": answered,
            "explanations": total,
            "with_citations": cited_n,
            "passing": passing,
            "share_passing": round(passing / total, 4) if total else None,
            "share_passing_of_cited": round((passing - (total - cited_n)) / cited_n, 4)
            if cited_n
            else None,
            "by_source_and_reason": groups,
            "llm_texts_kept": sum(g["n"] for k, g in groups.items() if k.startswith("llm")),
            "llm_texts_replaced": replaced,
            "replaced_why": why,
            "score_mismatches": mismatches,
            "failures": failures,
            "seconds": round(time.perf_counter() - t0, 1),
            "load": [before, load()],
        }
        shown = {k: v for k, v in out[tier].items() if k != "failures"}
        print("faithfulness", tier, shown, flush=True)
    return out


# ---- shuffles -----------------------------------------------------------------------------------
class Recorder:
    """A tier proxy that records what each call was shown and what it put first."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name, self.model_name, self.prompt_id = inner.name, inner.model_name, inner.prompt_id
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def rerank(self, req: Any) -> Any:
        t0 = time.perf_counter()
        shown = [c.short_id for c in req.candidates]
        try:
            answer = self.inner.rerank(req)
        except Exception:
            with self._lock:
                self.calls.append({"ok": False, "s": time.perf_counter() - t0})
            raise
        top = answer.output.ranking[0].id.strip().upper() if answer.output.ranking else None
        with self._lock:
            self.calls.append(
                {
                    "ok": True,
                    "s": time.perf_counter() - t0,
                    "top_position": shown.index(top) + 1 if top in shown else None,
                    "n": len(shown),
                }
            )
        return answer


def bench_shuffles(rec: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Per ``m``: the remote tier behind a recorder of each call (``inner``) and a recorder of
    the fused answer (``outer``, shown the request's own candidate order)."""
    from agent.llm.remote import RemoteTier
    from agent.llm.shuffle import ShuffledTier
    from agent.schema import Tier

    rng = np.random.default_rng(2023)
    picked = rng.choice(rec.ds.n_users, args.shuffle_requests, replace=False)
    users = [rec.ds.users[int(u)].user_id for u in picked]
    rec.chain.set_tier(Tier.LOCAL, None)
    out: dict[str, Any] = {}
    for m in args.shuffles:
        inner = Recorder(RemoteTier(rec.settings))
        outer = Recorder(ShuffledTier(inner, m))
        rec.chain.set_tier(Tier.REMOTE, outer)
        ms: list[float] = []
        tok_in: list[int] = []
        tok_out: list[int] = []
        answered = 0
        before = load()
        for uid in users:
            fresh_request(rec)
            t0 = time.perf_counter()
            res = rec.recommend(user_id=uid, k=10, llm="remote")
            ms.append((time.perf_counter() - t0) * 1000)
            if res.tier == "remote":
                answered += 1
                tok_in.append(res.tokens_in)
                tok_out.append(res.tokens_out)
        calls = [c for c in inner.calls if c["ok"]]
        fused = [c["top_position"] for c in outer.calls if c["ok"] and c["top_position"]]
        tops = [c["top_position"] for c in calls if c["top_position"]]
        out[str(m)] = {
            "requests": len(users),
            "answered": answered,
            "latency": summary(ms),
            "calls": len(inner.calls),
            "calls_failed": len(inner.calls) - len(calls),
            "call_p50_s": round(pct([c["s"] for c in inner.calls], 50), 2),
            "tokens_in_mean": round(statistics.fmean(tok_in), 1) if tok_in else None,
            "tokens_out_mean": round(statistics.fmean(tok_out), 1) if tok_out else None,
            # Position bias: where the top pick stood in the order it was shown in.
            "calls_top_pick_shown_first": sum(p == 1 for p in tops),
            "calls_top_pick_position_mean": round(statistics.fmean(tops), 2) if tops else None,
            "fused_top_pick_shown_first": sum(p == 1 for p in fused),
            "fused_top_pick_position_mean": round(statistics.fmean(fused), 2) if fused else None,
            "candidates_shown": calls[0]["n"] if calls else None,
            "load": [before, load()],
        }
        print("shuffles", m, out[str(m)], flush=True)
    return out


# ---- main ---------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default="mtrec-workspace")
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    ap.add_argument("--latency-requests", type=int, default=100)
    ap.add_argument("--llm-requests", type=int, default=20)
    ap.add_argument("--users", type=int, default=200, help="users in the accuracy sample")
    ap.add_argument("--faith-users", type=int, default=100, help="users, faithfulness section")
    ap.add_argument("--tiers", nargs="+", default=["none", "local", "remote"])
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--llm-weight", type=float, default=None, help="every tier's weight")
    ap.add_argument("--shuffles", nargs="+", type=int, default=[1, 2, 3, 5])
    ap.add_argument("--shuffle-requests", type=int, default=10)
    ap.add_argument("--remote-model", default="smollm2", help="smollm2, gemma or a GGUF path")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument(
        "--remote-max-tokens", type=int, default=600, help="generation cap of remote calls"
    )
    ap.add_argument("--remote-timeout", type=float, default=300.0)
    ap.add_argument("--name", default="agent", help="results file: benchmarks/results/NAME.json")
    args = ap.parse_args()

    from agent import Recommender

    overrides: dict[str, Any] = {"candidates": args.candidates}
    if args.llm_weight is not None:
        overrides.update(
            llm_weight=args.llm_weight,
            llm_weight_local=args.llm_weight,
            llm_weight_remote=args.llm_weight,
        )
    server = None
    needs_remote = "remote" in args.tiers or "shuffles" in args.sections
    if needs_remote:
        server, model_name = remote_server(
            args.remote_model, args.port, Path(f"/tmp/bench_agent_{args.port}.log")
        )
        overrides.update(
            llm_base_url=server.url,
            llm_api_key="none",
            llm_model=model_name,
            llm_timeout_s=args.remote_timeout,
            llm_max_tokens=args.remote_max_tokens,
        )
    try:
        rec = Recommender.load(args.workspace, **overrides)
        results: dict[str, Any] = {
            "settings": {k: v for k, v in overrides.items() if k != "llm_api_key"},
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "remote_server_omp_wait_policy": "PASSIVE" if server else None,
        }
        if "latency" in args.sections:
            results["latency"] = bench_latency(rec, args.tiers, args)
        if "accuracy" in args.sections:
            results["accuracy"] = bench_accuracy(rec, args.tiers, args)
        if "faithfulness" in args.sections:
            results["faithfulness"] = bench_faithfulness(rec, args.tiers, args)
        if "shuffles" in args.sections:
            results["shuffles"] = bench_shuffles(rec, args)
        results["loadavg_at_end"] = load()
        path = write_results(args.name, results)
        print(f"wrote {path}")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
