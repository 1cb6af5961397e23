"""The vectorised ``make_windows`` gives exactly what a per-interaction loop gives, and the
whole-history bags and set-completion samples hold exactly the history they should."""

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
) -> tuple[TrainingWindows, list[np.ndarray]]:
    """A Python loop over every interaction, kept as the oracle; also each window's earlier
    items (the user's interactions before the window)."""
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
    target_values = np.full((count, length, window), np.nan, np.float32)
    target_likes = np.full((count, length, window), -1, np.int8)
    earlier = []
    for s, (u, start, end) in enumerate(spans):
        h = histories[u]
        earlier.append(h.items[:start])
        n = end - start
        off = length - n
        items[s, off:] = h.items[start:end]
        events[s, off:] = h.events[start:end]
        values[s, off:] = h.values[start:end]
        for p in range(start, end):
            col = off + p - start
            for w, q in enumerate(range(p + 1, min(p + 1 + window, len(h)))):
                targets[s, col, w] = h.items[q]
                v, e = h.values[q], h.events[q]
                target_values[s, col, w] = v
                if not np.isnan(v):
                    target_likes[s, col, w] = int(v >= like_threshold)
                elif e == _LIKE:
                    target_likes[s, col, w] = 1
                elif e == _DISLIKE:
                    target_likes[s, col, w] = 0
    windows = TrainingWindows(
        PaddedHistories(
            torch.from_numpy(items), torch.from_numpy(events), torch.from_numpy(values)
        ),
        torch.from_numpy(targets),
        torch.from_numpy(target_values),
        torch.from_numpy(target_likes),
    )
    return windows, earlier


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
        (a.target_values, b.target_values),
        (a.target_likes, b.target_likes),
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
    got = make_windows(hist, length, window, pad, 4.0, stride, earlier=True)
    want, earlier = reference_make_windows(hist, length, window, pad, 4.0, stride)
    assert len(got) == len(want) > 0
    _assert_same(got, want)
    bag = got.inputs.earlier
    for s, items in enumerate(earlier):
        lo, hi = int(bag.offsets[s]), int(bag.offsets[s + 1])
        np.testing.assert_array_equal(bag.items[lo:hi].numpy(), items)


def test_no_histories_and_only_short_ones():
    for hist in ([], [History.from_items([3])]):
        got = make_windows(hist, 6, 2, 10, 4.0)
        want, _ = reference_make_windows(hist, 6, 2, 10, 4.0)
        assert len(got) == len(want) == 0
        _assert_same(got, want)


@pytest.mark.parametrize(("length", "stride"), [(10, None), (7, 2), (5, 5), (4, 1)])
def test_supervise_once_gives_each_position_targets_in_exactly_one_window(length, stride):
    hist = _histories()
    pad = 120
    every = make_windows(hist, length, 3, pad, 4.0, stride)
    once = make_windows(hist, length, 3, pad, 4.0, stride, earlier=True, once=True)
    np.testing.assert_array_equal(once.inputs.items.numpy(), every.inputs.items.numpy())
    # Count, per (user, interaction), the windows in which it is a supervised position:
    # each window's supervised cells map back to the history through the earlier bag.
    user_of = np.repeat(
        np.arange(len(hist)),
        [len(make_windows([h], length, 3, pad, 4.0, stride)) for h in hist],
    )
    bag = once.inputs.earlier

    def supervised(w: TrainingWindows) -> dict[tuple[int, int], int]:
        """(user, interaction) -> windows in which it has targets."""
        counts: dict[tuple[int, int], int] = {}
        for s in range(len(w)):
            start = int(bag.offsets[s + 1] - bag.offsets[s])
            filled = int((w.inputs.items[s] != pad).sum())
            for c in range(length - filled, length):
                if w.targets[s, c, 0] >= 0:
                    key = (int(user_of[s]), start + c - (length - filled))
                    counts[key] = counts.get(key, 0) + 1
                    # Targets, where kept, are the same as without ``once``.
                    assert torch.equal(w.targets[s, c], every.targets[s, c])
        return counts

    got, want = supervised(once), supervised(every)
    assert set(got) == set(want)  # the same positions are supervised ...
    assert set(got.values()) == {1}  # ... each in exactly one window
