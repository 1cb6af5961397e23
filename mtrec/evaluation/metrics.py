"""Metric functions. Rankings break ties at random (seeded), never by item id.

Item ids in MovieLens correlate with popularity and release order, so ``argsort``'s
index tie-break would leak order into a model that outputs ties (popularity does).
"""

from __future__ import annotations

import numpy as np

RANK_METRICS = ("recall", "ndcg", "mrr", "hit", "precision", "f1")


def random_tiebreak_order(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Items of each row, best first; equal scores ordered by one random permutation per row.

    Args:
        scores: (B, n_items) finite scores or ``-inf`` (excluded items); NaN is an error.
        rng: Random generator for the tie-break permutations.

    Returns:
        (B, n_items) int64 item ids. Every rank within a row is distinct, and among items with
        equal scores (targets and non-targets alike) the order is uniformly random, never
        by item id.
    """
    scores = np.asarray(scores, np.float64)
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    b, n = scores.shape
    # A random permutation of 0..n-1 per row is the secondary sort key: distinct integers,
    # so two tied items can never share a rank (an independent draw per item could).
    tiebreak = rng.permuted(np.tile(np.arange(n), (b, 1)), axis=1)
    return np.lexsort((tiebreak, -scores), axis=-1)


def ranks_from_order(order: np.ndarray) -> np.ndarray:
    """(B, n) 1-based rank of every item, from ``random_tiebreak_order``'s (B, n) output."""
    ranks = np.empty_like(order)
    positions = np.broadcast_to(np.arange(1, order.shape[1] + 1), order.shape)
    np.put_along_axis(ranks, order, positions, axis=1)
    return ranks


def rank_of_targets(
    scores: np.ndarray, targets: list[np.ndarray], rng: np.random.Generator
) -> list[np.ndarray]:
    """1-based rank of each target item, ties broken by one random permutation per row.

    Args:
        scores: (B, n_items) scores; excluded items set to ``-inf``.
        targets: B arrays of target item ids.
        rng: Random generator for tie-breaking.

    Returns:
        B int arrays of ranks, distinct within a row: 1 + #items scored strictly higher +
        the number of tied items the row's random permutation puts first.
    """
    ranks = ranks_from_order(random_tiebreak_order(scores, rng))
    return [ranks[b, np.asarray(t, np.int64)] for b, t in enumerate(targets)]


def per_user_ranking_metrics(
    ranks: list[np.ndarray], ks: tuple[int, ...] = (5, 10, 20)
) -> dict[str, np.ndarray]:
    """Each metric at each k for each user with at least one target (RecBole's formulas).

    Recall@k = hits/#targets; Precision@k = hits/k; F1@k = 2PR/(P+R) (0 when both are 0);
    Hit@k = any hit; MRR@k = 1/(rank of the first hit); NDCG@k = DCG / IDCG over
    min(#targets, k) ideal positions.

    Args:
        ranks: Per-user ranks of that user's target items (distinct within a user).
        ks: Cut-offs.

    Returns:
        ``{"ndcg@10": (U,) float64, ...}`` for the U users with targets, in input order.
    """
    kept = [np.asarray(r, np.float64) for r in ranks if len(r)]
    n_pos = np.array([len(r) for r in kept], np.int64)
    width = int(n_pos.max()) if len(kept) else 0
    # (U, T) ranks padded with +inf: a padded slot is never a hit.
    padded = np.full((len(kept), width), np.inf)
    for u, r in enumerate(kept):
        padded[u, : len(r)] = r
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hit = padded <= k
        hits = hit.sum(axis=1)
        recall = hits / np.maximum(n_pos, 1)
        precision = hits / k
        both = precision + recall
        f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(both), where=both > 0)
        gains = np.where(hit, 1.0 / np.log2(np.where(hit, padded, 1.0) + 1), 0.0)
        ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])
        first = np.where(hit, padded, np.inf).min(axis=1) if width else np.full(len(kept), np.inf)
        out[f"recall@{k}"] = recall
        out[f"precision@{k}"] = precision
        out[f"f1@{k}"] = f1
        out[f"hit@{k}"] = (hits > 0).astype(np.float64)
        out[f"mrr@{k}"] = np.where(np.isfinite(first), 1.0 / first, 0.0)
        out[f"ndcg@{k}"] = gains.sum(axis=1) / ideal[np.minimum(n_pos, k)]
    return out


def ranking_metrics(ranks: list[np.ndarray], ks: tuple[int, ...] = (5, 10, 20)) -> dict[str, float]:
    """``per_user_ranking_metrics`` averaged over users with targets (as RecBole).

    Args:
        ranks: Per-user ranks of that user's target items (from ``rank_of_targets``).
        ks: Cut-offs.

    Returns:
        ``{"ndcg@10": ..., "recall@10": ..., "precision@10": ..., "f1@10": ..., ...}``.
    """
    per_user = per_user_ranking_metrics(ranks, ks)
    return {key: float(v.mean()) if len(v) else 0.0 for key, v in per_user.items()}


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
