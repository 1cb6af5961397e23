"""What an explanation may say, measured on the model and the data.

* Counterfactual contributions: for each recommended item, the history items whose removal
  lowers its model score the most. Leave-one-out over the latest ``window`` distinct history
  items the user did not dislike, batched: one user-encoder pass per removed item, every
  candidate scored at once. "Because you liked X" is said only when removing X lowers the
  item's score (a cause in the model's terms, not mere similarity).
* Co-likes (``catalog.CoLikes``): how many people who liked a history item also liked the
  recommended one (from the dataset's interactions).
* Shared attributes: the same author, brand or publisher as an item the user liked.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from agent.pipeline.catalog import Catalog, disliked
from agent.pipeline.scoring import FusionWeights, ScoredCandidates, fused_model_score
from mtrec.data.history import History
from mtrec.data.schema import Dataset
from mtrec.model.multitask import MultiTaskModel

#: History items tried by the leave-one-out for a model-only answer (the latest distinct ones
#: not disliked): each costs one user-encoder pass (~0.5-1 ms on 2 CPU cores). A request to an
#: LLM tier measures every history item its prompt shows (``rerank.PROMPT_HISTORY``), so every
#: item the LLM can cite is measured.
EVIDENCE_WINDOW = 8
#: A removal must lower the score by at least this much (logit units) to be cited, unless it
#: also lowers the item's rank.
MIN_SCORE_DROP = 0.05


@dataclass(frozen=True)
class Contribution:
    """What one history item does for one recommended item.

    Attributes:
        item: Dense id of the history item.
        score_drop: The item's model score with the whole history minus without this one.
        rank_with: The item's rank among the request's candidates by model score.
        rank_without: Its rank there once the history item is removed.
    """

    item: int
    score_drop: float
    rank_with: int
    rank_without: int

    @property
    def real(self) -> bool:
        """Removing the history item measurably lowers the recommended one."""
        return self.score_drop > 0 and (
            self.rank_without > self.rank_with or self.score_drop >= MIN_SCORE_DROP
        )


def removal_window(hist: History, ds: Dataset, window: int = EVIDENCE_WINDOW) -> np.ndarray:
    """The latest ``window`` distinct history items the user did not dislike, latest first."""
    out: list[int] = []
    if window <= 0:
        return np.array(out, np.int64)
    bad = disliked(hist, ds)
    for item, is_bad in zip(hist.items[::-1], bad[::-1], strict=True):
        if not is_bad and int(item) not in out:
            out.append(int(item))
            if len(out) == window:
                break
    return np.array(out, np.int64)


def contributions(
    model: MultiTaskModel,
    hist: History,
    scored: ScoredCandidates,
    targets: list[int],
    removable: np.ndarray,
    weights: FusionWeights,
) -> dict[int, list[Contribution]]:
    """Leave-one-out contributions of ``removable`` history items to each target.

    Args:
        model: The model.
        hist: The request's history.
        scored: The request's candidates with their model scores (the full history).
        targets: Dense ids of the items to explain (among the candidates).
        removable: Dense ids of the history items to try removing (``removal_window``).
        weights: The task-head fusion of the model score.

    Returns:
        For each target, its contributions, largest score drop first.
    """
    if len(removable) == 0 or not targets:
        return {t: [] for t in targets}
    without = [_drop(hist, int(i)) for i in removable]  # B histories
    state = model.user_state(without)
    cands = np.tile(scored.items, (len(without), 1))
    fused = fused_model_score(model.task_scores_batch(state, cands), weights)  # (B, n)
    pos = scored.position()
    out: dict[int, list[Contribution]] = {}
    for t in targets:
        j = pos[t]
        rank_with = 1 + int((scored.fused > scored.fused[j]).sum())
        drops = scored.fused[j] - fused[:, j]
        ranks = 1 + (fused > fused[:, j : j + 1]).sum(axis=1)
        found = [
            Contribution(int(removable[b]), float(drops[b]), rank_with, int(ranks[b]))
            for b in np.argsort(-drops, kind="stable")
        ]
        out[t] = found
    return out


def _drop(hist: History, item: int) -> History:
    keep = hist.items != item
    return History(hist.items[keep], hist.events[keep], hist.values[keep])


def shared_attributes(
    catalog: Catalog,
    items: Sequence[int],
    liked_items: np.ndarray,
    allowed: Sequence[Collection[int]] | None = None,
) -> dict[int, tuple[str, str, int]]:
    """For each item that shares an exact attribute value (author, brand, ...) with an item
    the user liked: ``(attribute, value, that history item)`` (the last such item in
    ``liked_items``). ``allowed`` limits, per item, which liked items it may name."""
    out: dict[int, tuple[str, str, int]] = {}
    for name, values in catalog.values.items():
        for n, item in enumerate(items):
            value = values[item].strip().lower()
            if item in out or not value:
                continue
            named = [
                int(h)
                for h in liked_items
                if values[int(h)].strip().lower() == value
                and (allowed is None or int(h) in allowed[n])
            ]
            if named:
                out[item] = (name, values[item].strip(), named[-1])
    return out
