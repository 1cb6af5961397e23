"""Stage 1: the candidates of a request (model top-N, query matches, popular items)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.pipeline.catalog import Catalog
from agent.schema import Filters
from mtrec.data.history import History
from mtrec.model.base import top_k

#: A user with fewer interactions than this gets popular items among the candidates.
COLD_START_HISTORY = 5


@dataclass(frozen=True)
class Candidates:
    """Candidate items in the order they were found, and where each came from.

    Attributes:
        items: (n,) dense item ids, each once.
        sources: ``sources[i]`` lists ``model``, ``query`` and/or ``popular`` for item ``i``.
    """

    items: np.ndarray
    sources: dict[int, tuple[str, ...]]

    def __len__(self) -> int:
        return len(self.items)


def gather_candidates(
    logits: np.ndarray,
    eligible: np.ndarray,
    n: int,
    query_hits: Sequence[int] = (),
    popularity: np.ndarray | None = None,
    history_size: int = 0,
) -> Candidates:
    """The model's top ``n`` eligible items, then query matches, then (for short histories)
    the ``n // 2`` most popular eligible items.

    Args:
        logits: (n_items,) the user's engagement logits.
        eligible: (n_items,) bool: not seen, not excluded, passing the filters.
        n: Candidates wanted from the model (and from the query search).
        query_hits: Dense ids of items matching the request's text, best first.
        popularity: (n_items,) interaction counts, for cold-start backfill.
        history_size: Length of the user's history (cold start below ``COLD_START_HISTORY``).
    """
    sources: dict[int, list[str]] = {}
    if eligible.any():
        items, _ = top_k(np.where(eligible, logits.astype(np.float64), -np.inf), n)
        for i in items:
            sources.setdefault(int(i), []).append("model")
    for i in query_hits:
        if eligible[i]:
            sources.setdefault(int(i), []).append("query")
    if popularity is not None and history_size < COLD_START_HISTORY:
        pop = np.where(eligible, popularity, -1)
        for i in np.argsort(-pop, kind="stable")[: n // 2]:
            if pop[i] >= 0:
                sources.setdefault(int(i), []).append("popular")
    return Candidates(
        np.fromiter(sources, np.int64, len(sources)),
        {i: tuple(s) for i, s in sources.items()},
    )


def query_matches(
    index: Any,
    vector: np.ndarray,
    n: int,
    catalog: Catalog,
    filters: Filters | None,
    eligible: np.ndarray,
) -> list[int]:
    """Dense ids of the ``n`` items whose text is nearest to a query's vector, best first.

    Args:
        index: The item index (``retrieval.ItemIndex``).
        vector: (d,) the query's embedding (``index.embed_text``).
        n: Hits wanted.
        catalog: The catalog (filters and ids).
        filters: The request's filters (applied inside the index).
        eligible: (n_items,) bool; ineligible items are excluded in the index when few enough
            to send (Chroma takes the list per query), else dropped afterwards.
    """
    seen = np.flatnonzero(~eligible)
    exclude = [catalog.ds.items[i].item_id for i in seen] if len(seen) < 5000 else ()
    hits = index.search_vector(vector, n, catalog.item_filter(filters), exclude_ids=exclude)
    return [catalog.ds.item_index(h.item_id) for h in hits]


def find_candidates(
    catalog: Catalog,
    logits: np.ndarray,
    hist: History,
    filters: Filters | None,
    exclude: Sequence[str],
    n: int,
    index: Any = None,
    query_vector: np.ndarray | None = None,
) -> Candidates:
    """A request's candidates: what the filters allow and the user has not seen, from the
    model's scores, the query's text matches (when there is a query) and popularity.

    Args:
        catalog: The catalog.
        logits: (n_items,) the user's engagement logits.
        hist: The request's history (its items are never candidates).
        filters: The request's filters.
        exclude: Item ids never to return.
        n: Candidates wanted from the model (and from the text search).
        index: The item index, for the text search.
        query_vector: The query's embedding (None: no text search).

    Raises:
        ValueError: a filter names something the catalog does not have.
        KeyError: an unknown item id in ``exclude``.
    """
    eligible = catalog.allowed(filters, exclude)
    eligible[hist.items] = False
    eligible &= ~catalog.same_work(hist.items)  # other editions of what the user has
    hits: list[int] = []
    if query_vector is not None:
        hits = query_matches(index, query_vector, n, catalog, filters, eligible)
    found = gather_candidates(logits, eligible, n, hits, catalog.popularity, len(hist))
    return one_per_work(found, catalog.works)


def one_per_work(candidates: Candidates, works: np.ndarray) -> Candidates:
    """The candidates with only the first edition of each work (a list that offers one book
    twice under two ids says less)."""
    _, first = np.unique(works[candidates.items], return_index=True)
    keep = candidates.items[np.sort(first)]
    if len(keep) == len(candidates.items):
        return candidates
    return Candidates(keep, {int(i): candidates.sources[int(i)] for i in keep})
