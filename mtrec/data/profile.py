"""The domain profile: what a catalog's items are called and how they can be filtered.

Every place that speaks to a person or an LLM (prompts, template explanations, chat replies,
reports, the web page) reads its words from the profile instead of assuming films: a book
catalog says "book", "author" and "published", a shop "product" and "brand".

A profile is inferred from the data (``infer_profile``): the item noun from the title column's
name (``movie_title`` -> movie, ``book_title`` -> book), the rating scale from the ratings,
filterable attributes from the item table (numbers become ranges, short repeated strings exact
values). A dataset manifest (``dataset.toml``), ``mtrec index`` flags and the workspace's
``mtrec.toml`` override any field (``DomainProfile.merged``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The title column a catalog was read from, to the noun of its items.
TITLE_COLUMN_NOUNS = {
    "movie_title": "movie",
    "film_title": "film",
    "book_title": "book",
    "product_title": "product",
    "product_name": "product",
    "course_title": "course",
    "article_title": "article",
    "song_title": "song",
}
#: Attribute names that hold a price (a currency symbol in chat means this attribute).
PRICE_NAMES = ("price", "cost", "amount")
#: A string attribute is an exact-value filter when its values are this short on average.
MAX_EXACT_VALUE_CHARS = 60


class AttributeSpec(BaseModel):
    """One filterable item attribute.

    Attributes:
        name: The attribute (``year``, ``price``, ``author``, ...).
        kind: ``range`` (numbers: minimum and maximum) or ``exact`` (values: any of).
        label: How a person names it ("publication year", "page count"); the name when unset.
        unit: A unit shown after numbers ("pages", "$"), if any.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["range", "exact"]
    label: str | None = None
    unit: str | None = None

    @property
    def display(self) -> str:
        return self.label or self.name.replace("_", " ")


class DomainProfile(BaseModel):
    """The words and filters of one catalog.

    Attributes:
        item_noun: What one item is ("movie", "book", "product"); "item" when unknown.
        item_plural: Its plural (default: ``item_noun`` + "s").
        category_noun: What the item categories are called ("genre", "subject",
            "department"); "category" when unknown.
        category_plural: Its plural (default: regular English plural).
        attributes: The filterable attributes beside the categories.
        rating_min: Lowest rating on the scale (None: no ratings).
        rating_max: Highest rating on the scale (None: no ratings).
        like_threshold: A rating at or above this counts as liked (None: no ratings; then the
            like events count).
    """

    model_config = ConfigDict(extra="forbid")

    item_noun: str = "item"
    item_plural: str | None = None
    category_noun: str = "category"
    category_plural: str | None = None
    attributes: list[AttributeSpec] = Field(default_factory=list)
    rating_min: float | None = None
    rating_max: float | None = None
    like_threshold: float | None = None

    @field_validator("item_noun", "category_noun")
    @classmethod
    def _word(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("must not be empty")
        return v

    # ---- words -----------------------------------------------------------------------------
    @property
    def items(self) -> str:
        """The plural of the item noun ("movies", "books")."""
        return self.item_plural or _plural(self.item_noun)

    @property
    def categories(self) -> str:
        """The plural of the category noun ("genres", "categories")."""
        return self.category_plural or _plural(self.category_noun)

    def attribute(self, name: str) -> AttributeSpec | None:
        """The filterable attribute called ``name`` (case-insensitive), or None."""
        low = name.strip().lower()
        return next((a for a in self.attributes if a.name.lower() == low), None)

    def filterable(self) -> str:
        """The filterable attributes for an error message: ``"author (exact), year (range)"``."""
        return ", ".join(f"{a.name} ({a.kind})" for a in self.attributes) or "none"

    @property
    def rating_scale(self) -> str | None:
        """``"1–5"`` style, or None when the catalog has no ratings."""
        if self.rating_min is None or self.rating_max is None:
            return None
        return f"{_num(self.rating_min)}–{_num(self.rating_max)}"

    def merged(self, overrides: Mapping[str, Any] | None) -> DomainProfile:
        """This profile with the given fields replaced (a manifest, flags or ``mtrec.toml``).

        An ``attributes`` override replaces attributes by name and keeps the others.

        Raises:
            ValueError: an unknown field or a bad value (pydantic's message).
        """
        if not overrides:
            return self
        data = self.model_dump()
        extra = dict(overrides)
        if "attributes" in extra:
            given = [AttributeSpec.model_validate(a) for a in extra.pop("attributes")]
            names = {a.name for a in given}
            kept = [a for a in self.attributes if a.name not in names]
            data["attributes"] = [a.model_dump() for a in kept + given]
        data.update(extra)
        return DomainProfile.model_validate(data)


def _plural(noun: str) -> str:
    if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou"):
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def infer_profile(
    items: list[Any],
    ratings: np.ndarray,
    title_column: str | None = None,
    category_column: str | None = None,
) -> DomainProfile:
    """A profile read off a catalog.

    Args:
        items: The catalog's ``Item`` records (years and attributes are looked at).
        ratings: Every explicit rating (NaN where an event has none).
        title_column: The source column the titles came from (names the item noun).
        category_column: The source column the categories came from ("genres" names them).
    """
    noun = TITLE_COLUMN_NOUNS.get((title_column or "").strip().lower(), "item")
    category = "category"
    col = (category_column or "").strip().lower().rstrip("s")
    if col in ("genre", "subject", "department", "topic", "section", "tag"):
        category = col
    attributes: list[AttributeSpec] = []
    if any(it.year for it in items):
        attributes.append(AttributeSpec(name="year", kind="range"))
    attributes += _attribute_specs(items)
    values = ratings[np.isfinite(ratings)]
    lo = hi = like = None
    if len(values):
        lo, hi = float(np.floor(values.min())), float(np.ceil(values.max()))
        if hi > lo:
            # The top quarter of the scale: 4+ on 1-5, 8+ on 1-10.
            like = float(math.ceil(lo + 0.75 * (hi - lo) - 1e-9))
    return DomainProfile(
        item_noun=noun,
        category_noun=category,
        attributes=attributes,
        rating_min=lo,
        rating_max=hi,
        like_threshold=like,
    )


def _attribute_specs(items: list[Any]) -> list[AttributeSpec]:
    """Numeric attributes become ranges; short strings that repeat become exact values."""
    values: dict[str, list[Any]] = {}
    for it in items:
        for k, v in it.attributes.items():
            values.setdefault(k, []).append(v)
    out = []
    for name, vals in values.items():
        if name.lower() in ("year", "title", "text", "description") or len(vals) < 2:
            continue
        numbers = [_as_float(v) for v in vals]
        if sum(n is not None for n in numbers) >= 0.95 * len(vals):
            unit = "$" if name.lower() in PRICE_NAMES else None
            out.append(AttributeSpec(name=name, kind="range", unit=unit))
            continue
        texts = [str(v) for v in vals]
        repeated = sum(c for c in Counter(texts).values() if c > 1)
        short = sum(len(t) for t in texts) / len(texts) <= MAX_EXACT_VALUE_CHARS
        if short and repeated >= 0.2 * len(texts):
            out.append(AttributeSpec(name=name, kind="exact"))
    return out


def _as_float(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None
