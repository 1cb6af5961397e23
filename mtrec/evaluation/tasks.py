"""Metrics of the multi-task model's auxiliary heads: like, rating and category interest."""

from __future__ import annotations

import numpy as np
import torch

from mtrec.data.history import user_histories
from mtrec.data.schema import Dataset
from mtrec.evaluation import metrics as M
from mtrec.evaluation.protocols import Split
from mtrec.model.multitask import MultiTaskModel


@torch.inference_mode()
def evaluate_tasks(
    model: MultiTaskModel, ds: Dataset, split: Split, phase: str = "test", batch_size: int = 256
) -> dict[str, float]:
    """Like AUC, rating RMSE/MAE and category-interest quality on ``phase`` rows.

    The like label is ``rating >= like_threshold``. Category quality compares the predicted
    distribution with the category mix of each user's ``phase`` items: mean KL divergence
    and NDCG@3 of the categories ranked by predicted interest.
    """
    hist = user_histories(ds, split.rows_before(phase))
    rows = split.rows_of(phase)
    by_user: dict[int, list[int]] = {}
    for r in rows:
        by_user.setdefault(int(ds.user_idx[r]), []).append(int(r))
    users = np.array(sorted(by_user), np.int64)
    cats = ds.category_matrix()
    threshold = model.config.train.like_threshold
    y_rating, p_rating, y_like, p_like, kls, cat_ndcg = [], [], [], [], [], []
    vectors = model.item_vectors_tensor()
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        state = model.user_state([hist[u] for u in batch])
        cat_prob = torch.softmax(state.category_logits, dim=-1).cpu().numpy()
        for b, u in enumerate(batch):
            r = np.array(by_user[u])
            vals = ds.value[r]
            rated = ~np.isnan(vals)
            if rated.any():
                v = vectors[torch.as_tensor(ds.item_idx[r[rated]])]
                rating = model.net.rating(state.rating[b].expand_as(v), v).cpu().numpy()
                like = torch.sigmoid(model.net.like_logit(state.like[b].expand_as(v), v))
                y_rating.extend(vals[rated])
                p_rating.extend(rating)
                y_like.extend(vals[rated] >= threshold)
                p_like.extend(like.cpu().numpy())
            mix = cats[ds.item_idx[r]].sum(axis=0)
            if mix.sum() > 0:
                mix = mix / mix.sum()
                kls.append(M.kl_divergence(mix[None], cat_prob[b][None]))
                order = np.argsort(-cat_prob[b], kind="stable")[:3]
                dcg = (mix[order] / np.log2(np.arange(2, 5))).sum()
                ideal = (np.sort(mix)[::-1][:3] / np.log2(np.arange(2, 5))).sum()
                cat_ndcg.append(dcg / ideal)
    out: dict[str, float] = {}
    if y_rating:
        out["rating_rmse"] = M.rmse(np.array(y_rating), np.array(p_rating))
        out["rating_mae"] = M.mae(np.array(y_rating), np.array(p_rating))
        out["like_auc"] = M.auc(np.array(y_like), np.array(p_like))
    if kls:
        out["category_kl"] = float(np.mean(kls))
        out["category_ndcg@3"] = float(np.mean(cat_ndcg))
    return out
