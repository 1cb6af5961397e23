"""Choosing how the model's parts combine, on validation rows only (issue 13, items 5 and 6).

The engagement score is the network's logit plus an item-neighbour channel (the
co-occurrence memory of ``mtrec.model.neighbours``); the like and rating heads say whether
the user will like an item. A recommender that should surface interactions the user will
like ranks by a fused score (``MultiTaskModel.fused_logits``)::

    network logit + w_neighbour * neighbour logit + w_like * like logit
        + w_rating * (predicted rating - 3)

``select_fusion`` chooses in two steps, each from a grid, ties keeping the pair tried first
(decays in grid order, then weights from small to large):

1. ``w_neighbour`` and the channel's recency decay (``FusionConfig.neighbour_decay``) by
   NDCG@10 against *all* validation items: it is part of the main ranking (weight 0 = the
   network alone; decay 1 = ItemKNN's sum over the history, a smaller one leans on the
   latest items).
2. ``(w_like, w_rating)`` by NDCG@10 against the *liked* validation items (rated at or above
   the like threshold): the utility is the chance that a recommended item is one the user
   interacts with *and* likes. A pair is eligible only if it keeps NDCG@10 against all
   validation items within noise of the engagement score of step 1 (paired bootstrap over
   users: the 95 % interval of fused - engagement must not lie wholly below zero), so the
   fusion cannot trade the main ranking away.

Only the training rows (history) and the validation rows (targets) are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from mtrec.config import NEIGHBOUR_DECAYS
from mtrec.data.history import History, user_histories
from mtrec.data.schema import Dataset
from mtrec.evaluation.evaluator import evaluate_ranking_per_user
from mtrec.evaluation.protocols import Split
from mtrec.evaluation.stats import paired_bootstrap
from mtrec.model.base import BaseModel
from mtrec.model.multitask import MultiTaskModel
from mtrec.model.network import UserState

NEIGHBOUR_GRID = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
# The loo default of ``TrainConfig.neighbour_decays`` (the random protocol tries 1 alone).
NEIGHBOUR_DECAY_GRID = NEIGHBOUR_DECAYS
LIKE_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
RATING_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
NEIGHBOUR_UTILITY = "NDCG@10 against all validation items, masked"
UTILITY = "NDCG@10 against liked validation items (rating >= like threshold), masked"


class Weights(NamedTuple):
    """Weights of the score's parts beside the network logit (all 0: the network alone)."""

    neighbour: float = 0.0
    like: float = 0.0
    rating: float = 0.0


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
    """Scores ``network + neighbour * n + like * like_logit + rating * (rating - 3)`` from
    the head matrices of a fixed set of users (computed once, re-weighted per grid point).

    ``network`` carries the seen-item bias, so every weighting reproduces
    ``MultiTaskModel.engagement_logits`` / ``fused_logits`` exactly."""

    name = "MTRec fused"

    def __init__(
        self,
        users: np.ndarray,
        network: np.ndarray,
        neighbour: np.ndarray,
        like: np.ndarray,
        rating: np.ndarray,
    ) -> None:
        self.row = {int(u): r for r, u in enumerate(users)}
        self.network, self.neighbour = network, neighbour
        self.like, self.rating = like, rating
        self.n_items = network.shape[1]
        self.weights = Weights()

    def fit(self, ds: Dataset, rows: np.ndarray, **kwargs: object) -> FusedScores:
        return self

    def score(self, users: np.ndarray, histories: Sequence[History]) -> np.ndarray:
        r = np.array([self.row[int(u)] for u in users], np.int64)
        w = self.weights
        out = self.network[r].astype(np.float64)
        if w.neighbour:
            out += w.neighbour * self.neighbour[r]
        if w.like:
            out += w.like * self.like[r]
        if w.rating:
            out += w.rating * (self.rating[r] - 3.0)
        return out


@torch.inference_mode()
def user_states(
    model: MultiTaskModel, histories: Sequence[History], batch_size: int = 128
) -> list[UserState]:
    """The users' states, in batches of ``batch_size`` (the encoder runs once per user)."""
    return [
        model.user_state(histories[start : start + batch_size])
        for start in range(0, len(histories), batch_size)
    ]


@torch.inference_mode()
def head_matrices(
    model: MultiTaskModel,
    histories: Sequence[History],
    batch_size: int = 128,
    decay: float | None = None,
    states: Sequence[UserState] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Four (U, n_items) matrices for these users: the network's engagement logits (with the
    seen-item bias), the neighbour logits (recency ``decay``; the model's own unless given),
    the like logits and the predicted ratings. ``states`` (``user_states`` of the same
    histories) saves the encoder pass."""
    parts: tuple[list[np.ndarray], ...] = ([], [], [], [])
    for state in states if states is not None else user_states(model, histories, batch_size):
        network = model.network_logits(state)
        seen = model.net.seen_logit_bias(state.seen, model.n_items)
        like, rating = model.head_scores(state)
        for out, m in zip(
            parts,
            (
                network if seen is None else network + seen,
                model.neighbour_logits(state, network, decay),
                like,
                rating,
            ),
            strict=True,
        ):
            out.append(m.float().cpu().numpy())
    network, neighbour, like, rating = (np.concatenate(p) for p in parts)
    return network, neighbour, like, rating


@torch.inference_mode()
def neighbour_matrix(
    model: MultiTaskModel, states: Sequence[UserState], decay: float
) -> np.ndarray:
    """(U, n_items) the neighbour logits of these users' states with recency ``decay``."""
    parts = [
        model.neighbour_logits(state, model.network_logits(state), decay).float().cpu().numpy()
        for state in states
    ]
    return np.concatenate(parts)


def phase_histories(ds: Dataset, split: Split, phase: str) -> tuple[np.ndarray, list[History]]:
    """Every user with ``phase`` rows (sorted dense ids) and their history before it."""
    hist = user_histories(ds, split.rows_before(phase))
    users = np.unique(ds.user_idx[split.rows_of(phase)])
    return users, [hist[u] for u in users]


def fused_model(model: MultiTaskModel, ds: Dataset, split: Split, phase: str) -> FusedScores:
    """A ``FusedScores`` over every user with ``phase`` rows, from their history before it."""
    users, histories = phase_histories(ds, split, phase)
    return FusedScores(users, *head_matrices(model, histories))


def select_fusion(
    model: MultiTaskModel,
    ds: Dataset,
    split: Split,
    like_grid: Sequence[float] = LIKE_GRID,
    rating_grid: Sequence[float] = RATING_GRID,
    seed: int = 2020,
    neighbour_grid: Sequence[float] = NEIGHBOUR_GRID,
    decay_grid: Sequence[float] | None = None,
) -> dict[str, object]:
    """Choose the neighbour weight and decay, then the head fusion weights, on the
    validation phase.

    Ties in a utility keep the earlier grid point (decays in grid order, smaller weights
    first), never anything about items. ``decay_grid`` defaults to the model's
    ``config.train.neighbour_decays``. A model without a fitted neighbour memory keeps
    neighbour weight 0 and the grid's first decay.

    Returns:
        ``{"neighbour", "neighbour_decay", "like", "rating", "utility", "selected_on",
        "valid": {...}}``
        (``valid`` holds the validation NDCG@10 of the network alone, of the engagement score
        chosen in step 1, and of the fused choice, on liked and all targets).
    """
    threshold = model.config.train.like_threshold
    liked = liked_split(ds, split, threshold, "valid")
    if decay_grid is None:
        decay_grid = model.config.train.neighbour_decays
    users, histories = phase_histories(ds, split, "valid")
    states = user_states(model, histories)
    current = decay_grid[0]
    fused = FusedScores(users, *head_matrices(model, histories, decay=current, states=states))

    def run(weights: Weights, targets: Split) -> np.ndarray:
        fused.weights = weights
        ev = evaluate_ranking_per_user(
            fused, ds, targets, "valid", ks=(10,), users=users, beyond_accuracy=False, seed=seed
        )
        return ev.per_user["ndcg@10"]

    network_all = run(Weights(), split)
    neighbour, decay, base_all = 0.0, decay_grid[0], network_all
    best_channel = fused.neighbour
    tried_neighbour = 0
    if model.has_neighbours:
        for d in decay_grid:
            if d != current:
                fused.neighbour, current = neighbour_matrix(model, states, d), d
            for w in neighbour_grid:
                if w == 0.0:
                    continue
                tried_neighbour += 1
                on_all = run(Weights(neighbour=w), split)
                if on_all.mean() > base_all.mean():
                    neighbour, decay, base_all = w, d, on_all
                    best_channel = fused.neighbour
        fused.neighbour = best_channel
    base = Weights(neighbour=neighbour)
    base_liked = run(base, liked) if len(liked.valid) else np.zeros(0)
    best = base
    best_liked, best_all = float(base_liked.mean()) if len(base_liked) else 0.0, base_all
    tried = 0
    if len(liked.valid):
        for w_like in like_grid:
            for w_rating in rating_grid:
                if (w_like, w_rating) == (0.0, 0.0):
                    continue
                tried += 1
                candidate = Weights(neighbour, w_like, w_rating)
                value = float(run(candidate, liked).mean())
                if value <= best_liked:
                    continue
                on_all = run(candidate, split)
                interval = paired_bootstrap(on_all, base_all, n_boot=2000, seed=seed)
                if interval.high < 0:
                    continue  # a loss on all targets beyond noise: not eligible
                best, best_liked, best_all = candidate, value, on_all
    return {
        "neighbour": best.neighbour,
        "neighbour_decay": float(decay),
        "like": best.like,
        "rating": best.rating,
        "utility": f"neighbour: {NEIGHBOUR_UTILITY}; like, rating: {UTILITY}",
        "selected_on": (
            f"valid ({len(users)} users, {tried_neighbour} neighbour weight x decay pairs, "
            f"{tried} like/rating pairs)"
        ),
        "valid": {
            "all_ndcg@10_network": float(network_all.mean()),
            "liked_ndcg@10_engagement": float(base_liked.mean()) if len(base_liked) else 0.0,
            "liked_ndcg@10_fused": best_liked,
            "all_ndcg@10_engagement": float(base_all.mean()),
            "all_ndcg@10_fused": float(np.mean(best_all)),
        },
    }


def fusion_comparison(
    model: MultiTaskModel, ds: Dataset, split: Split, phase: str = "test", seed: int = 2020
) -> dict[str, dict[str, object]]:
    """Three rankings on ``phase``, masked, on liked and on all targets: the network alone,
    the engagement score (network + ``config.fusion.neighbour`` x neighbour channel) and the
    fused score (``config.fusion``'s weights). Where the neighbour channel and the like and
    rating heads show whether they earn their place (issue 13, items 5 and 6).

    Run it once, after the weights were chosen on validation; on ``test`` it is a report and
    must not feed back into any choice.

    Returns:
        ``{"liked": ..., "all": ...}``, each ``{"users": (U,) tokens, "per_user":
        {"network": {"ndcg@10": (U,), "recall@10": (U,)}, "engagement": {...}, "fused":
        {...}}, "summary": {side means, the weights, the paired bootstrap intervals of fused -
        engagement and engagement - network}}``.
    """
    fused = fused_model(model, ds, split, phase)
    users = np.array(sorted(fused.row), np.int64)
    f = model.config.fusion
    sides = {
        "network": Weights(),
        "engagement": Weights(neighbour=f.neighbour),
        "fused": Weights(f.neighbour, f.like, f.rating),
    }
    liked = liked_split(ds, split, model.config.train.like_threshold, phase)
    out: dict[str, dict[str, object]] = {}
    for name, targets in (("liked", liked), ("all", split)):
        per_user: dict[str, dict[str, np.ndarray]] = {}
        tokens = np.empty(0, np.int64)
        for side, w in sides.items():
            fused.weights = w
            ev = evaluate_ranking_per_user(
                fused, ds, targets, phase, ks=(10,), users=users, beyond_accuracy=False, seed=seed
            )
            per_user[side] = {m: ev.per_user[m] for m in ("ndcg@10", "recall@10")}
            tokens = ev.users  # every side scores the same users: the targets are the same
        ndcg = {side: v["ndcg@10"] for side, v in per_user.items()}
        summary: dict[str, object] = {
            f"{side}_{m}": float(v[m].mean()) for side, v in per_user.items() for m in v
        }
        summary.update(
            users=len(ndcg["fused"]),
            weights={
                "neighbour": f.neighbour,
                "neighbour_decay": f.neighbour_decay,
                "like": f.like,
                "rating": f.rating,
            },
            paired_ndcg10_fused_minus_engagement=paired_bootstrap(
                ndcg["fused"], ndcg["engagement"], seed=seed
            ).to_dict(),
            paired_ndcg10_engagement_minus_network=paired_bootstrap(
                ndcg["engagement"], ndcg["network"], seed=seed
            ).to_dict(),
        )
        out[name] = {"users": tokens, "per_user": per_user, "summary": summary}
    return out


__all__ = [
    "FusedScores",
    "Weights",
    "fused_model",
    "fusion_comparison",
    "head_matrices",
    "liked_rows",
    "liked_split",
    "neighbour_matrix",
    "phase_histories",
    "select_fusion",
    "user_states",
]
