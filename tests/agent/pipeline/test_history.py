"""Histories: raw entries and joins."""

from __future__ import annotations

import numpy as np
import pytest

from agent.pipeline.history import history_from_entries, join_histories
from agent.schema import Feedback, HistoryEntry
from mtrec.data.history import History
from mtrec.data.schema import EventType


def test_entries_become_a_history_with_ratings_and_events(tiny) -> None:
    h = history_from_entries(
        tiny, ["3", HistoryEntry(item_id="5", rating=4), HistoryEntry(item_id="7", event="like")]
    )
    assert h.items.tolist() == [3, 5, 7]
    assert [EventType.from_code(int(e)) for e in h.events] == [
        EventType.VIEW,
        EventType.RATING,
        EventType.LIKE,
    ]
    assert np.isnan(h.values[0]) and h.values[1] == 4


def test_an_unknown_item_is_named(tiny) -> None:
    with pytest.raises(KeyError, match="nope"):
        history_from_entries(tiny, ["3", "nope"])


def test_join_keeps_order_and_skips_missing_parts() -> None:
    a, b = History.from_items([1, 2]), History.from_items([3])
    assert join_histories(a, None, b).items.tolist() == [1, 2, 3]
    assert join_histories(None, None) is None


def test_feedback_events_carry_one_rating_each() -> None:
    assert Feedback.LIKE.rating == 5.0 and Feedback.DISLIKE.rating == 1.0
    assert Feedback.SEEN.rating is None and Feedback.SEEN.event == EventType.SEEN
    with pytest.raises(ValueError, match="event must be one of like, dislike, seen"):
        Feedback.parse("meh")
