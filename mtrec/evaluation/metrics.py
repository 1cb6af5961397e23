"""Metric functions. Rankings break ties at random (seeded), never by item id.

Item ids in MovieLens correlate with popularity and release order, so ``argsort``'s
index tie-break would leak order into a model that outputs ties (popularity does).
"""

from __future__ import annotations

import numpy as np

RANK_METRICS = ("recall", "ndcg", "mrr", "hit")


def rank_of_targets(
    scores: np.ndarray, targets: list[np.ndarray], rng: np.random.Generator
) -> list[np.ndarray]:
    """1-based rank of each target item, ties broken uniformly at random.

    Args:
        scores: (B, n_items) scores; excluded items set to ``-inf``.
        targets: B arrays of target item ids.
        rng: Random generator for tie-breaking.

    Returns:
        B int arrays of ranks. An item's rank is 1 + #items scored strictly higher +
        a uniform draw among the other items with an equal score.
    """
    ranks = []
    for row, tgt in zip(scores, targets, strict=True):
        if len(tgt) == 0:
            ranks.append(np.empty(0, np.int64))
            continue
        s = row[tgt][:, None]
        greater = (row[None, :] > s).sum(axis=1)
        equal = (row[None, :] == s).sum(axis=1) - 1
        ranks.append(1 + greater + rng.integers(0, equal + 1))
    return ranks


def ranking_metrics(ranks: list[np.ndarray], ks: tuple[int, ...] = (5, 10, 20)) -> dict[str, float]:
    """Recall, NDCG, MRR and Hit at each k, averaged over users with targets (as RecBole).

    Args:
        ranks: Per-user ranks of that user's target items (from ``rank_of_targets``).
        ks: Cut-offs.

    Returns:
        ``{"ndcg@10": ..., "recall@10": ..., ...}``.
    """
    out: dict[str, list[float]] = {f"{m}@{k}": [] for k in ks for m in RANK_METRICS}
    for r in ranks:
        if len(r) == 0:
            continue
        n_pos = len(r)
        for k in ks:
            hit = r[r <= k]
            out[f"recall@{k}"].append(len(hit) / n_pos)
            out[f"hit@{k}"].append(float(len(hit) > 0))
            out[f"mrr@{k}"].append(1.0 / hit.min() if len(hit) else 0.0)
            dcg = (1.0 / np.log2(hit + 1)).sum()
            idcg = (1.0 / np.log2(np.arange(2, min(n_pos, k) + 2))).sum()
            out[f"ndcg@{k}"].append(dcg / idcg)
    return {key: float(np.mean(v)) if v else 0.0 for key, v in out.items()}


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC with average ranks for ties (Mann-Whitney). NaN if one class is absent."""
    labels = np.asarray(labels, bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    sorted_scores = np.asarray(scores)[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Average rank within each run of equal scores.
    _, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def rmse(y: np.ndarray, yhat: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(yhat)) ** 2)))


def mae(y: np.ndarray, yhat: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y) - np.asarray(yhat))))


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = 1e-9) -> float:
    """Mean KL(p || q) over rows; p is the held-out category mix, q the prediction."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    return float(np.mean(np.sum(np.where(p > 0, p * np.log((p + eps) / (q + eps)), 0.0), axis=1)))


def coverage(top_items: np.ndarray, n_items: int) -> float:
    """Share of the catalog that appears in any list. ``top_items`` is (B, k)."""
    return float(len(np.unique(top_items)) / n_items)


def intra_list_diversity(top_items: np.ndarray, item_vectors: np.ndarray) -> float:
    """Mean pairwise (1 - cosine) within each list, averaged over lists."""
    v = item_vectors / np.maximum(np.linalg.norm(item_vectors, axis=1, keepdims=True), 1e-12)
    vals = []
    for row in top_items:
        if len(row) < 2:
            continue
        sim = v[row] @ v[row].T
        k = len(row)
        vals.append(1.0 - (sim.sum() - np.trace(sim)) / (k * (k - 1)))
    return float(np.mean(vals)) if vals else 0.0


def novelty(top_items: np.ndarray, item_popularity: np.ndarray, n_users: int) -> float:
    """Mean self-information -log2(p(item)) of recommended items, p = users who had it / users."""
    p = np.maximum(item_popularity[top_items], 1) / max(n_users, 1)
    return float(np.mean(-np.log2(p)))
