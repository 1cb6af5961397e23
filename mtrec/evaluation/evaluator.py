"""Evaluate any ``BaseModel`` on a named protocol with the same candidates and metrics."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from mtrec.data.history import user_histories
from mtrec.data.schema import Dataset
from mtrec.evaluation import metrics as M
from mtrec.evaluation.protocols import Split
from mtrec.model.base import BaseModel


def evaluate_ranking(
    model: BaseModel,
    ds: Dataset,
    split: Split,
    phase: str = "test",
    ks: tuple[int, ...] = (5, 10, 20),
    seed: int = 2020,
    batch_size: int = 256,
    users: np.ndarray | None = None,
    beyond_accuracy: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Full-ranking metrics over all items for users with targets in ``phase``.

    Each user's earlier-phase items (train; plus validation at test) are excluded from the
    ranking, as in RecBole. Ties are broken at random with ``seed``.

    Args:
        model: A fitted model.
        ds: The dataset the split indexes.
        split: Rows by phase.
        phase: ``"valid"`` or ``"test"``.
        ks: Cut-offs.
        seed: Tie-breaking seed.
        batch_size: Users scored at once.
        users: Restrict to these dense user ids (e.g. a seeded sample).
        beyond_accuracy: Also compute coverage, intra-list diversity (over categories) and
            novelty of the top-10 lists.
        on_batch: Called with the number of users done after each batch (progress).

    Returns:
        ``{"ndcg@10": ..., "recall@10": ..., "coverage@10": ..., "users": n}``.
    """
    hist = user_histories(ds, split.rows_before(phase))
    rows = split.rows_of(phase)
    targets: list[list[int]] = [[] for _ in range(ds.n_users)]
    for u, i in zip(ds.user_idx[rows], ds.item_idx[rows], strict=True):
        targets[u].append(int(i))
    eval_users = np.array([u for u in range(ds.n_users) if targets[u]], np.int64)
    if users is not None:
        eval_users = np.intersect1d(eval_users, users)
    rng = np.random.default_rng(seed)
    ranks: list[np.ndarray] = []
    tops: list[np.ndarray] = []
    for start in range(0, len(eval_users), batch_size):
        batch = eval_users[start : start + batch_size]
        scores = np.asarray(model.score(batch, [hist[u] for u in batch]), dtype=np.float64)
        for r, u in enumerate(batch):
            if len(hist[u]):
                scores[r, hist[u].items] = -np.inf
        ranks.extend(M.rank_of_targets(scores, [np.array(targets[u]) for u in batch], rng))
        if beyond_accuracy:
            # Random jitter below the score resolution breaks ties without using item ids.
            noisy = torch.as_tensor(scores + rng.random(scores.shape) * 1e-9)
            tops.append(torch.topk(noisy, 10, dim=1).indices.numpy())
        if on_batch:
            on_batch(len(batch))
    out = M.ranking_metrics(ranks, ks)
    out["users"] = float(len(eval_users))
    if beyond_accuracy and tops:
        top = np.concatenate(tops)
        train_pop = np.bincount(ds.item_idx[split.rows_before(phase)], minlength=ds.n_items)
        out["coverage@10"] = M.coverage(top, ds.n_items)
        out["diversity@10"] = M.intra_list_diversity(top, ds.category_matrix() + 1e-6)
        out["novelty@10"] = M.novelty(top, train_pop, ds.n_users)
    return out
