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
        set_dropout: Share of interactions the whole-history channel drops while training
            (denoising, as Mult-DAE).
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
        set_dropout: float = 0.0,
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
        # The whole-history (set) channel: an MLP over the causal running mean of every
        # interaction so far (item vector + rating embedding), including the ones before the
        # sequence window. It carries the user's overall taste, which the sequence channel
        # refines with order; it is what a random held-out split (set completion) asks for.
        self.set_dropout = set_dropout
        self.set_rating = nn.Embedding(RATING_BUCKETS, dim)
        self.set_mlp = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
        )
        self.out_norm = nn.LayerNorm(dim)

    def set_inputs(self, item_vectors: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        """What one interaction adds to the whole-history channel: (..., dim)."""
        return item_vectors + self.set_rating(ratings)

    def forward(
        self,
        item_vectors: torch.Tensor,
        events: torch.Tensor,
        ratings: torch.Tensor,
        valid: torch.Tensor,
        earlier: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Encode every prefix.

        Args:
            item_vectors: (B, L, dim) vectors of the history items, left-padded.
            events: (B, L) int64 event codes (pad = n_events).
            ratings: (B, L) int64 rating buckets (0 = none).
            valid: (B, L) bool, False on padding.
            earlier: ``(sum, count)``: (B, dim) sum of ``set_inputs`` over the interactions
                before the window and (B,) their number; None when there are none.

        Returns:
            (B, L, dim): state after each position; position L-1 is the latest.
        """
        length = item_vectors.shape[1]
        # Position 0 = most recent, so a short history uses the same embeddings as a long one.
        pos = torch.arange(length - 1, -1, -1, device=item_vectors.device)
        x = item_vectors + self.event_embedding(events) + self.rating_embedding(ratings)
        x = self.drop(self.input_norm(x + self.position_embedding(pos)[None]))
        x = x * valid[..., None]
        keep = valid
        if self.training and self.set_dropout > 0:
            keep = keep & (torch.rand(valid.shape, device=valid.device) >= self.set_dropout)
        mask = keep[..., None].to(item_vectors.dtype)
        total = (self.set_inputs(item_vectors, ratings) * mask).cumsum(1)
        count = mask.cumsum(1)
        if earlier is not None:
            total = total + earlier[0][:, None, :]
            count = count + earlier[1][:, None, None].to(count.dtype)
        pooled = self.set_mlp(total / count.clamp(min=1.0))
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
