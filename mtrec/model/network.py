"""The multi-task network: item tower, user encoder, task mixture and four task heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mtrec.config import ModelConfig
from mtrec.data.schema import NUM_EVENT_TYPES
from mtrec.model.batching import Bag
from mtrec.model.item_tower import ItemTower
from mtrec.model.mixture import TaskMixture
from mtrec.model.neighbours import ItemNeighbours
from mtrec.model.user_encoder import RATING_BUCKETS, UserEncoder

TASKS = ("engagement", "like", "rating", "category")


@dataclass
class UserState:
    """What the network knows about users after reading their histories.

    Attributes:
        interest: (..., dim) the user interest vector u; engagement logits are ``u @ V.T + b``.
        like: (..., dim) input of the like head.
        rating: (..., dim) input of the rating head.
        category_logits: (..., n_categories) category-interest logits.
        seen: (B, S) int64 every item of each user's history, oldest first, right-padded
            with ``n_items`` (the input of the learned seen-item bias); None inside training.
        neighbour_seen: (B, S') the same without dislike events, the input of the
            item-neighbour channel (a dislike must not pull its neighbours up); None when no
            history holds a dislike (then ``seen`` is that input).
    """

    interest: torch.Tensor
    like: torch.Tensor
    rating: torch.Tensor
    category_logits: torch.Tensor
    seen: torch.Tensor | None = None
    neighbour_seen: torch.Tensor | None = None


class _PairHead(nn.Module):
    """Scores a (user, item) pair from ``[u, v, u * v]`` with a small MLP."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(3 * dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, 1)
        )

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        u = u.expand_as(v) if u.dim() == v.dim() else u
        return self.mlp(torch.cat([u, v, u * v], dim=-1)).squeeze(-1)


class MultiTaskNet(nn.Module):
    """Hybrid item tower + history encoder + MMoE/PLE/shared mixture + task heads.

    Args:
        cfg: Architecture config.
        n_items: Catalog size.
        text: (n_items, text_dim) item text embeddings or None.
        categories: (n_items, n_categories) multi-hot categories.
        rating_mean: Global mean rating, the rating head's offset.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        n_items: int,
        text: torch.Tensor | None,
        categories: torch.Tensor,
        rating_mean: float = 3.5,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_items = n_items
        self.n_categories = categories.shape[1]
        self.items = ItemTower(n_items, cfg.dim, text, categories, cfg.use_item_id)
        self.encoder = UserEncoder(
            cfg.dim,
            cfg.max_history,
            NUM_EVENT_TYPES,
            cfg.encoder,
            cfg.layers,
            cfg.heads,
            cfg.dropout,
            cfg.set_dropout,
        )
        self.mixture = TaskMixture(
            cfg.dim, TASKS, cfg.mixture, cfg.experts, cfg.task_experts, cfg.dropout
        )
        self.interest_tower = nn.Linear(cfg.dim, cfg.dim)
        self.like_head = _PairHead(cfg.dim, cfg.dropout)
        self.rating_head = _PairHead(cfg.dim, cfg.dropout)
        self.category_head = nn.Linear(cfg.dim, max(self.n_categories, 1))
        self.register_buffer("rating_mean", torch.tensor(float(rating_mean)))
        # Added to the engagement logit of every item already in the history. Learned: on a
        # catalog people do not revisit (ml-100k) it becomes strongly negative, on one they do
        # it can be positive. It changes nothing where evaluation masks the history.
        self.seen_bias = nn.Parameter(torch.zeros(())) if cfg.seen_bias else None
        # Not trained: filled from the training rows after training (``train_multitask``).
        self.neighbours = ItemNeighbours(n_items, cfg.neighbours) if cfg.neighbours else None

    def encode(
        self,
        items: torch.Tensor,
        events: torch.Tensor,
        ratings: torch.Tensor,
        earlier: Bag | None = None,
    ) -> tuple[UserState, torch.Tensor]:
        """Encode left-padded histories at every position.

        Args:
            items: (B, L) int64 item ids, pad = n_items.
            events: (B, L) int64 event codes, pad = NUM_EVENT_TYPES.
            ratings: (B, L) int64 rating buckets in [0, RATING_BUCKETS).
            earlier: Each row's interactions before its window, read by the whole-history
                channel (ignored when ``whole_history`` is off).

        Returns:
            The per-position ``UserState`` (each field (B, L, ...)) and the (B, L) valid mask.
        """
        valid = items != self.n_items
        early = None
        if earlier is not None and self.cfg.whole_history and len(earlier.items):
            x = self.encoder.set_inputs(self.items(earlier.items), rating_bucket(earlier.values))
            keep = torch.ones(len(x), 1, device=x.device, dtype=x.dtype)
            if self.training and self.cfg.set_dropout > 0:
                keep = (torch.rand(len(x), 1, device=x.device) >= self.cfg.set_dropout).to(x.dtype)
            # Per-row sums as differences of one running sum (deterministic, unlike a
            # scatter-add over threads).
            run = torch.cumsum(torch.cat([torch.zeros_like(x[:1]), x * keep]), 0)
            runs = torch.cumsum(torch.cat([torch.zeros_like(keep[:1]), keep]), 0)[:, 0]
            lo, hi = earlier.offsets[:-1], earlier.offsets[1:]
            early = (run[hi] - run[lo], runs[hi] - runs[lo])
        h = self.encoder(self.items(items), events, ratings, valid, early)
        mixed = self.mixture(h)
        # The residual keeps the encoder's sequential signal in the interest vector.
        interest = h + self.interest_tower(mixed["engagement"])
        state = UserState(
            interest=interest,
            like=mixed["like"],
            rating=mixed["rating"],
            category_logits=self.category_head(mixed["category"]),
        )
        return state, valid

    def seen_logit_bias(self, seen: torch.Tensor | None, n_cols: int) -> torch.Tensor | None:
        """(B, n_cols) the seen-item bias for a (B, n_cols) logit matrix, or None.

        Args:
            seen: (B, S) column index of each seen item; ``n_cols`` or more = none.
            n_cols: Columns of the logit matrix.
        """
        if self.seen_bias is None or seen is None:
            return None
        hit = torch.zeros(seen.shape[0], n_cols + 1, device=seen.device)
        hit.scatter_(1, seen.clamp(max=n_cols), 1.0)
        return hit[:, :n_cols] * self.seen_bias

    def like_logit(self, state_like: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
        return self.like_head(state_like, item_vectors)

    def rating(self, state_rating: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
        return self.rating_mean + self.rating_head(state_rating, item_vectors)


def rating_bucket(values: torch.Tensor) -> torch.Tensor:
    """Rating buckets from float ratings (NaN -> 0, else round and clip to 1..10)."""
    b = torch.nan_to_num(values, nan=0.0).round().clamp(0, RATING_BUCKETS - 1)
    return b.long()
