"""What every request needs to know about the catalog, computed once per loaded dataset."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from agent.llm.sanitize import looks_like_injection
from agent.schema import Filters
from mtrec.data.history import History
from mtrec.data.profile import DomainProfile
from mtrec.data.schema import Dataset, EventType, Item
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
        numbers: Per numeric attribute of the profile, (n_items,) float values (NaN: unknown).
        values: Per exact attribute of the profile, each item's value ("" when unknown).
        works: (n_items,) the work each item is an edition of: items with the same title and
            the same first exact attribute (an author; else year) share one (book catalogs list
            editions of one book under several ids).
    """

    ds: Dataset
    categories: np.ndarray
    years: np.ndarray
    popularity: np.ndarray
    suspicious: np.ndarray
    titles: TitleIndex
    numbers: dict[str, np.ndarray]
    values: dict[str, list[str]]
    works: np.ndarray

    @classmethod
    def build(cls, ds: Dataset) -> Catalog:
        years = np.array([it.year or 0 for it in ds.items])
        numbers: dict[str, np.ndarray] = {}
        values: dict[str, list[str]] = {}
        for spec in ds.profile.attributes:
            if spec.kind == "range":
                numbers[spec.name] = (
                    np.where(years > 0, years, np.nan).astype(np.float64)
                    if spec.name == "year"
                    else np.array([_number(it.attributes.get(spec.name)) for it in ds.items])
                )
            else:
                values[spec.name] = [str(it.attributes.get(spec.name, "")) for it in ds.items]
        return cls(
            ds=ds,
            categories=ds.category_matrix().astype(bool),
            years=years,
            popularity=np.bincount(ds.item_idx, minlength=ds.n_items),
            suspicious=np.array(
                [looks_like_injection(it.title, it.text) for it in ds.items], dtype=bool
            ),
            titles=TitleIndex(ds.items),
            numbers=numbers,
            values=values,
            works=_works(ds, next(iter(values.values()), None)),
        )

    @property
    def profile(self) -> DomainProfile:
        return self.ds.profile

    def allowed(self, filters: Filters | None, exclude: Iterable[str] = ()) -> np.ndarray:
        """(n_items,) bool: items that pass the filters and are not excluded by id.

        Raises:
            ValueError: a category or attribute the catalog does not have, a filter of the
                wrong kind for its attribute, or a value no item has (the message says what
                there is instead).
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
        for name, bounds in filters.all_ranges().items():
            x = self._numbers(name)
            if bounds.min is not None:
                ok &= x >= bounds.min  # NaN (unknown) never passes a bound
            if bounds.max is not None:
                ok &= x <= bounds.max
        for name, wanted in filters.values.items():
            if wanted:
                ok &= self.value_mask(name, wanted)
        for name, unwanted in filters.exclude_values.items():
            if unwanted:
                ok &= ~self.value_mask(name, unwanted)
        return ok

    def _numbers(self, name: str) -> np.ndarray:
        spec = self.profile.attribute(name)
        if spec is None or spec.kind != "range":
            raise ValueError(self._unknown_attribute(name, "range"))
        return self.numbers[spec.name]

    def value_mask(self, name: str, wanted: Iterable[str]) -> np.ndarray:
        """(n_items,) bool: the items whose exact attribute ``name`` is any of ``wanted``
        (case-insensitive).

        Raises:
            ValueError: not an exact attribute, or a value no item has.
        """
        spec = self.profile.attribute(name)
        if spec is None or spec.kind != "exact":
            raise ValueError(self._unknown_attribute(name, "exact"))
        have = [v.strip().lower() for v in self.values[spec.name]]
        known = set(have)
        wanted = [w.strip().lower() for w in wanted]
        for w in wanted:
            if w not in known:
                close = difflib.get_close_matches(w, list(known), n=3)
                raw = {v.strip().lower(): v for v in self.values[spec.name]}
                hint = f"; did you mean {', '.join(repr(raw[c]) for c in close)}?" if close else ""
                raise ValueError(f"no {self.profile.item_noun} has {spec.display} {w!r}{hint}")
        return np.isin(np.array(have, dtype=object), wanted)

    def _unknown_attribute(self, name: str, kind: str) -> str:
        spec = self.profile.attribute(name)
        if spec is not None:
            how = "a range (min/max)" if spec.kind == "range" else "exact values"
            return f"{spec.name} is filtered by {how}, not by {kind}"
        return f"unknown attribute {name!r}; filterable: {self.profile.filterable()}"

    def same_work(self, items: np.ndarray) -> np.ndarray:
        """(n_items,) bool: other editions of ``items`` (the items themselves included)."""
        return np.isin(self.works, self.works[items])

    def details(self, item: int) -> dict[str, str]:
        """The item's exact attributes that have a value (author, publisher, brand, ...)."""
        return {name: values[item] for name, values in self.values.items() if values[item]}

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


def disliked(hist: History, ds: Dataset) -> np.ndarray:
    """(len(hist),) bool: dislike events, and ratings in the lower half of the scale."""
    profile = ds.profile
    low = 3.0
    if profile.rating_min is not None and profile.rating_max is not None:
        low = profile.rating_min + (profile.rating_max - profile.rating_min) / 2
    return (hist.events == EventType.DISLIKE.code) | (hist.values < low)  # NaN < x is False


def liked(hist: History, ds: Dataset) -> np.ndarray:
    """(len(hist),) bool: like events, and ratings at or above the profile's like threshold."""
    threshold = ds.profile.like_threshold
    rated = hist.values >= threshold if threshold is not None else np.zeros(len(hist), bool)
    return (hist.events == EventType.LIKE.code) | rated


class CoLikes:
    """Who liked what: counts of users who liked two items (from the dataset's events)."""

    def __init__(self, ds: Dataset) -> None:
        hist = History(ds.item_idx, ds.event, ds.value)
        ok = liked(hist, ds) | ((ds.event != EventType.DISLIKE.code) & np.isnan(ds.value))
        rows = ds.item_idx[ok]
        cols = ds.user_idx[ok]
        m = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, cols)), shape=(ds.n_items, ds.n_users)
        )
        m.data[:] = 1.0  # repeated events count once
        self.matrix = m
        self.likers = np.asarray(m.sum(axis=1)).ravel()

    def best(
        self,
        items: np.ndarray,
        anchors: np.ndarray,
        allowed: Sequence[Collection[int]] | None = None,
    ) -> list[tuple[int, int] | None]:
        """For each of ``items``, the anchor most tied to it and how many people liked both
        (None when no one did); one sparse product for all of them.

        The anchor is chosen by cosine (co-likes over the root of both items' likers), so a
        blockbuster that everyone liked does not become everybody's reason.

        Args:
            items: (N,) dense item ids.
            anchors: (A,) dense ids of the items that may be named (what the user liked).
            allowed: Per item, the anchors it may name (None: any of ``anchors``).
        """
        if len(anchors) == 0:
            return [None] * len(items)
        counts = (self.matrix[items] @ self.matrix[anchors].T).toarray()  # (items, anchors)
        if allowed is not None:
            ok = np.array([[int(a) in allowed[r] for a in anchors] for r in range(len(items))])
            counts = np.where(ok, counts, 0.0)
        norm = np.sqrt(np.outer(self.likers[items], self.likers[anchors])) + 1e-9
        out: list[tuple[int, int] | None] = []
        for row, cos in zip(counts, counts / norm, strict=True):
            j = int(np.argmax(cos))
            out.append((int(anchors[j]), int(row[j])) if row[j] > 0 else None)
        return out


def _works(ds: Dataset, first_values: list[str] | None) -> np.ndarray:
    """A work id per item: normalised title with the first exact attribute (an author), or with
    the year when the catalog has no exact attribute (films of one title are remakes)."""
    keys: dict[tuple[str, str], int] = {}
    out = np.empty(ds.n_items, np.int64)
    for i, it in enumerate(ds.items):
        by = first_values[i].strip().lower() if first_values else str(it.year)
        key = (" ".join(it.title.lower().split()), by)
        out[i] = keys.setdefault(key, len(keys))
    return out


def _number(value: object) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan
