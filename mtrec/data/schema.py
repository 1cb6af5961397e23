"""The typed domain model: items, users, interactions, and the Dataset that holds them.

Records (``Item``, ``User``, ``Interaction``) are the boundary types; inside, a ``Dataset``
keeps interactions as columnar numpy arrays over dense integer ids, which is what the
model, the splits and the metrics consume.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from mtrec.data.profile import DomainProfile, infer_profile


class EventType(StrEnum):
    """Kinds of interaction events. The integer code is the position in this enum."""

    VIEW = "view"
    CLICK = "click"
    RATING = "rating"
    LIKE = "like"
    DISLIKE = "dislike"
    PURCHASE = "purchase"
    SEEN = "seen"

    @property
    def code(self) -> int:
        return _EVENT_CODES[self]

    @classmethod
    def from_code(cls, code: int) -> EventType:
        return _EVENTS[code]


_EVENTS = list(EventType)
_EVENT_CODES = {e: i for i, e in enumerate(_EVENTS)}
NUM_EVENT_TYPES = len(_EVENTS)


@dataclass(frozen=True)
class Item:
    """One catalog item.

    Attributes:
        item_id: External id, as in the source files.
        title: Display title.
        text: Free text (description, tags); may be empty.
        categories: Category names (genres), in source order.
        year: Release year, when known.
        attributes: Any other scalar attributes from the source.
    """

    item_id: str
    title: str
    text: str = ""
    categories: tuple[str, ...] = ()
    year: int | None = None
    attributes: dict[str, str | int | float] = field(default_factory=dict)

    def document(self, profile: DomainProfile | None = None) -> str:
        """The text that is embedded for this item: title, year, categories (named as the
        profile names them), exact-value attributes (author, brand, ...) and free text."""
        head = f"{self.title} ({self.year})" if self.year else self.title
        parts = [head]
        if self.categories:
            label = profile.categories if profile else "categories"
            parts.append(f"{label.capitalize()}: " + ", ".join(self.categories))
        for spec in profile.attributes if profile else ():
            value = self.attributes.get(spec.name)
            if spec.kind == "exact" and value not in (None, ""):
                parts.append(f"{spec.display.capitalize()}: {value}")
        if self.text:
            parts.append(self.text)
        return ". ".join(parts)


@dataclass(frozen=True)
class User:
    """One user with optional scalar attributes (age, gender, ...)."""

    user_id: str
    attributes: dict[str, str | int | float] = field(default_factory=dict)


@dataclass(frozen=True)
class Interaction:
    """One event of a user on an item. ``value`` is the rating for rating events."""

    user_id: str
    item_id: str
    event: EventType = EventType.RATING
    value: float | None = None
    timestamp: float = 0.0


@dataclass
class Dataset:
    """Items, users and interactions with dense id maps.

    Interaction columns are parallel arrays of length ``n_interactions``:
    ``user_idx`` and ``item_idx`` (int64 dense ids), ``event`` (int8 ``EventType`` codes),
    ``value`` (float32, NaN where there is none) and ``timestamp`` (float64 seconds).

    Attributes:
        name: A short name for reports ("ml-100k", a file stem, ...).
        items: Catalog items; ``items[i]`` has dense id ``i``.
        users: Users; ``users[u]`` has dense id ``u``.
        profile: What the items are called and how they can be filtered (inferred from the
            data when not given).
    """

    name: str
    items: list[Item]
    users: list[User]
    user_idx: np.ndarray
    item_idx: np.ndarray
    event: np.ndarray
    value: np.ndarray
    timestamp: np.ndarray
    profile: DomainProfile = field(default=None, repr=False)  # type: ignore[assignment]
    _item_index: dict[str, int] = field(init=False, repr=False)
    _user_index: dict[str, int] = field(init=False, repr=False)
    categories: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self._item_index = {it.item_id: i for i, it in enumerate(self.items)}
        self._user_index = {u.user_id: i for i, u in enumerate(self.users)}
        if len(self._item_index) != len(self.items):
            raise ValueError("duplicate item ids in Dataset.items")
        if len(self._user_index) != len(self.users):
            raise ValueError("duplicate user ids in Dataset.users")
        n = len(self.user_idx)
        for col in ("item_idx", "event", "value", "timestamp"):
            if len(getattr(self, col)) != n:
                raise ValueError(f"interaction column {col!r} has length != {n}")
        seen: dict[str, None] = {}
        for it in self.items:
            for c in it.categories:
                seen.setdefault(c, None)
        self.categories = list(seen)
        if self.profile is None:
            self.profile = infer_profile(self.items, self.value)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_records(
        cls,
        name: str,
        items: Iterable[Item],
        interactions: Iterable[Interaction],
        users: Iterable[User] = (),
        profile: DomainProfile | None = None,
    ) -> Dataset:
        """Build a dataset from records. Users that only appear in interactions are added.

        Raises:
            KeyError: an interaction names an item that is not in ``items``.
        """
        items = list(items)
        users = list(users)
        item_index = {it.item_id: i for i, it in enumerate(items)}
        user_index = {u.user_id: i for i, u in enumerate(users)}
        rows = list(interactions)
        u_idx = np.empty(len(rows), dtype=np.int64)
        i_idx = np.empty(len(rows), dtype=np.int64)
        ev = np.empty(len(rows), dtype=np.int8)
        val = np.full(len(rows), np.nan, dtype=np.float32)
        ts = np.empty(len(rows), dtype=np.float64)
        for r, x in enumerate(rows):
            if x.item_id not in item_index:
                raise KeyError(f"interaction {r} names unknown item {x.item_id!r}")
            if x.user_id not in user_index:
                user_index[x.user_id] = len(users)
                users.append(User(x.user_id))
            u_idx[r] = user_index[x.user_id]
            i_idx[r] = item_index[x.item_id]
            ev[r] = EventType(x.event).code
            if x.value is not None:
                val[r] = x.value
            ts[r] = x.timestamp
        return cls(name, items, users, u_idx, i_idx, ev, val, ts, profile)

    # ---- sizes and lookups ----------------------------------------------------------------
    @property
    def has_timestamps(self) -> bool:
        """Whether interactions carry times (a file without them gets 0 everywhere)."""
        return bool(np.any(self.timestamp > 0))

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_interactions(self) -> int:
        return len(self.user_idx)

    @property
    def item_ids(self) -> list[str]:
        return [it.item_id for it in self.items]

    def item_index(self, item_id: str) -> int:
        """Dense id of an external item id.

        Raises:
            KeyError: with a message naming the unknown id.
        """
        try:
            return self._item_index[str(item_id)]
        except KeyError:
            raise KeyError(f"unknown item id {item_id!r} in dataset {self.name!r}") from None

    def user_index(self, user_id: str) -> int:
        """Dense id of an external user id (raises ``KeyError`` naming it when unknown)."""
        try:
            return self._user_index[str(user_id)]
        except KeyError:
            raise KeyError(f"unknown user id {user_id!r} in dataset {self.name!r}") from None

    def has_item(self, item_id: str) -> bool:
        return str(item_id) in self._item_index

    def has_user(self, user_id: str) -> bool:
        return str(user_id) in self._user_index

    def item(self, item_id: str) -> Item:
        return self.items[self.item_index(item_id)]

    def category_matrix(self) -> np.ndarray:
        """Multi-hot item categories, shape (n_items, n_categories), float32."""
        cat_index = {c: j for j, c in enumerate(self.categories)}
        m = np.zeros((self.n_items, len(self.categories)), dtype=np.float32)
        for i, it in enumerate(self.items):
            for c in it.categories:
                m[i, cat_index[c]] = 1.0
        return m

    def user_history(self, user: int) -> np.ndarray:
        """Row indices of one user's interactions in time order (stable on ties)."""
        rows = np.flatnonzero(self.user_idx == user)
        return rows[np.argsort(self.timestamp[rows], kind="stable")]

    def with_interactions(self, rows: Iterable[Interaction]) -> tuple[Dataset, np.ndarray]:
        """A dataset with extra interactions appended (new users are added; items must exist).

        Returns:
            The new dataset and the row indices of the appended interactions.

        Raises:
            KeyError: an interaction names an item that is not in the catalog.
        """
        users = list(self.users)
        user_index = dict(self._user_index)
        extra = list(rows)
        u = np.empty(len(extra), np.int64)
        i = np.empty(len(extra), np.int64)
        ev = np.empty(len(extra), np.int8)
        val = np.full(len(extra), np.nan, np.float32)
        ts = np.empty(len(extra), np.float64)
        for r, x in enumerate(extra):
            if x.user_id not in user_index:
                user_index[x.user_id] = len(users)
                users.append(User(x.user_id))
            u[r], i[r] = user_index[x.user_id], self.item_index(x.item_id)
            ev[r], ts[r] = EventType(x.event).code, x.timestamp
            if x.value is not None:
                val[r] = x.value
        merged = Dataset(
            self.name,
            self.items,
            users,
            np.concatenate([self.user_idx, u]),
            np.concatenate([self.item_idx, i]),
            np.concatenate([self.event, ev]),
            np.concatenate([self.value, val]),
            np.concatenate([self.timestamp, ts]),
            self.profile,
        )
        return merged, np.arange(self.n_interactions, merged.n_interactions)

    def summary(self) -> dict[str, int | str]:
        return {
            "name": self.name,
            "items": self.n_items,
            "users": self.n_users,
            "interactions": self.n_interactions,
            "categories": len(self.categories),
        }

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"Dataset({s['name']!r}, items={s['items']}, users={s['users']}, "
            f"interactions={s['interactions']})"
        )
