"""A user's time-ordered history: the input of every model's ``score``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtrec.data.schema import Dataset, EventType


@dataclass(frozen=True)
class History:
    """Parallel arrays of one user's interactions, oldest first.

    Attributes:
        items: (n,) int64 dense item ids.
        events: (n,) int8 ``EventType`` codes.
        values: (n,) float32 ratings, NaN where none.
    """

    items: np.ndarray
    events: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def from_items(
        cls,
        items: list[int] | np.ndarray,
        values: list[float | None] | np.ndarray | None = None,
        events: list[EventType] | None = None,
    ) -> History:
        """A history from item ids (oldest first), with optional ratings and event types."""
        items = np.asarray(items, dtype=np.int64)
        if values is None:
            vals = np.full(len(items), np.nan, np.float32)
        else:
            vals = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
        if events is None:
            ev = np.where(np.isnan(vals), EventType.VIEW.code, EventType.RATING.code)
        else:
            ev = np.array([EventType(e).code for e in events])
        return cls(items, ev.astype(np.int8), vals)

    def extend(self, other: History) -> History:
        return History(
            np.concatenate([self.items, other.items]),
            np.concatenate([self.events, other.events]),
            np.concatenate([self.values, other.values]),
        )


def user_histories(ds: Dataset, rows: np.ndarray | None = None) -> list[History]:
    """Per-user histories (index = dense user id) from the given interaction rows.

    Rows are ordered by timestamp, ties kept in row order (stable), so the same data
    always gives the same sequence.
    """
    rows = np.arange(ds.n_interactions) if rows is None else np.asarray(rows, np.int64)
    order = rows[np.lexsort((ds.timestamp[rows], ds.user_idx[rows]))]
    bounds = np.searchsorted(ds.user_idx[order], np.arange(ds.n_users + 1))
    out = []
    for u in range(ds.n_users):
        r = order[bounds[u] : bounds[u + 1]]
        out.append(History(ds.item_idx[r], ds.event[r], ds.value[r]))
    return out
