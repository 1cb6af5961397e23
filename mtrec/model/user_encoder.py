"""User encoders over a left-padded, time-ordered history of item vectors."""

from __future__ import annotations

import torch
from torch import nn

#: Rating buckets fed to the encoder: 0 = no rating, 1..10 = rounded rating.
RATING_BUCKETS = 11


class _Block(nn.Module):
    """Pre-norm causal self-attention block."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        a, _ = self.attn(h, h, h, attn_mask=blocked, need_weights=False)
        x = x + self.drop(a)
        return x + self.drop(self.ff(self.ln2(x)))


class UserEncoder(nn.Module):
    """Encodes each prefix of a history into a user state.

    Inputs at each position are the item vector plus learned embeddings of the event type,
    the rating bucket and the position (counted from the most recent interaction).

    Args:
        dim: Width.
        max_history: Sequence length L.
        n_events: Number of event types.
        kind: ``attention`` (causal self-attention) or ``gru``.
        layers: Number of layers.
        heads: Attention heads.
        dropout: Dropout.
    """

    def __init__(
        self,
        dim: int,
        max_history: int,
        n_events: int,
        kind: str = "attention",
        layers: int = 2,
        heads: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.heads = heads
        self.event_embedding = nn.Embedding(n_events + 1, dim)
        self.rating_embedding = nn.Embedding(RATING_BUCKETS, dim)
        self.position_embedding = nn.Embedding(max_history, dim)
        self.input_norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        if kind == "attention":
            self.blocks = nn.ModuleList(_Block(dim, heads, dropout) for _ in range(layers))
            self.gru = None
        elif kind == "gru":
            self.blocks = nn.ModuleList()
            self.gru = nn.GRU(
                dim,
                dim,
                num_layers=layers,
                batch_first=True,
                dropout=dropout if layers > 1 else 0.0,
            )
        else:
            raise ValueError(f"unknown encoder {kind!r}; use 'attention' or 'gru'")
        # The set channel: a causal running mean of the history's item vectors. It carries the
        # user's overall taste directly, which the sequence channel then refines with order.
        self.pool_proj = nn.Linear(dim, dim)
        self.out_norm = nn.LayerNorm(dim)

    def forward(
        self,
        item_vectors: torch.Tensor,
        events: torch.Tensor,
        ratings: torch.Tensor,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """Encode every prefix.

        Args:
            item_vectors: (B, L, dim) vectors of the history items, left-padded.
            events: (B, L) int64 event codes (pad = n_events).
            ratings: (B, L) int64 rating buckets (0 = none).
            valid: (B, L) bool, False on padding.

        Returns:
            (B, L, dim): state after each position; position L-1 is the latest.
        """
        length = item_vectors.shape[1]
        # Position 0 = most recent, so a short history uses the same embeddings as a long one.
        pos = torch.arange(length - 1, -1, -1, device=item_vectors.device)
        x = item_vectors + self.event_embedding(events) + self.rating_embedding(ratings)
        x = self.drop(self.input_norm(x + self.position_embedding(pos)[None]))
        x = x * valid[..., None]
        mask = valid[..., None].to(item_vectors.dtype)
        running_mean = (item_vectors * mask).cumsum(1) / mask.cumsum(1).clamp(min=1.0)
        pooled = self.pool_proj(running_mean)
        if self.gru is not None:
            out, _ = self.gru(x)
            return self.out_norm(out + pooled)
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        allowed = causal[None] & valid[:, None, :]
        # A padded query position has no valid key; let every position see itself so the
        # softmax is defined (their outputs are never used).
        allowed = allowed | torch.eye(length, dtype=torch.bool, device=x.device)[None]
        blocked = (~allowed).repeat_interleave(self.heads, dim=0)
        for block in self.blocks:
            x = block(x, blocked)
        return self.out_norm(x + pooled)
