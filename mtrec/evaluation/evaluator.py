"""Evaluate any ``BaseModel`` on a named protocol with the same candidates and metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtrec.data.history import History, user_histories
from mtrec.data.schema import Dataset
from mtrec.evaluation import metrics as M
from mtrec.evaluation.protocols import Split
from mtrec.model.base import BaseModel

# "history": RecBole's general-model convention (earlier-phase items excluded from the ranking);
# "none": RecBole's sequential-model convention (nothing excluded).
MASKS = ("history", "none")


@dataclass(frozen=True)
class RankingEvaluation:
    """Full-ranking results of one model on one phase, overall and per user.

    Attributes:
        summary: Metric means over users with targets, plus ``users`` and, when asked,
            ``coverage@10``, ``diversity@10`` and ``novelty@10``.
        users: (U,) the evaluated users' tokens (``ds.users[u].user_id``), so two result
            files can be paired user by user.
        user_idx: (U,) their dense ids.
        per_user: ``{"ndcg@10": (U,) float64, ...}``, rows aligned with ``users``.
    """

    summary: dict[str, float]
    users: np.ndarray
    user_idx: np.ndarray
    per_user: dict[str, np.ndarray]


def phase_targets(ds: Dataset, split: Split, phase: str) -> list[np.ndarray]:
    """Per dense user id, the distinct items of that user's ``phase`` rows (sorted)."""
    rows = split.rows_of(phase)
    order = np.lexsort((ds.item_idx[rows], ds.user_idx[rows]))
    users, items = ds.user_idx[rows][order], ds.item_idx[rows][order]
    bounds = np.searchsorted(users, np.arange(ds.n_users + 1))
    return [np.unique(items[bounds[u] : bounds[u + 1]]) for u in range(ds.n_users)]


def history_mask(history: History, targets: np.ndarray) -> np.ndarray:
    """Items excluded under ``mask="history"``: the earlier-phase items minus this phase's
    targets (RecBole: ``history_item = used_item - positive_item``; differs from "all history
    items" only when a user interacts with the same item again in a later phase)."""
    return np.setdiff1d(history.items, targets)


def evaluate_ranking_per_user(
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
    mask: str = "history",
) -> RankingEvaluation:
    """Full-ranking metrics over all items for users with targets in ``phase``, per user.

    The model scores every item given the user's earlier-phase history (train for
    ``valid``; train + valid for ``test``). Ties are broken by one seeded random permutation
    per user (never by item id), so ranks within a user are distinct.

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
        mask: ``"history"`` excludes each user's earlier-phase items (except this phase's
            targets) from the ranking, as RecBole's general models; ``"none"`` excludes
            nothing, as RecBole's sequential models.

    Returns:
        A ``RankingEvaluation``.

    Raises:
        ValueError: an unknown ``mask`` or ``phase``, or NaN scores.
    """
    if mask not in MASKS:
        raise ValueError(f"mask must be one of {', '.join(map(repr, MASKS))}, got {mask!r}")
    hist = user_histories(ds, split.rows_before(phase))
    targets = phase_targets(ds, split, phase)
    eval_users = np.array([u for u in range(ds.n_users) if len(targets[u])], np.int64)
    if users is not None:
        eval_users = np.intersect1d(eval_users, users)
    rng = np.random.default_rng(seed)
    ranks: list[np.ndarray] = []
    tops: list[np.ndarray] = []
    for start in range(0, len(eval_users), batch_size):
        batch = eval_users[start : start + batch_size]
        scores = np.asarray(model.score(batch, [hist[u] for u in batch]), dtype=np.float64)
        if mask == "history":
            for r, u in enumerate(batch):
                scores[r, history_mask(hist[u], targets[u])] = -np.inf
        # One ordering serves both the target ranks and the top-10 lists.
        order = M.random_tiebreak_order(scores, rng)
        ranks_all = M.ranks_from_order(order)
        ranks.extend(ranks_all[r, targets[u]] for r, u in enumerate(batch))
        if beyond_accuracy:
            tops.append(order[:, :10])
        if on_batch:
            on_batch(len(batch))
    per_user = M.per_user_ranking_metrics(ranks, ks)
    out = {key: float(v.mean()) if len(v) else 0.0 for key, v in per_user.items()}
    out["users"] = float(len(eval_users))
    if beyond_accuracy and tops:
        top = np.concatenate(tops)
        train_pop = np.bincount(ds.item_idx[split.rows_before(phase)], minlength=ds.n_items)
        out["coverage@10"] = M.coverage(top, ds.n_items)
        out["diversity@10"] = M.intra_list_diversity(top, ds.category_matrix() + 1e-6)
        out["novelty@10"] = M.novelty(top, train_pop, ds.n_users)
    tokens = np.array([ds.users[u].user_id for u in eval_users], dtype=str)
    return RankingEvaluation(out, tokens, eval_users, per_user)


def evaluate_ranking(
    model: BaseModel, ds: Dataset, split: Split, phase: str = "test", **options: Any
) -> dict[str, float]:
    """``evaluate_ranking_per_user(...).summary``: metric means over users.

    Args:
        model, ds, split, phase: As ``evaluate_ranking_per_user``.
        **options: Its keyword options (``ks``, ``seed``, ``mask``, ``users``, ...).

    Returns:
        ``{"ndcg@10": ..., "recall@10": ..., "precision@10": ..., "f1@10": ...,
        "coverage@10": ..., "users": n}``.
    """
    return evaluate_ranking_per_user(model, ds, split, phase, **options).summary


class PrecomputedScores(BaseModel):
    """A "model" that returns a fixed score matrix: scores computed elsewhere (e.g. by a
    RecBole model, dumped by ``benchmarks/recbole_peer_runner.py``) evaluated by this module.

    Args:
        scores: (n_users, n_items) float32 scores by dense ids; NaN rows for users without
            scores (asking for one raises).
        name: Shown in reports.
    """

    def __init__(self, scores: np.ndarray, name: str = "precomputed") -> None:
        self.scores = np.asarray(scores, np.float32)
        self.n_items = self.scores.shape[1]
        self.name = name

    def fit(self, ds: Dataset, rows: np.ndarray, **kwargs: object) -> PrecomputedScores:
        if self.scores.shape != (ds.n_users, ds.n_items):
            shape = (ds.n_users, ds.n_items)
            raise ValueError(f"scores are {self.scores.shape}, the dataset is {shape}")
        return self

    def score(self, users: np.ndarray, histories: Sequence[History]) -> np.ndarray:
        out = self.scores[np.asarray(users, np.int64)]
        missing = np.isnan(out).all(axis=1)
        if missing.any():
            raise ValueError(f"no scores for users {np.asarray(users)[missing][:5].tolist()}")
        return out
