"""What every request needs to know about the catalog, computed once per loaded dataset."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from agent.llm.sanitize import looks_like_injection
from agent.schema import Filters
from mtrec.data.history import History
from mtrec.data.schema import Dataset, Item
from retrieval import ItemFilter

#: Titles shorter than this are too common as words ("Heat", "Up") to be looked for in text.
_MIN_TITLE_CHARS = 6


class TitleIndex:
    """Finds catalog titles mentioned in free text (for the grounding check)."""

    def __init__(self, items: Iterable[Item]) -> None:
        self.by_title: dict[str, set[str]] = {}
        for it in items:
            t = it.title.strip().lower()
            if len(t) >= _MIN_TITLE_CHARS:
                self.by_title.setdefault(t, set()).add(it.item_id)
        # Longest first, so "aliens" is matched (and removed) before "alien".
        self.titles = sorted(self.by_title, key=len, reverse=True)

    def mentioned(self, text: str, allowed_titles: Iterable[str] = ()) -> set[str]:
        """Titles in ``text`` other than ``allowed_titles`` (whose mentions are removed first)."""
        low = text.lower()
        for t in sorted({a.lower() for a in allowed_titles}, key=len, reverse=True):
            if t:
                low = low.replace(t, " ")
        found = set()
        for t in self.titles:
            if t in low and re.search(r"(?<![\w])" + re.escape(t) + r"(?![\w])", low):
                found.add(t)
                low = low.replace(t, " ")
        return found


@dataclass(frozen=True)
class Catalog:
    """A dataset's catalog as arrays over dense item ids.

    Attributes:
        ds: The dataset.
        categories: (n_items, n_categories) bool, column j = ``ds.categories[j]``.
        years: (n_items,) release years, 0 where unknown.
        popularity: (n_items,) interactions per item in the dataset.
        suspicious: (n_items,) bool: the item's title or text reads like an instruction to an
            LLM; such items keep their model rank whatever an LLM says.
        titles: Finds catalog titles named in free text (the grounding check).
    """

    ds: Dataset
    categories: np.ndarray
    years: np.ndarray
    popularity: np.ndarray
    suspicious: np.ndarray
    titles: TitleIndex

    @classmethod
    def build(cls, ds: Dataset) -> Catalog:
        return cls(
            ds=ds,
            categories=ds.category_matrix().astype(bool),
            years=np.array([it.year or 0 for it in ds.items]),
            popularity=np.bincount(ds.item_idx, minlength=ds.n_items),
            suspicious=np.array(
                [looks_like_injection(it.title, it.text) for it in ds.items], dtype=bool
            ),
            titles=TitleIndex(ds.items),
        )

    def allowed(self, filters: Filters | None, exclude: Iterable[str] = ()) -> np.ndarray:
        """(n_items,) bool: items that pass the filters and are not excluded by id.

        Raises:
            ValueError: a category the catalog does not have (the message lists the known ones).
            KeyError: an unknown item id in ``exclude``.
        """
        ok = np.ones(self.ds.n_items, dtype=bool)
        ok[[self.ds.item_index(i) for i in exclude]] = False
        if filters is None or filters.is_empty():
            return ok
        if filters.categories:
            ok &= self.categories[:, self.category_columns(filters.categories)].any(axis=1)
        if filters.exclude_categories:
            ok &= ~self.categories[:, self.category_columns(filters.exclude_categories)].any(axis=1)
        if filters.year_min is not None:
            ok &= self.years >= filters.year_min
        if filters.year_max is not None:
            ok &= (self.years <= filters.year_max) & (self.years > 0)
        return ok

    @staticmethod
    def item_filter(filters: Filters | None) -> ItemFilter | None:
        """The request's filters in the item index's terms (None: no restriction)."""
        if filters is None or filters.is_empty():
            return None
        return ItemFilter(
            tuple(filters.categories),
            tuple(filters.exclude_categories),
            filters.year_min,
            filters.year_max,
        )

    def category_columns(self, names: Iterable[str]) -> list[int]:
        """Columns of ``categories`` for category names (case-insensitive).

        Raises:
            ValueError: an unknown category.
        """
        index = {c.lower(): j for j, c in enumerate(self.ds.categories)}
        names = list(names)
        unknown = [n for n in names if n.lower() not in index]
        if unknown:
            raise ValueError(f"unknown categories {unknown}; known: {self.ds.categories}")
        return [index[n.lower()] for n in names]

    def user_category_counts(self, hist: History) -> np.ndarray | None:
        """(n_categories,) how many history items fall in each category (None: no history)."""
        return self.categories[hist.items].sum(axis=0) if len(hist) else None

    def shared_categories(self, item: int, user_counts: np.ndarray | None) -> list[str]:
        """The item's categories that are among the user's three most frequent ones."""
        if user_counts is None:
            return []
        top3 = np.argsort(-user_counts, kind="stable")[:3]
        top = {int(j) for j in top3 if user_counts[j] > 0}
        return [self.ds.categories[j] for j in np.flatnonzero(self.categories[item]) if j in top]
