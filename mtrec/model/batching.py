"""Turn histories into padded tensors and causal training windows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mtrec.data.history import History
from mtrec.data.schema import NUM_EVENT_TYPES, EventType

_LIKE, _DISLIKE = EventType.LIKE.code, EventType.DISLIKE.code


@dataclass
class PaddedHistories:
    """Left-padded history tensors, each (B, L)."""

    items: torch.Tensor
    events: torch.Tensor
    values: torch.Tensor

    def to(self, device: torch.device | str) -> PaddedHistories:
        return PaddedHistories(
            self.items.to(device), self.events.to(device), self.values.to(device)
        )


def pad_histories(histories: Sequence[History], length: int, pad_item: int) -> PaddedHistories:
    """Keep the last ``length`` interactions of each history, left-padded to ``length``."""
    b = len(histories)
    items = np.full((b, length), pad_item, np.int64)
    events = np.full((b, length), NUM_EVENT_TYPES, np.int64)
    values = np.full((b, length), np.nan, np.float32)
    for r, h in enumerate(histories):
        n = min(len(h), length)
        if n:
            items[r, -n:] = h.items[-n:]
            events[r, -n:] = h.events[-n:]
            values[r, -n:] = h.values[-n:]
    return PaddedHistories(
        torch.from_numpy(items), torch.from_numpy(events), torch.from_numpy(values)
    )


@dataclass
class TrainingWindows:
    """Causal training samples: windows of histories and what follows each position.

    Attributes:
        inputs: Padded window contents, (N, L).
        targets: (N, L, W) int64 items that follow each position (-1 = none).
        next_value: (N, L) rating of the next item (NaN = none).
        next_like: (N, L) like label of the next item: 1, 0, or NaN (unknown).
    """

    inputs: PaddedHistories
    targets: torch.Tensor
    next_value: torch.Tensor
    next_like: torch.Tensor

    def __len__(self) -> int:
        return self.targets.shape[0]


def make_windows(
    histories: Sequence[History],
    length: int,
    window: int,
    pad_item: int,
    like_threshold: float,
    stride: int | None = None,
) -> TrainingWindows:
    """Cut each history into windows of ``length`` ending every ``stride`` steps.

    Every position of a window gets as targets the next ``window`` items of the user's
    full history (not only of the window), so no position lacks future context.

    For a history of ``n`` items the windows end at ``n, n - stride, ...`` (while the end is
    above 1), and the last one is the first that reaches the start of the history. Everything
    is computed with array indexing over the concatenated histories (no Python loop over
    interactions), so building windows for a million interactions takes seconds.
    """
    stride = stride or max(1, length // 2)
    lengths = np.fromiter((len(h) for h in histories), np.int64, len(histories))
    # Windows per user: ends n - j * stride for j = 0..J, where J is the first j whose window
    # reaches the start (n - j * stride <= length), capped by the last end above 1.
    reach = np.maximum(0, -((length - lengths) // stride))  # ceil((n - length) / stride), >= 0
    last = (lengths - 2) // stride
    per_user = np.where(lengths > 1, np.minimum(reach, last) + 1, 0)
    count = int(per_user.sum())
    user = np.repeat(np.arange(len(histories)), per_user)
    first_span = np.cumsum(per_user) - per_user
    j = np.arange(count) - np.repeat(first_span, per_user)
    n_u = lengths[user]
    end = n_u - j * stride  # (count,)

    offsets = np.cumsum(lengths) - lengths  # where each user starts in the flat arrays
    if len(histories):
        flat_items = np.concatenate([np.asarray(h.items, np.int64) for h in histories])
        flat_events = np.concatenate([np.asarray(h.events, np.int64) for h in histories])
        flat_values = np.concatenate([np.asarray(h.values, np.float32) for h in histories])
    else:
        flat_items = np.empty(0, np.int64)
        flat_events = np.empty(0, np.int64)
        flat_values = np.empty(0, np.float32)

    # Only the filled (non-padding) cells are computed: cell k of span s holds the user's
    # interaction p = start + k in column off + k.
    start = np.maximum(0, end - length)
    filled = end - start
    span = np.repeat(np.arange(count), filled)
    k = np.arange(len(span)) - np.repeat(np.cumsum(filled) - filled, filled)
    col = (length - filled)[span] + k
    p = start[span] + k
    g = offsets[user[span]] + p  # index into the flat arrays
    left = n_u[span] - 1 - p  # interactions after p in the user's full history

    items = np.full((count, length), pad_item, np.int64)
    events = np.full((count, length), NUM_EVENT_TYPES, np.int64)
    values = np.full((count, length), np.nan, np.float32)
    items[span, col] = flat_items[g]
    events[span, col] = flat_events[g]
    values[span, col] = flat_values[g]

    # Targets: the items at p + 1 .. p + window of the full history.
    targets = np.full((count, length, window), -1, np.int64)
    cell = span * length + col
    flat_targets = targets.reshape(-1)
    for w in range(window):
        m = left > w
        flat_targets[cell[m] * window + w] = flat_items[g[m] + 1 + w]

    has_next = left > 0
    s_n, c_n, g_n = span[has_next], col[has_next], g[has_next] + 1
    next_value = np.full((count, length), np.nan, np.float32)
    next_like = np.full((count, length), np.nan, np.float32)
    v, e = flat_values[g_n], flat_events[g_n]
    next_value[s_n, c_n] = v
    rated = ~np.isnan(v)
    like = np.where(rated, (v >= like_threshold), np.where(e == _LIKE, 1.0, np.nan))
    like = np.where(~rated & (e == _DISLIKE), 0.0, like)
    next_like[s_n, c_n] = like
    return TrainingWindows(
        PaddedHistories(
            torch.from_numpy(items), torch.from_numpy(events), torch.from_numpy(values)
        ),
        torch.from_numpy(targets),
        torch.from_numpy(next_value),
        torch.from_numpy(next_like),
    )
