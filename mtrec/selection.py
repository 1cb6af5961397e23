"""Choosing how the task heads combine, on validation rows only (issue 13, item 6).

The engagement head ranks what a user will interact with; the like and rating heads say
whether they will like it. A recommender that should surface interactions the user will like
ranks by a fused score (``MultiTaskModel.fused_logits``)::

    engagement logit + w_like * like logit + w_rating * (predicted rating - 3)

``select_fusion`` picks ``(w_like, w_rating)`` from a grid by NDCG@10 against the *liked*
validation items (rated at or above the like threshold): the utility is the chance that a
recommended item is one the user interacts with *and* likes. A weight pair is eligible only
if it keeps NDCG@10 against *all* validation items within noise of the engagement head alone
(paired bootstrap over users: the 95 % interval of fused - engagement must not lie wholly
below zero), so the fusion cannot trade the main ranking away. Only the training rows
(history) and the validation rows (targets) are read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mtrec.data.history import History, user_histories
from mtrec.data.schema import Dataset
from mtrec.evaluation.evaluator import evaluate_ranking_per_user
from mtrec.evaluation.protocols import Split
from mtrec.evaluation.stats import paired_bootstrap
from mtrec.model.base import BaseModel
from mtrec.model.multitask import MultiTaskModel

LIKE_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
RATING_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
UTILITY = "NDCG@10 against liked validation items (rating >= like threshold), masked"


def liked_rows(ds: Dataset, rows: np.ndarray, threshold: float) -> np.ndarray:
    """The rows of ``rows`` whose rating is at or above ``threshold`` (unrated rows: no)."""
    values = ds.value[rows]
    return rows[~np.isnan(values) & (values >= threshold)]


def liked_split(ds: Dataset, split: Split, threshold: float, phase: str = "valid") -> Split:
    """A split whose ``phase`` targets are the liked rows of that phase, with the same
    history as ``split`` (train for ``valid``; train + valid for ``test``)."""
    empty = np.empty(0, np.int64)
    if phase == "valid":
        return Split(split.protocol, split.train, liked_rows(ds, split.valid, threshold), empty)
    if phase == "test":
        history = np.concatenate([split.train, split.valid])
        return Split(split.protocol, history, empty, liked_rows(ds, split.test, threshold))
    raise ValueError(f"phase must be 'valid' or 'test', got {phase!r}")


class FusedScores(BaseModel):
    """Scores ``engagement + w_like * like_logit + w_rating * (rating - 3)`` from the three
    head matrices of a fixed set of users (computed once, re-weighted per grid point)."""

    name = "MTRec fused"

    def __init__(
        self,
        users: np.ndarray,
        engagement: np.ndarray,
        like: np.ndarray,
        rating: np.ndarray,
    ) -> None:
        self.row = {int(u): r for r, u in enumerate(users)}
        self.engagement, self.like, self.rating = engagement, like, rating
        self.n_items = engagement.shape[1]
        self.weights = (0.0, 0.0)

    def fit(self, ds: Dataset, rows: np.ndarray, **kwargs: object) -> FusedScores:
        return self

    def score(self, users: np.ndarray, histories: Sequence[History]) -> np.ndarray:
        r = np.array([self.row[int(u)] for u in users], np.int64)
        w_like, w_rating = self.weights
        out = self.engagement[r].astype(np.float64)
        if w_like:
            out += w_like * self.like[r]
        if w_rating:
            out += w_rating * (self.rating[r] - 3.0)
        return out


@torch.inference_mode()
def head_matrices(
    model: MultiTaskModel, histories: Sequence[History], batch_size: int = 128
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U, n_items) engagement logits, like logits and predicted ratings for these users."""
    eng, like, rating = [], [], []
    for start in range(0, len(histories), batch_size):
        state = model.user_state(histories[start : start + batch_size])
        eng.append(model.engagement_logits(state).float().cpu().numpy())
        lk, rt = model.head_scores(state)
        like.append(lk.float().cpu().numpy())
        rating.append(rt.float().cpu().numpy())
    return np.concatenate(eng), np.concatenate(like), np.concatenate(rating)


def fused_model(model: MultiTaskModel, ds: Dataset, split: Split, phase: str) -> FusedScores:
    """A ``FusedScores`` over every user with ``phase`` rows, from their history before it."""
    hist = user_histories(ds, split.rows_before(phase))
    users = np.unique(ds.user_idx[split.rows_of(phase)])
    return FusedScores(users, *head_matrices(model, [hist[u] for u in users]))


def select_fusion(
    model: MultiTaskModel,
    ds: Dataset,
    split: Split,
    like_grid: Sequence[float] = LIKE_GRID,
    rating_grid: Sequence[float] = RATING_GRID,
    seed: int = 2020,
) -> dict[str, float | str]:
    """Choose the fusion weights on the validation phase and return them with the evidence.

    Ties in the utility keep the earlier grid point (smaller weights first), never anything
    about items.

    Returns:
        ``{"like", "rating", "utility", "selected_on", "valid": {...}}`` (``valid`` holds the
        validation NDCG@10 on liked and all targets for engagement alone and for the choice).
    """
    threshold = model.config.train.like_threshold
    liked = liked_split(ds, split, threshold, "valid")
    fused = fused_model(model, ds, split, "valid")
    users = np.array(sorted(fused.row), np.int64)

    def run(weights: tuple[float, float], targets: Split) -> np.ndarray:
        fused.weights = weights
        ev = evaluate_ranking_per_user(
            fused, ds, targets, "valid", ks=(10,), users=users, beyond_accuracy=False, seed=seed
        )
        return ev.per_user["ndcg@10"]

    base_all = run((0.0, 0.0), split)
    base_liked = run((0.0, 0.0), liked) if len(liked.valid) else np.zeros(0)
    best = (0.0, 0.0)
    best_liked, best_all = float(base_liked.mean()) if len(base_liked) else 0.0, base_all
    tried = 0
    if len(liked.valid):
        for w_like in like_grid:
            for w_rating in rating_grid:
                if (w_like, w_rating) == (0.0, 0.0):
                    continue
                tried += 1
                value = float(run((w_like, w_rating), liked).mean())
                if value <= best_liked:
                    continue
                on_all = run((w_like, w_rating), split)
                interval = paired_bootstrap(on_all, base_all, n_boot=2000, seed=seed)
                if interval.high < 0:
                    continue  # a loss on all targets beyond noise: not eligible
                best, best_liked, best_all = (w_like, w_rating), value, on_all
    return {
        "like": best[0],
        "rating": best[1],
        "utility": UTILITY,
        "selected_on": f"valid ({len(users)} users, {tried} weight pairs)",
        "valid": {
            "liked_ndcg@10_engagement": float(base_liked.mean()) if len(base_liked) else 0.0,
            "liked_ndcg@10_fused": best_liked,
            "all_ndcg@10_engagement": float(base_all.mean()),
            "all_ndcg@10_fused": float(np.mean(best_all)),
        },
    }


def fusion_comparison(
    model: MultiTaskModel, ds: Dataset, split: Split, phase: str = "test", seed: int = 2020
) -> dict[str, dict[str, object]]:
    """The engagement head alone against the fused score (``model.config.fusion``'s weights)
    on ``phase``, masked, on liked targets and on all targets: where the multi-task model
    shows whether its like and rating heads earn their place (issue 13, item 6).

    Run it once, after the weights were chosen on validation; on ``test`` it is a report and
    must not feed back into any choice.

    Returns:
        ``{"liked": ..., "all": ...}``, each ``{"users": (U,) tokens, "per_user":
        {"engagement": {"ndcg@10": (U,), "recall@10": (U,)}, "fused": {...}}, "summary":
        {side means, the weights, the paired bootstrap interval of fused - engagement}}``.
    """
    fused = fused_model(model, ds, split, phase)
    users = np.array(sorted(fused.row), np.int64)
    weights = (model.config.fusion.like, model.config.fusion.rating)
    liked = liked_split(ds, split, model.config.train.like_threshold, phase)
    out: dict[str, dict[str, object]] = {}
    for name, targets in (("liked", liked), ("all", split)):
        per_user: dict[str, dict[str, np.ndarray]] = {}
        tokens = np.empty(0, np.int64)
        for side, w in (("engagement", (0.0, 0.0)), ("fused", weights)):
            fused.weights = w
            ev = evaluate_ranking_per_user(
                fused, ds, targets, phase, ks=(10,), users=users, beyond_accuracy=False, seed=seed
            )
            per_user[side] = {m: ev.per_user[m] for m in ("ndcg@10", "recall@10")}
            tokens = ev.users  # both sides score the same users: the targets are the same
        a, b = per_user["fused"]["ndcg@10"], per_user["engagement"]["ndcg@10"]
        summary: dict[str, object] = {
            f"{side}_{m}": float(v[m].mean()) for side, v in per_user.items() for m in v
        }
        summary.update(
            users=len(a),
            weights={"like": weights[0], "rating": weights[1]},
            paired_ndcg10_fused_minus_engagement=paired_bootstrap(a, b, seed=seed).to_dict(),
        )
        out[name] = {"users": tokens, "per_user": per_user, "summary": summary}
    return out


__all__ = [
    "FusedScores",
    "fused_model",
    "fusion_comparison",
    "liked_rows",
    "liked_split",
    "select_fusion",
]
