"""The multi-task recommender: the network plus its catalog, behind ``BaseModel``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mtrec.config import MTRecConfig
from mtrec.data.history import History
from mtrec.data.schema import Dataset, EventType
from mtrec.model.base import BaseModel, check_k
from mtrec.model.batching import pad_histories
from mtrec.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mtrec.model.network import MultiTaskNet, UserState, rating_bucket

_DISLIKE = EventType.DISLIKE.code


@dataclass
class TaskScores:
    """Per-task scores of candidate items: shapes (n,) for one user, (B, n) for a batch.

    Attributes:
        items: dense item ids, as given.
        engagement: probability of the item under the softmax over the whole catalog.
        engagement_logit: the raw score (``MultiTaskModel.engagement_logits``).
        like: probability that the user likes the item.
        rating: expected rating.
    """

    items: np.ndarray
    engagement: np.ndarray
    engagement_logit: np.ndarray
    like: np.ndarray
    rating: np.ndarray


class MultiTaskModel(BaseModel):
    """MMoE multi-task model over user histories.

    Build with ``MultiTaskModel.create`` (new) or ``MultiTaskModel.load`` (checkpoint); train
    with ``mtrec.training.train_multitask``.

    Args:
        config: Full configuration.
        net: The network.
        item_ids: External item ids by dense id.
        user_ids: External user ids by dense id (users seen in training).
        categories: Category names, the columns of category-interest outputs.
    """

    name = "MTRec"

    def __init__(
        self,
        config: MTRecConfig,
        net: MultiTaskNet,
        item_ids: list[str],
        user_ids: list[str],
        categories: list[str],
    ) -> None:
        self.config = config
        self.net = net.eval()
        self.item_ids = item_ids
        self.user_ids = user_ids
        self.categories = categories
        self.n_items = len(item_ids)
        self.metrics: dict[str, object] = {}
        self._vectors: torch.Tensor | None = None

    @classmethod
    def create(
        cls, ds: Dataset, config: MTRecConfig, text: np.ndarray | None = None
    ) -> MultiTaskModel:
        """A fresh, untrained model for a dataset's catalog.

        Args:
            ds: The dataset (for the catalog, categories and rating scale).
            config: Configuration; ``config.model.text_dim`` is set from ``text``.
            text: (n_items, text_dim) item text embeddings, rows in dense id order, or None.
        """
        torch.manual_seed(config.train.seed)
        if text is not None and text.shape[0] != ds.n_items:
            raise ValueError(f"text embeddings have {text.shape[0]} rows for {ds.n_items} items")
        config = config.model_copy(deep=True)
        config.model.text_dim = 0 if text is None else int(text.shape[1])
        # The rating head's offset stays a neutral 3.5 here: ``train_multitask`` sets it to the
        # mean of the training rows (a mean over all rows would carry test ratings).
        net = MultiTaskNet(
            config.model,
            ds.n_items,
            None if text is None else torch.as_tensor(text, dtype=torch.float32),
            torch.as_tensor(ds.category_matrix()),
        )
        return cls(config, net, ds.item_ids, [u.user_id for u in ds.users], ds.categories)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> MultiTaskModel:
        """Load the latest checkpoint under ``path``."""
        ck = load_checkpoint(path)
        text_dim = ck.config.model.text_dim
        n_items = len(ck.item_ids)
        net = MultiTaskNet(
            ck.config.model,
            n_items,
            torch.zeros(n_items, text_dim) if text_dim else None,
            torch.zeros(n_items, len(ck.categories)),
        )
        try:
            net.load_state_dict(ck.state)
        except RuntimeError as e:
            raise CheckpointError(
                f"checkpoint {ck.path} does not match this version of the model "
                f"({str(e).splitlines()[0]}); run `mtrec train` again"
            ) from None
        model = cls(ck.config, net.to(device), ck.item_ids, ck.user_ids, ck.categories)
        model.metrics = ck.metrics
        return model

    def freeze(self) -> MultiTaskModel:
        """Serve only: precompute item vectors and free the item content buffers (the text
        embeddings are the largest tensor of a serving process). A frozen model scores exactly
        as before but can no longer be trained or saved."""
        self.net.items.freeze()
        self._vectors = None
        return self

    @property
    def frozen(self) -> bool:
        return self.net.items.frozen is not None

    def save(self, path: str | Path, metrics: dict[str, object] | None = None) -> Path:
        """Write an atomic checkpoint under ``path``.

        Raises:
            RuntimeError: the model was frozen for serving (its content buffers are gone).
        """
        if self.frozen:
            raise RuntimeError("a frozen (serving) model cannot be saved; load the checkpoint")
        if metrics is not None:
            self.metrics = metrics
        return save_checkpoint(
            path,
            self.net.state_dict(),
            self.config,
            self.item_ids,
            self.user_ids,
            self.categories,
            dict(self.metrics),
        )

    # ---- BaseModel ------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.inference_mode()
    def user_state(self, histories: Sequence[History]) -> UserState:
        """Users' states after their whole histories; every field is (B, ...).

        The sequence encoder reads the last ``max_history`` interactions; the whole-history
        channel reads all of them.
        """
        p = pad_histories(histories, self.config.model.max_history, self.n_items).to(self.device)
        state, _ = self.net.encode(p.items, p.events, rating_bucket(p.values), p.earlier)
        width = max((len(h) for h in histories), default=0)
        seen = np.full((len(histories), max(width, 1)), self.n_items, np.int64)
        for r, h in enumerate(histories):
            seen[r, : len(h)] = h.items
        neighbour_seen = None
        if any((h.events == _DISLIKE).any() for h in histories):
            neighbour_seen = np.full_like(seen, self.n_items)
            for r, h in enumerate(histories):
                kept = h.items[h.events != _DISLIKE]
                neighbour_seen[r, : len(kept)] = kept
        return UserState(
            interest=state.interest[:, -1],
            like=state.like[:, -1],
            rating=state.rating[:, -1],
            category_logits=state.category_logits[:, -1],
            seen=torch.as_tensor(seen, device=self.device),
            neighbour_seen=(
                None
                if neighbour_seen is None
                else torch.as_tensor(neighbour_seen, device=self.device)
            ),
        )

    @torch.inference_mode()
    def item_vectors_tensor(self) -> torch.Tensor:
        """(n_items, dim) item vectors (cached: the model is frozen at inference)."""
        if self._vectors is None or self.net.training:
            self._vectors = self.net.items.all_vectors()
        return self._vectors

    def invalidate_cache(self) -> None:
        self._vectors = None

    @property
    def has_neighbours(self) -> bool:
        """Whether the item-neighbour memory exists and has been filled."""
        return self.net.neighbours is not None and self.net.neighbours.fitted

    def fit_neighbours(self, ds: Dataset, rows: np.ndarray, k: int | None = None) -> None:
        """Fill the item-neighbour memory from interaction rows of ``ds`` (pass the
        training rows only).

        Args:
            ds: The dataset the rows index.
            rows: Row indices (or a boolean mask over the rows).
            k: Replace the memory with one of ``k`` neighbours per item (0 drops it;
                ``config.model.neighbours`` follows, so a saved checkpoint rebuilds the same
                shape). None refits the present memory (a no-op for a model without one).
                The neighbour weight ``config.fusion.neighbour`` is not re-chosen: run
                ``mtrec.selection.select_fusion`` for that.
        """
        if k is not None and k < 0:
            raise ValueError(f"neighbours per item must be >= 0, got {k}")
        if k is not None:
            from mtrec.model.neighbours import ItemNeighbours

            self.net.neighbours = ItemNeighbours(self.n_items, k).to(self.device) if k else None
            self.config.model.neighbours = k
        if self.net.neighbours is None:
            return
        rows = np.asarray(rows)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        self.net.neighbours.fit(ds.user_idx[rows], ds.item_idx[rows], ds.n_users)

    @torch.inference_mode()
    def network_logits(self, state: UserState) -> torch.Tensor:
        """(B, n_items) the network's engagement logits ``u . v_item + b_item``."""
        return state.interest @ self.item_vectors_tensor().T + self.net.items.all_biases()

    @torch.inference_mode()
    def neighbour_logits(
        self, state: UserState, network: torch.Tensor, decay: float | None = None
    ) -> torch.Tensor:
        """(B, n_items) the item-neighbour score in logit units: standardised per user over
        the catalog, times the spread (sd) of that user's ``network`` logits, so that its
        weight means the same for every user whatever the length of the history. History
        items count ``decay ** age`` (``config.fusion.neighbour_decay`` unless given; see
        ``ItemNeighbours.scores``). Zero without a fitted memory or histories."""
        if state.seen is None or not self.has_neighbours:
            return torch.zeros_like(network)
        decay = self.config.fusion.neighbour_decay if decay is None else decay
        seen = state.seen if state.neighbour_seen is None else state.neighbour_seen
        n = self.net.neighbours.scores(seen, decay)  # type: ignore[union-attr]
        z = (n - n.mean(1, keepdim=True)) / (n.std(1, keepdim=True) + 1e-9)
        return z * network.std(1, keepdim=True)

    @torch.inference_mode()
    def engagement_logits(
        self, state: UserState, neighbour: float | None = None, decay: float | None = None
    ) -> torch.Tensor:
        """(B, n_items) engagement logits of users' states: the network's, plus ``neighbour``
        times ``neighbour_logits`` (``config.fusion.neighbour`` and ``neighbour_decay``
        unless given), plus the learned seen-item bias on the items of each user's
        history."""
        weight = self.config.fusion.neighbour if neighbour is None else neighbour
        logits = self.network_logits(state)
        if weight:
            logits = logits + weight * self.neighbour_logits(state, logits, decay)
        seen = self.net.seen_logit_bias(state.seen, self.n_items)
        return logits if seen is None else logits + seen

    @torch.inference_mode()
    def fused_logits(
        self,
        state: UserState,
        like: float | None = None,
        rating: float | None = None,
        chunk: int = 4096,
    ) -> torch.Tensor:
        """(B, n_items) ``engagement logit + like * like logit + rating * (rating - 3)`` over
        the whole catalog (``config.fusion``'s weights unless given; both 0 = engagement)."""
        like = self.config.fusion.like if like is None else like
        rating = self.config.fusion.rating if rating is None else rating
        out = self.engagement_logits(state)
        if not like and not rating:
            return out
        like_logit, predicted = self.head_scores(state, chunk)
        return out + like * like_logit + rating * (predicted - 3.0)

    @torch.inference_mode()
    def head_scores(self, state: UserState, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """``(like_logit, rating)``, each (B, n_items): the like and rating heads on every item."""
        vectors = self.item_vectors_tensor()
        b, n = state.like.shape[0], self.n_items
        like = torch.empty(b, n, device=self.device)
        rating = torch.empty(b, n, device=self.device)
        for start in range(0, n, chunk):
            v = vectors[start : start + chunk][None].expand(b, -1, -1)
            like[:, start : start + chunk] = self.net.like_logit(
                state.like[:, None, :].expand(-1, v.shape[1], -1), v
            )
            rating[:, start : start + chunk] = self.net.rating(
                state.rating[:, None, :].expand(-1, v.shape[1], -1), v
            )
        return like, rating

    @torch.inference_mode()
    def score(self, users: np.ndarray, histories: Sequence[History]) -> np.ndarray:
        return self.engagement_logits(self.user_state(histories)).float().cpu().numpy()

    def item_vectors(self) -> np.ndarray:
        return self.item_vectors_tensor().cpu().numpy()

    # ---- the inference API used by the agent ----------------------------------------------
    # Each method takes a history or the ``UserState`` of one user (from ``user_state``): a
    # caller that needs several outputs for one request runs the user encoder once.
    def _state(self, user: History | UserState) -> UserState:
        return user if isinstance(user, UserState) else self.user_state([user])

    def interest_vector(self, user: History | UserState) -> np.ndarray:
        """(dim,) the user interest vector u (engagement logits are ``u . v_item + b_item``)."""
        return self._state(user).interest[0].cpu().numpy()

    def category_interest(self, user: History | UserState) -> np.ndarray:
        """(n_categories,) predicted category-interest distribution (sums to 1)."""
        logits = self._state(user).category_logits[0]
        return torch.softmax(logits, dim=-1).cpu().numpy()

    @torch.inference_mode()
    def task_scores(
        self,
        user: History | UserState,
        items: np.ndarray,
        logits: torch.Tensor | None = None,
    ) -> TaskScores:
        """Per-task scores of the given candidate items for one user.

        Args:
            user: The user's history, or its one-row ``UserState``.
            items: (n,) dense item ids.
            logits: (1, n_items) the user's ``engagement_logits``, when already computed.

        Raises:
            ValueError: an item id outside ``[0, n_items)``.
        """
        items = np.asarray(items, np.int64)
        state = self._state(user)
        if logits is None:
            logits = self.engagement_logits(state)
        ts = self.task_scores_batch(state, items[None, :], logits)
        return TaskScores(
            items=items,
            engagement=ts.engagement[0],
            engagement_logit=ts.engagement_logit[0],
            like=ts.like[0],
            rating=ts.rating[0],
        )

    @torch.inference_mode()
    def task_scores_batch(
        self, state: UserState, items: np.ndarray, logits: torch.Tensor | None = None
    ) -> TaskScores:
        """Per-task scores of each user's own candidates.

        Args:
            state: ``UserState`` of B users.
            items: (B, n) dense item ids, row b for user b.
            logits: (B, n_items) their ``engagement_logits``, when already computed.

        Returns:
            ``TaskScores`` whose arrays are (B, n).

        Raises:
            ValueError: an item id outside ``[0, n_items)``.
        """
        items = np.asarray(items, np.int64)
        if items.size and (items.min() < 0 or items.max() >= self.n_items):
            raise ValueError(f"candidate ids must be in [0, {self.n_items})")
        if logits is None:
            logits = self.engagement_logits(state)
        idx = torch.as_tensor(items, device=self.device)
        picked = torch.gather(logits, 1, idx)
        # p(item | user) over the whole catalog: the log-normaliser of every item's logit.
        probs = torch.exp(picked - torch.logsumexp(logits, dim=1, keepdim=True))
        v = self.item_vectors_tensor()[idx]  # (B, n, d)
        like = torch.sigmoid(self.net.like_logit(state.like[:, None, :].expand_as(v), v))
        rating = self.net.rating(state.rating[:, None, :].expand_as(v), v)
        return TaskScores(
            items=items,
            engagement=probs.cpu().numpy(),
            engagement_logit=picked.cpu().numpy(),
            like=like.cpu().numpy(),
            rating=rating.cpu().numpy(),
        )

    def recommend_batch(
        self, histories: Sequence[History], k: int = 10, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k for many users at once: ``(items, scores)``, each (B, k)."""
        check_k(k, self.n_items)
        k = min(k, self.n_items)
        scores = torch.as_tensor(self.score(np.full(len(histories), -1), histories))
        if exclude_seen:
            for r, h in enumerate(histories):
                if len(h):
                    scores[r, torch.as_tensor(h.items)] = -torch.inf
        vals, idx = torch.topk(scores, k, dim=1)
        return idx.numpy(), vals.numpy()


__all__ = ["MultiTaskModel", "TaskScores"]
