"""Baselines evaluated by the same code as the multi-task model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mtrec.data.history import History
from mtrec.data.schema import Dataset
from mtrec.model.base import BaseModel


class PopularityModel(BaseModel):
    """Scores items by how many training interactions they have."""

    name = "Pop"

    def fit(self, ds: Dataset, rows: np.ndarray, **kwargs: object) -> PopularityModel:
        self.n_items = ds.n_items
        self.counts = np.bincount(ds.item_idx[rows], minlength=ds.n_items).astype(np.float32)
        return self

    def score(self, users: np.ndarray, histories: Sequence[History]) -> np.ndarray:
        return np.tile(self.counts, (len(histories), 1))


class ItemKNNModel(BaseModel):
    """Item-based collaborative filtering: cosine similarity of item columns, top-k pruned.

    Args:
        k: Neighbours kept per item.
        shrink: Similarity shrinkage (RecBole's default is 0).
    """

    name = "ItemKNN"

    def __init__(self, k: int = 100, shrink: float = 0.0) -> None:
        self.k = k
        self.shrink = shrink

    def fit(self, ds: Dataset, rows: np.ndarray, **kwargs: object) -> ItemKNNModel:
        self.n_items = ds.n_items
        x = np.zeros((ds.n_users, ds.n_items), np.float32)
        x[ds.user_idx[rows], ds.item_idx[rows]] = 1.0
        norms = np.sqrt(x.sum(axis=0))
        sim = (x.T @ x) / (np.outer(norms, norms) + self.shrink + 1e-9)
        np.fill_diagonal(sim, 0.0)
        if self.k < ds.n_items:
            # As RecBole's ItemKNN: each item (a column) keeps its k most similar items, so
            # item j's score sums sim(h, j) over the history items h among j's neighbours.
            cut = np.argpartition(-sim, self.k, axis=0)[self.k :, :]
            np.put_along_axis(sim, cut, 0.0, axis=0)
        self.sim = sim.astype(np.float32)
        return self

    def score(self, users: np.ndarray, histories: Sequence[History]) -> np.ndarray:
        out = np.zeros((len(histories), self.n_items), np.float32)
        for b, h in enumerate(histories):
            if len(h):
                out[b] = self.sim[np.unique(h.items)].sum(axis=0)
        return out

    def item_vectors(self) -> np.ndarray:
        return self.sim


class BPRModel(BaseModel):
    """Matrix factorisation trained with the BPR pairwise loss (uniform negatives).

    A user unseen in training is folded in as the mean of its history's item factors.
    """

    name = "BPR"

    def __init__(
        self,
        dim: int = 64,
        epochs: int = 60,
        lr: float = 1e-3,
        batch_size: int = 2048,
        reg: float = 0.0,
        seed: int = 2020,
    ) -> None:
        self.dim, self.epochs, self.lr, self.batch_size, self.reg, self.seed = (
            dim,
            epochs,
            lr,
            batch_size,
            reg,
            seed,
        )

    def fit(self, ds: Dataset, rows: np.ndarray, **kwargs: object) -> BPRModel:
        g = torch.Generator().manual_seed(self.seed)
        self.n_items = ds.n_items
        users = torch.as_tensor(ds.user_idx[rows])
        items = torch.as_tensor(ds.item_idx[rows])
        user_emb = torch.nn.Embedding(ds.n_users, self.dim)
        item_emb = torch.nn.Embedding(ds.n_items, self.dim)
        for e in (user_emb, item_emb):
            torch.nn.init.xavier_normal_(e.weight, generator=g)
        opt = torch.optim.Adam([user_emb.weight, item_emb.weight], lr=self.lr)
        for _ in range(self.epochs):
            perm = torch.randperm(len(rows), generator=g)
            for start in range(0, len(rows), self.batch_size):
                b = perm[start : start + self.batch_size]
                u, i = users[b], items[b]
                j = torch.randint(0, ds.n_items, (len(b),), generator=g)
                ue, ie, je = user_emb(u), item_emb(i), item_emb(j)
                diff = (ue * ie).sum(-1) - (ue * je).sum(-1)
                loss = -torch.nn.functional.logsigmoid(diff).mean()
                if self.reg:
                    loss = loss + self.reg * (ue.pow(2).sum() + ie.pow(2).sum()) / len(b)
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.user_factors = user_emb.weight.detach().numpy()
        self.item_factors = item_emb.weight.detach().numpy()
        return self

    def score(self, users: np.ndarray, histories: Sequence[History]) -> np.ndarray:
        u = np.stack(
            [
                self.user_factors[uid]
                if uid >= 0
                else self.item_factors[h.items].mean(axis=0)
                if len(h)
                else np.zeros(self.dim, np.float32)
                for uid, h in zip(users, histories, strict=True)
            ]
        )
        return u @ self.item_factors.T

    def item_vectors(self) -> np.ndarray:
        return self.item_factors


class ContentModel(BaseModel):
    """Content only: cosine between each item's text embedding and the history's centroid.

    Args:
        text: (n_items, d) normalised item text embeddings (from the retrieval layer).
        recent: Use only the most recent ``recent`` history items (0 = all).
    """

    name = "Content"

    def __init__(self, text: np.ndarray, recent: int = 0) -> None:
        self.text = text / np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
        self.recent = recent

    def fit(self, ds: Dataset, rows: np.ndarray, **kwargs: object) -> ContentModel:
        if self.text.shape[0] != ds.n_items:
            raise ValueError(f"text has {self.text.shape[0]} rows for {ds.n_items} items")
        self.n_items = ds.n_items
        return self

    def score(self, users: np.ndarray, histories: Sequence[History]) -> np.ndarray:
        out = np.zeros((len(histories), self.n_items), np.float32)
        for b, h in enumerate(histories):
            items = h.items[-self.recent :] if self.recent else h.items
            if len(items):
                out[b] = self.text @ self.text[items].mean(axis=0)
        return out

    def item_vectors(self) -> np.ndarray:
        return self.text


class LastItemKNNModel(ItemKNNModel):
    """The recency floor: ItemKNN similarity to the user's single most recent history item.

    Training-free beyond ItemKNN's co-occurrence cosine (fitted on training rows only): item
    j scores ``sim[last, j]``, where ``last`` is the latest item of the history the evaluator
    passes (at test time under ``loo``, the validation item). A sequential model that does not
    clearly beat this rule has learned little beyond "more like the last thing".

    Args:
        shrink: Similarity shrinkage.
    """

    name = "LastItemKNN"

    def __init__(self, shrink: float = 0.0) -> None:
        # No neighbour cut: every item keeps its cosine to the last item (a top-k cut would
        # only turn low similarities into ties at 0).
        super().__init__(k=np.iinfo(np.int64).max, shrink=shrink)

    def score(self, users: np.ndarray, histories: Sequence[History]) -> np.ndarray:
        out = np.zeros((len(histories), self.n_items), np.float32)
        for b, h in enumerate(histories):
            if len(h):
                out[b] = self.sim[h.items[-1]]
        return out
