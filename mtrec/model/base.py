"""The small interface every recommender model implements (in the spirit of ``implicit``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from mtrec.data.history import History


class BaseModel(ABC):
    """A model that scores the whole catalog for users given their histories.

    Subclasses implement ``score``; ``recommend`` and ``similar_items`` have default
    implementations on top of ``score`` and ``item_vectors``. Training is not part of the
    interface: the baselines fit themselves on training rows (``fit(ds, rows)``), and the
    multi-task model is trained by ``mtrec.training`` (the model never imports its trainer).
    """

    name: str = "base"
    n_items: int = 0

    @abstractmethod
    def score(self, users: np.ndarray, histories: Sequence[History]) -> np.ndarray:
        """Scores of every item for a batch of users.

        Args:
            users: (B,) dense user ids (-1 for a user the model has not seen).
            histories: B time-ordered histories.

        Returns:
            (B, n_items) float32 scores; higher is better. Seen items are not masked here.
        """

    def item_vectors(self) -> np.ndarray | None:
        """(n_items, d) item vectors for ``similar_items``; None when the model has none."""
        return None

    def recommend(
        self,
        history: History,
        k: int = 10,
        user: int = -1,
        exclude_seen: bool = True,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items for one user.

        Args:
            history: The user's history.
            k: List length, 1..n_items.
            user: Dense user id, or -1 for a history-only user.
            exclude_seen: Drop items in the history.
            allowed: Optional (n_items,) bool mask of items that may be recommended.

        Returns:
            ``(item_ids, scores)``, each (<= k,), best first.
        """
        check_k(k, self.n_items)
        scores = self.score(np.array([user]), [history])[0].astype(np.float64)
        if exclude_seen and len(history):
            scores[history.items] = -np.inf
        if allowed is not None:
            scores[~allowed] = -np.inf
        return top_k(scores, k)

    def similar_items(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Items nearest to ``item`` by cosine of item vectors (the item itself excluded)."""
        vectors = self.item_vectors()
        if vectors is None:
            raise NotImplementedError(f"{self.name} has no item vectors")
        check_k(k, self.n_items - 1)
        v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        sims = v @ v[item]
        sims[item] = -np.inf
        return top_k(sims, k)


def check_k(k: int, n: int) -> None:
    """Validate a list length: k must be a positive integer; k > n is capped by callers."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if n <= 0:
        raise ValueError("the catalog is empty")


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k best finite scores, best first (capped at what exists)."""
    finite = np.isfinite(scores)
    k = min(k, int(finite.sum()))
    if k == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    idx = np.argpartition(-np.where(finite, scores, -np.inf), k - 1)[:k]
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return idx.astype(np.int64), scores[idx]
