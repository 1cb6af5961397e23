"""Plain data records exchanged with :class:`retrieval.item_index.ItemIndex`.

Only ids, scalars and tuples cross the package boundary, so callers (``mtrec``, ``agent``)
never depend on Chroma types.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

#: Scalar types Chroma accepts as metadata values.
MetadataValue = str | int | float | bool

#: Metadata keys ItemIndex manages itself; ``IndexItem.extra`` may not use them.
TITLE_KEY = "title"
CATEGORIES_KEY = "categories"
YEAR_KEY = "year"
HASH_KEY = "content_hash"
RESERVED_KEYS = frozenset({TITLE_KEY, CATEGORIES_KEY, YEAR_KEY, HASH_KEY})


@dataclass(frozen=True)
class IndexItem:
    """One catalog item to be indexed.

    Attributes:
        item_id: Unique, non-empty id (the same id the recommender uses).
        text: The text that gets embedded (e.g. ``"Heat (1995). Genres: Action, Crime"``).
        title: Display title, stored as metadata.
        categories: Genres/categories; filterable with :class:`retrieval.filters.ItemFilter`.
        year: Release year, filterable by range; ``None`` when unknown.
        extra: Additional scalar metadata stored verbatim (keys must not be reserved).
    """

    item_id: str
    text: str
    title: str = ""
    categories: tuple[str, ...] = ()
    year: int | None = None
    extra: dict[str, MetadataValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.item_id, str) or not self.item_id:
            raise ValueError(f"item_id must be a non-empty string, got {self.item_id!r}")
        if not isinstance(self.text, str):
            raise TypeError(f"text of item {self.item_id!r} must be a string")
        # Accept lists for convenience but store a tuple so the record stays immutable.
        object.__setattr__(self, "categories", tuple(self.categories))
        for cat in self.categories:
            if not isinstance(cat, str) or not cat:
                raise ValueError(f"categories of item {self.item_id!r} must be non-empty strings")
        if self.year is not None and (
            isinstance(self.year, bool) or not isinstance(self.year, int)
        ):
            raise TypeError(f"year of item {self.item_id!r} must be an int or None")
        for key, value in self.extra.items():
            if key in RESERVED_KEYS:
                raise ValueError(
                    f"extra key {key!r} of item {self.item_id!r} is reserved "
                    f"({', '.join(sorted(RESERVED_KEYS))})"
                )
            if not isinstance(value, MetadataValue):
                raise TypeError(
                    f"extra[{key!r}] of item {self.item_id!r} must be str/int/float/bool, "
                    f"got {type(value).__name__}"
                )

    def content_hash(self) -> str:
        """Fingerprint of everything that is stored for this item.

        Returns:
            Hex sha256 of text and metadata; equal hashes mean re-embedding can be skipped.
        """
        payload = json.dumps(
            [self.text, self.title, list(self.categories), self.year, self.extra],
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def to_metadata(self, content_hash: str | None = None) -> dict[str, Any]:
        """Chroma metadata for this item (including its content hash).

        Args:
            content_hash: The value of :meth:`content_hash` if already computed.
        """
        meta: dict[str, Any] = dict(self.extra)
        meta[TITLE_KEY] = self.title
        meta[HASH_KEY] = content_hash or self.content_hash()
        # Chroma rejects empty arrays and None values, so absent fields are simply omitted;
        # ItemFilter's "none of" clause still matches items without categories.
        if self.categories:
            meta[CATEGORIES_KEY] = list(self.categories)
        if self.year is not None:
            meta[YEAR_KEY] = self.year
        return meta


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        item_id: Id of the matching item.
        score: Cosine similarity to the query in ``[-1, 1]``; higher is better.
        title: Stored title.
        categories: Stored categories.
        year: Stored year or ``None``.
        metadata: The item's ``extra`` metadata (managed keys removed).
    """

    item_id: str
    score: float
    title: str = ""
    categories: tuple[str, ...] = ()
    year: int | None = None
    metadata: dict[str, MetadataValue] = field(default_factory=dict)

    @classmethod
    def from_chroma(cls, item_id: str, distance: float, meta: dict[str, Any] | None) -> Hit:
        """Build a hit from a Chroma id, cosine distance and metadata dict."""
        meta = dict(meta or {})
        cats = meta.pop(CATEGORIES_KEY, None) or ()
        if isinstance(cats, str):  # tolerate collections written by other tools
            cats = tuple(c for c in cats.split("|") if c)
        year = meta.pop(YEAR_KEY, None)
        title = meta.pop(TITLE_KEY, "")
        meta.pop(HASH_KEY, None)
        return cls(
            item_id=item_id,
            # Chroma's cosine space reports distance = 1 - cos_sim.
            score=1.0 - float(distance),
            title=str(title),
            categories=tuple(cats),
            year=int(year) if year is not None else None,
            metadata=meta,
        )


@dataclass(frozen=True)
class SyncReport:
    """What :meth:`ItemIndex.sync` did.

    Attributes:
        added: Items that were new and got embedded.
        updated: Items whose content hash changed and got re-embedded.
        unchanged: Items skipped because their hash matched.
        deleted: Items removed because they were no longer in the catalog.
        seconds: Wall-clock duration of the sync.
    """

    added: int
    updated: int
    unchanged: int
    deleted: int
    seconds: float

    @property
    def embedded(self) -> int:
        """Number of items that went through the embedding model."""
        return self.added + self.updated

    def __str__(self) -> str:
        return (
            f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.deleted} deleted in {self.seconds:.2f}s"
        )
