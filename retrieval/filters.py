"""Metadata filters for item search, compiled to Chroma ``where`` clauses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from retrieval.records import CATEGORIES_KEY, YEAR_KEY


@dataclass(frozen=True)
class ItemFilter:
    """Restricts search results by category and release year.

    All given conditions must hold. Items without a year never match a year bound; items without
    categories never match ``categories_any`` but always pass ``categories_none``.

    Attributes:
        categories_any: Keep items having at least one of these categories.
        categories_none: Drop items having any of these categories.
        year_min: Keep items released in or after this year.
        year_max: Keep items released in or before this year.
    """

    categories_any: tuple[str, ...] = ()
    categories_none: tuple[str, ...] = ()
    year_min: int | None = None
    year_max: int | None = None

    def __post_init__(self) -> None:
        # A bare string would otherwise be split into characters.
        for name in ("categories_any", "categories_none"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            object.__setattr__(self, name, tuple(value))
        if (
            self.year_min is not None
            and self.year_max is not None
            and self.year_min > self.year_max
        ):
            raise ValueError(
                f"year_min ({self.year_min}) is greater than year_max ({self.year_max})"
            )

    def is_empty(self) -> bool:
        """Whether the filter lets every item through."""
        return self.to_where() is None

    def to_where(self) -> dict[str, Any] | None:
        """Compile to a Chroma ``where`` clause.

        Returns:
            The clause, or ``None`` when no condition is set (Chroma rejects an empty dict, and
            ``$and``/``$or`` with a single operand, so those cases are unwrapped).
        """
        clauses: list[dict[str, Any]] = []
        if self.categories_any:
            anys = [{CATEGORIES_KEY: {"$contains": c}} for c in self.categories_any]
            clauses.append(anys[0] if len(anys) == 1 else {"$or": anys})
        clauses.extend({CATEGORIES_KEY: {"$not_contains": c}} for c in self.categories_none)
        if self.year_min is not None:
            clauses.append({YEAR_KEY: {"$gte": self.year_min}})
        if self.year_max is not None:
            clauses.append({YEAR_KEY: {"$lte": self.year_max}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def matches(self, metadata: Mapping[str, Any] | None) -> bool:
        """Evaluate the filter in Python on one item's stored metadata.

        Mirrors :meth:`to_where` exactly (the tests check both against real Chroma); used to
        post-filter unfiltered nearest neighbours, which is far cheaper than Chroma's
        metadata pre-filter when the filter is not selective.

        Args:
            metadata: Metadata dict as stored by ``ItemIndex`` (``None`` counts as empty).

        Returns:
            Whether Chroma's ``where`` clause would accept the item.
        """
        meta = metadata or {}
        raw = meta.get(CATEGORIES_KEY)
        cats = set(raw) if isinstance(raw, list | tuple) else set()
        if self.categories_any and not cats.intersection(self.categories_any):
            return False
        if cats.intersection(self.categories_none):
            return False
        year = meta.get(YEAR_KEY)
        if self.year_min is not None and (year is None or year < self.year_min):
            return False
        return not (self.year_max is not None and (year is None or year > self.year_max))
