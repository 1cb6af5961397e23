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
    """
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
