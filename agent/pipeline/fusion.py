"""Weighted reciprocal-rank fusion of rankings (model, query, LLM)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

RRF_K = 60.0
T = TypeVar("T", bound=Hashable)


def reciprocal_rank_fusion(
    orders: Sequence[Sequence[T]], weights: Sequence[float], k: float = RRF_K
) -> dict[T, float]:
    """Weighted reciprocal-rank fusion: ``score(i) = sum_j w_j / (k + rank_j(i))``.

    Items missing from an order get no contribution from it.

    Args:
        orders: Rankings (best first) of item ids.
        weights: One weight per ranking.
        k: The RRF constant (60 as in Cormack et al. 2009).

    Returns:
        Fused scores by item id.
    """
    scores: dict[T, float] = {}
    for order, w in zip(orders, weights, strict=True):
        if w == 0:
            continue
        for rank, item in enumerate(order, start=1):
            scores[item] = scores.get(item, 0.0) + w / (k + rank)
    return scores
