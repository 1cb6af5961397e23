"""Stage 2: per-task model scores of the candidates, the fused model score and the model order.

The model's fused score orders candidates before any LLM sees them; a free-text query adds a
second order (text similarity) fused with it by reciprocal rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.pipeline.fusion import reciprocal_rank_fusion
from agent.settings import Settings
from mtrec.config import FusionConfig
from mtrec.model.multitask import TaskScores


@dataclass(frozen=True)
class FusionWeights:
    """How the task heads combine into the model's score (see ``fused_model_score``)."""

    like: float = 0.0
    rating: float = 0.0

    @classmethod
    def of(cls, chosen: FusionConfig, settings: Settings) -> FusionWeights:
        """The weights a model chose on validation (``chosen``), each overridden by the
        setting (``fuse_like``, ``fuse_rating``) when that is set."""
        like, rating = settings.fuse_like, settings.fuse_rating
        return cls(
            chosen.like if like is None else like, chosen.rating if rating is None else rating
        )


def fused_model_score(ts: TaskScores, w: FusionWeights) -> np.ndarray:
    """Engagement logit + ``w.like`` x like logit + ``w.rating`` x (rating - 3).

    Works on one user's (n,) task scores and on a batch's (B, n) alike.
    """
    like = np.clip(ts.like, 1e-4, 1 - 1e-4)
    return ts.engagement_logit + w.like * np.log(like / (1 - like)) + w.rating * (ts.rating - 3.0)


@dataclass(frozen=True)
class ScoredCandidates:
    """The candidates with their scores, and the order the model (and query) gives them.

    Attributes:
        items: (n,) dense item ids (the candidates' order).
        tasks: Per-task scores, arrays aligned with ``items``.
        fused: (n,) the model's fused score.
        order: Dense ids, best first: the model's order, fused with the query's when there is
            one.
        score: The score behind ``order`` for each item (fused model score, or the RRF score
            of model and query).
    """

    items: np.ndarray
    tasks: TaskScores
    fused: np.ndarray
    order: list[int]
    score: dict[int, float]

    def position(self) -> dict[int, int]:
        """Index of each item in ``items``."""
        return {int(i): j for j, i in enumerate(self.items)}

    def rank(self) -> dict[int, int]:
        """1-based rank of each item in ``order``."""
        return {item: r for r, item in enumerate(self.order, start=1)}


def score_candidates(
    items: np.ndarray,
    tasks: TaskScores,
    weights: FusionWeights,
    query_similarity: np.ndarray | None = None,
) -> ScoredCandidates:
    """Order candidates by the fused model score, fused with a query's order when given.

    Args:
        items: (n,) candidate dense ids.
        tasks: Their task scores.
        weights: Task-head fusion weights.
        query_similarity: (n,) text similarity of each candidate to the request's query.
    """
    fused = fused_model_score(tasks, weights)
    order = [int(items[j]) for j in np.argsort(-fused, kind="stable")]
    score = {int(i): float(fused[j]) for j, i in enumerate(items)}
    if query_similarity is not None:
        query_order = [int(items[j]) for j in np.argsort(-query_similarity, kind="stable")]
        rrf = reciprocal_rank_fusion([order, query_order], [0.5, 0.5])
        order = sorted(order, key=lambda i: -rrf[i])
        score = {i: rrf[i] for i in order}
    return ScoredCandidates(items, tasks, fused, order, score)


def category_profile(probabilities: np.ndarray, names: Sequence[str]) -> list[tuple[str, float]]:
    """The model's category interest as (name, probability), largest first (empty for a
    catalog without categories, whose category head has one placeholder output)."""
    if not names:
        return []
    return sorted(zip(names, probabilities.tolist(), strict=True), key=lambda x: -x[1])
