"""The vectorised ``make_windows`` gives exactly what the original per-interaction loop gave."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch

from mtrec.data import generate_synthetic
from mtrec.data.history import History, user_histories
from mtrec.data.schema import NUM_EVENT_TYPES, EventType
from mtrec.model.batching import PaddedHistories, TrainingWindows, make_windows

_LIKE, _DISLIKE = EventType.LIKE.code, EventType.DISLIKE.code


def reference_make_windows(
    histories: Sequence[History],
    length: int,
    window: int,
    pad_item: int,
    like_threshold: float,
    stride: int | None = None,
) -> TrainingWindows:
    """The original implementation (a Python loop over every interaction), kept as the oracle."""
    stride = stride or max(1, length // 2)
    spans: list[tuple[int, int, int]] = []  # (user, start, end)
    for u, h in enumerate(histories):
        n = len(h)
        end = n
        while end > 1:
            spans.append((u, max(0, end - length), end))
            if end - length <= 0:
                break
            end -= stride
    count = len(spans)
    items = np.full((count, length), pad_item, np.int64)
    events = np.full((count, length), NUM_EVENT_TYPES, np.int64)
    values = np.full((count, length), np.nan, np.float32)
    targets = np.full((count, length, window), -1, np.int64)
    next_value = np.full((count, length), np.nan, np.float32)
    next_like = np.full((count, length), np.nan, np.float32)
    for s, (u, start, end) in enumerate(spans):
        h = histories[u]
        n = end - start
        off = length - n
        items[s, off:] = h.items[start:end]
        events[s, off:] = h.events[start:end]
        values[s, off:] = h.values[start:end]
        for p in range(start, end):
            fut = h.items[p + 1 : p + 1 + window]
            if len(fut) == 0:
                continue
            col = off + p - start
            targets[s, col, : len(fut)] = fut
            v, e = h.values[p + 1], h.events[p + 1]
            next_value[s, col] = v
            if not np.isnan(v):
                next_like[s, col] = float(v >= like_threshold)
            elif e == _LIKE:
                next_like[s, col] = 1.0
            elif e == _DISLIKE:
                next_like[s, col] = 0.0
    return TrainingWindows(
        PaddedHistories(
            torch.from_numpy(items), torch.from_numpy(events), torch.from_numpy(values)
        ),
        torch.from_numpy(targets),
        torch.from_numpy(next_value),
        torch.from_numpy(next_like),
    )


def _histories() -> list[History]:
    ds = generate_synthetic(n_items=120, n_users=60, n_interactions=2_500, seed=3)
    hist = user_histories(ds)
    rng = np.random.default_rng(0)
    # Add like/dislike events without ratings, and edge cases: empty, 1, 2 and 3 items.
    out = []
    for h in hist:
        events = h.events.copy()
        values = h.values.copy()
        flip = rng.random(len(h)) < 0.2
        events[flip] = rng.choice([_LIKE, _DISLIKE], flip.sum())
        values[flip] = np.nan
        out.append(History(h.items, events, values))
    out += [
        History(np.empty(0, np.int64), np.empty(0, np.int8), np.empty(0, np.float32)),
        History.from_items([5]),
        History.from_items([5, 6], [4.0, None]),
        History.from_items([7, 8, 9], [None, 2.0, 5.0]),
    ]
    rng.shuffle(out)  # type: ignore[arg-type]
    return out


def _assert_same(a: TrainingWindows, b: TrainingWindows) -> None:
    for x, y in [
        (a.inputs.items, b.inputs.items),
        (a.inputs.events, b.inputs.events),
        (a.inputs.values, b.inputs.values),
        (a.targets, b.targets),
        (a.next_value, b.next_value),
        (a.next_like, b.next_like),
    ]:
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x.numpy(), y.numpy())  # NaN == NaN here


@pytest.mark.parametrize(
    ("length", "window", "stride"),
    [(50, 8, None), (10, 3, None), (7, 1, 2), (30, 32, None), (4, 5, 1), (1, 2, None)],
)
def test_vectorised_windows_equal_the_reference(length: int, window: int, stride: int | None):
    hist = _histories()
    pad = 120
    got = make_windows(hist, length, window, pad, 4.0, stride)
    want = reference_make_windows(hist, length, window, pad, 4.0, stride)
    assert len(got) == len(want) > 0
    _assert_same(got, want)


def test_no_histories_and_only_short_ones():
    for hist in ([], [History.from_items([3])]):
        got = make_windows(hist, 6, 2, 10, 4.0)
        want = reference_make_windows(hist, 6, 2, 10, 4.0)
        assert len(got) == len(want) == 0
        _assert_same(got, want)
