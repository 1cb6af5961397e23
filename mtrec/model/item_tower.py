"""Item tower: a hybrid of collaborative (id) and content (text, categories) signals."""

from __future__ import annotations

import torch
from torch import nn


class ItemTower(nn.Module):
    """Maps dense item ids to vectors ``v = E_id[i] + W_text t_i + W_cat c_i``.

    The content terms let an item with text but no interactions get a useful vector.
    Row ``n_items`` is the padding item (all zeros in every input).

    Args:
        n_items: Catalog size.
        dim: Output width.
        text: (n_items, text_dim) item text embeddings, or None for no content.
        categories: (n_items, n_categories) multi-hot item categories, or None.
        use_item_id: Whether to learn an id embedding.
    """

    def __init__(
        self,
        n_items: int,
        dim: int,
        text: torch.Tensor | None = None,
        categories: torch.Tensor | None = None,
        use_item_id: bool = True,
    ) -> None:
        super().__init__()
        self.n_items = n_items
        self.id_embedding = (
            nn.Embedding(n_items + 1, dim, padding_idx=n_items) if use_item_id else None
        )
        if self.id_embedding is not None:
            nn.init.normal_(self.id_embedding.weight, std=0.05)
            with torch.no_grad():
                self.id_embedding.weight[n_items].zero_()
        self.text_proj: nn.Linear | None = None
        if text is not None:
            self.register_buffer("text", _with_pad_row(text))
            self.text_proj = nn.Linear(text.shape[1], dim, bias=False)
        # A learned per-item bias on the engagement logit: popularity is learned in a few steps
        # instead of being squeezed into the dot product.
        self.bias = nn.Embedding(n_items + 1, 1)
        nn.init.zeros_(self.bias.weight)
        self.cat_proj: nn.Linear | None = None
        if categories is not None and categories.shape[1] > 0:
            self.register_buffer("categories", _with_pad_row(categories))
            self.cat_proj = nn.Linear(categories.shape[1], dim, bias=False)
        self.frozen: torch.Tensor | None = None

    def freeze(self) -> None:
        """Inference only: precompute every item's vector and drop the content buffers.

        The text buffer (n_items x text_dim floats: 154 MB for 100k items and MiniLM) is the
        largest tensor of a serving process and is not needed once the (n_items + 1, dim)
        vector table exists. The projections stay, so ``content_vector`` still works.
        """
        with torch.no_grad():
            table = self.forward(torch.arange(self.n_items + 1, device=self._device()))
        self.frozen = table.detach()
        for name in ("text", "categories"):
            self._buffers.pop(name, None)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """Vectors of items. ``items`` is any int64 shape; returns shape + (dim,)."""
        if self.frozen is not None:
            return self.frozen[items]
        out = 0
        if self.id_embedding is not None:
            out = self.id_embedding(items)
        if self.text_proj is not None:
            out = out + self.text_proj(self.text[items])
        if self.cat_proj is not None:
            out = out + self.cat_proj(self.categories[items])
        return out

    def all_vectors(self) -> torch.Tensor:
        """(n_items, dim) vectors of the whole catalog (padding row excluded)."""
        idx = torch.arange(self.n_items, device=self._device())
        return self.forward(idx)

    def all_biases(self) -> torch.Tensor:
        """(n_items,) engagement logit biases."""
        return self.bias.weight[: self.n_items, 0]

    def content_vector(self, text: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        """Vector of an item outside the catalog from its content only.

        Args:
            text: (..., text_dim) text embedding.
            categories: (..., n_categories) multi-hot.
        """
        out = 0
        if self.text_proj is not None:
            out = out + self.text_proj(text)
        if self.cat_proj is not None:
            out = out + self.cat_proj(categories)
        return out

    def _device(self) -> torch.device:
        return next(self.parameters()).device


def _with_pad_row(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x.float(), torch.zeros(1, x.shape[1])], dim=0)
