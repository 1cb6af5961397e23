"""The history a request runs on: the dataset's events, stored feedback and raw entries."""

from __future__ import annotations

from collections.abc import Sequence

from agent.schema import HistoryEntry
from mtrec.data.history import History
from mtrec.data.schema import Dataset, EventType


def history_from_entries(ds: Dataset, entries: Sequence[HistoryEntry | str | int]) -> History:
    """A history from item ids (oldest first), each with an optional rating or event.

    An entry without an event is a ``rating`` when it has a rating, else a ``view``.

    Raises:
        KeyError: an item id is not in the catalog (named in the message).
    """
    items, values, events = [], [], []
    for e in entries:
        entry = e if isinstance(e, HistoryEntry) else HistoryEntry(item_id=str(e))
        items.append(ds.item_index(entry.item_id))
        values.append(entry.rating)
        events.append(entry.event or (EventType.RATING if entry.rating is not None else "view"))
    return History.from_items(items, values, [EventType(e) for e in events])


def join_histories(*parts: History | None) -> History | None:
    """The parts that exist, concatenated in order (None when none does)."""
    present = [p for p in parts if p is not None]
    if not present:
        return None
    out = present[0]
    for p in present[1:]:
        if len(p):
            out = out.extend(p)
    return out
