"""Turn histories into padded tensors, causal training windows and set-completion samples.

Every sample has two views of a user's history: the most recent ``length`` interactions as a
left-padded sequence (what the sequence encoder reads), and the interactions before those as
an ``earlier`` bag (what only the whole-history channel reads). Together they are the whole
history, however long.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mtrec.data.history import History
from mtrec.data.schema import NUM_EVENT_TYPES, EventType

_LIKE, _DISLIKE = EventType.LIKE.code, EventType.DISLIKE.code


@dataclass
class Bag:
    """Variable-length item sets, one per sample, stored flat.

    Attributes:
        items: (M,) int64 item ids.
        values: (M,) float32 ratings (NaN = none).
        offsets: (B + 1,) int64; sample b holds ``items[offsets[b]:offsets[b + 1]]``.
    """

    items: torch.Tensor
    values: torch.Tensor
    offsets: torch.Tensor

    @classmethod
    def empty(cls, n: int) -> Bag:
        return cls(
            torch.empty(0, dtype=torch.int64),
            torch.empty(0, dtype=torch.float32),
            torch.zeros(n + 1, dtype=torch.int64),
        )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def sample_ids(self) -> torch.Tensor:
        """(M,) the sample each item belongs to."""
        lengths = self.offsets[1:] - self.offsets[:-1]
        return torch.repeat_interleave(torch.arange(len(self), device=lengths.device), lengths)

    def take(self, idx: torch.Tensor) -> Bag:
        """The bags of samples ``idx``, in that order."""
        lengths = (self.offsets[1:] - self.offsets[:-1])[idx]
        starts = self.offsets[:-1][idx]
        offsets = torch.zeros(len(idx) + 1, dtype=torch.int64)
        offsets[1:] = torch.cumsum(lengths, 0)
        within = torch.arange(int(offsets[-1])) - torch.repeat_interleave(offsets[:-1], lengths)
        src = torch.repeat_interleave(starts, lengths) + within
        return Bag(self.items[src], self.values[src], offsets)

    def to(self, device: torch.device | str) -> Bag:
        return Bag(self.items.to(device), self.values.to(device), self.offsets.to(device))


@dataclass
class PaddedHistories:
    """Left-padded history tensors, each (B, L), and the interactions before them.

    Attributes:
        items, events, values: The most recent interactions, left-padded.
        earlier: The interactions before those (None = there are none).
    """

    items: torch.Tensor
    events: torch.Tensor
    values: torch.Tensor
    earlier: Bag | None = None

    def to(self, device: torch.device | str) -> PaddedHistories:
        return PaddedHistories(
            self.items.to(device),
            self.events.to(device),
            self.values.to(device),
            None if self.earlier is None else self.earlier.to(device),
        )

    def take(self, idx: torch.Tensor) -> PaddedHistories:
        return PaddedHistories(
            self.items[idx],
            self.events[idx],
            self.values[idx],
            None if self.earlier is None else self.earlier.take(idx),
        )


def _bag(items: list[np.ndarray], values: list[np.ndarray]) -> Bag:
    lengths = np.fromiter((len(x) for x in items), np.int64, len(items))
    offsets = np.zeros(len(items) + 1, np.int64)
    offsets[1:] = np.cumsum(lengths)
    flat_i = np.concatenate(items) if items else np.empty(0, np.int64)
    flat_v = np.concatenate(values) if values else np.empty(0, np.float32)
    return Bag(
        torch.from_numpy(flat_i.astype(np.int64)),
        torch.from_numpy(flat_v.astype(np.float32)),
        torch.from_numpy(offsets),
    )


def pad_histories(
    histories: Sequence[History], length: int, pad_item: int, earlier: bool = True
) -> PaddedHistories:
    """Keep the last ``length`` interactions of each history, left-padded to ``length``; with
    ``earlier``, the interactions before them go to the ``earlier`` bag."""
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
    bag = None
    if earlier and any(len(h) > length for h in histories):
        cut = [max(0, len(h) - length) for h in histories]
        bag = _bag(
            [np.asarray(h.items[:c], np.int64) for h, c in zip(histories, cut, strict=True)],
            [np.asarray(h.values[:c], np.float32) for h, c in zip(histories, cut, strict=True)],
        )
    return PaddedHistories(
        torch.from_numpy(items), torch.from_numpy(events), torch.from_numpy(values), bag
    )


def like_labels(values: np.ndarray, events: np.ndarray, threshold: float) -> np.ndarray:
    """Like labels as int8: 1 liked, 0 not, -1 unknown. A rating decides when there is one
    (``>= threshold``); otherwise a like/dislike event; otherwise unknown."""
    rated = ~np.isnan(values)
    out = np.full(values.shape, -1, np.int8)
    out[rated] = values[rated] >= threshold
    out[~rated & (events == _LIKE)] = 1
    out[~rated & (events == _DISLIKE)] = 0
    return out


@dataclass
class _Samples:
    """Inputs and their targets with the targets' labels (see the two kinds below)."""

    inputs: PaddedHistories
    targets: torch.Tensor
    target_values: torch.Tensor
    target_likes: torch.Tensor

    def __len__(self) -> int:
        return self.targets.shape[0]

    def take(self, idx: torch.Tensor):
        return type(self)(
            self.inputs.take(idx),
            self.targets[idx],
            self.target_values[idx],
            self.target_likes[idx],
        )

    def to(self, device: torch.device | str):
        return type(self)(
            self.inputs.to(device),
            self.targets.to(device),
            self.target_values.to(device),
            self.target_likes.to(device),
        )


@dataclass
class TrainingWindows(_Samples):
    """Causal training samples: windows of histories and what follows each position.

    Attributes:
        inputs: Padded window contents, (N, L), with the user's interactions before the
            window in ``inputs.earlier`` (None when not asked for).
        targets: (N, L, W) int64 items that follow each position (-1 = none).
        target_values: (N, L, W) their ratings (NaN = none).
        target_likes: (N, L, W) int8 their like labels (1, 0, -1 = unknown).
    """

    @property
    def next_value(self) -> torch.Tensor:
        """(N, L) rating of the next item (NaN = none)."""
        return self.target_values[..., 0]

    @property
    def next_like(self) -> torch.Tensor:
        """(N, L) like label of the next item: 1, 0, or NaN (unknown)."""
        like = self.target_likes[..., 0].float()
        return torch.where(like < 0, torch.nan, like)


@dataclass
class SetSamples(_Samples):
    """Set-completion samples: one per user, a random part of the history as input and the
    rest as targets (what a random held-out split asks of a model).

    Attributes:
        inputs: The kept interactions in time order, (N, L), earlier ones in the bag.
        targets: (N, T) held-out items (-1 = none).
        target_values: (N, T) their ratings (NaN = none).
        target_likes: (N, T) int8 like labels (1, 0, -1 = unknown).
    """


def make_set_samples(
    histories: Sequence[History],
    length: int,
    pad_item: int,
    like_threshold: float,
    rng: np.random.Generator,
    keep: float = 0.5,
    max_targets: int = 128,
) -> SetSamples:
    """One sample per user with at least two interactions: each interaction is kept as input
    with probability ``keep`` (at least one kept and one held out); the held-out ones (at most
    ``max_targets``, a random subset) are the targets."""
    ins: list[History] = []
    tgt_items, tgt_values, tgt_likes = [], [], []
    for h in histories:
        n = len(h)
        if n < 2:
            continue
        kept = rng.random(n) < keep
        if kept.all():
            kept[rng.integers(n)] = False
        if not kept.any():
            kept[rng.integers(n)] = True
        ins.append(History(h.items[kept], h.events[kept], h.values[kept]))
        out = np.flatnonzero(~kept)
        if len(out) > max_targets:
            out = rng.choice(out, max_targets, replace=False)
        tgt_items.append(h.items[out])
        tgt_values.append(h.values[out])
        tgt_likes.append(like_labels(h.values[out], h.events[out], like_threshold))
    width = max((len(t) for t in tgt_items), default=1)
    targets = np.full((len(ins), width), -1, np.int64)
    values = np.full((len(ins), width), np.nan, np.float32)
    likes = np.full((len(ins), width), -1, np.int8)
    for r, (t, v, lk) in enumerate(zip(tgt_items, tgt_values, tgt_likes, strict=True)):
        targets[r, : len(t)], values[r, : len(t)], likes[r, : len(t)] = t, v, lk
    return SetSamples(
        pad_histories(ins, length, pad_item, earlier=True),
        torch.from_numpy(targets),
        torch.from_numpy(values),
        torch.from_numpy(likes),
    )


def make_windows(
    histories: Sequence[History],
    length: int,
    window: int,
    pad_item: int,
    like_threshold: float,
    stride: int | None = None,
    earlier: bool = False,
    once: bool = False,
) -> TrainingWindows:
    """Cut each history into windows of ``length`` ending every ``stride`` steps.

    Every position of a window gets as targets the next ``window`` items of the user's
    full history (not only of the window), so no position lacks future context. With
    ``earlier``, each window also carries the user's interactions before it (``inputs.earlier``),
    so a whole-history channel sees everything up to each position. With ``once``, each
    interaction is a supervised position in one window only: a window supervises its last
    ``stride`` positions (the user's first window, all of its positions), where the sequence
    encoder has the most context; the other positions are context only (no targets).

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
    flat_likes = like_labels(flat_values, flat_events, like_threshold)

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

    if once:
        # Cells before the window's last ``stride`` positions, in windows that do not start
        # the history, are supervised by an earlier window: keep them as context only.
        left = np.where((start[span] > 0) & (p < end[span] - stride), -1, left)
    # Targets: the items at p + 1 .. p + window of the full history, with their labels.
    targets = np.full((count, length, window), -1, np.int64)
    target_values = np.full((count, length, window), np.nan, np.float32)
    target_likes = np.full((count, length, window), -1, np.int8)
    cell = span * length + col
    for w in range(window):
        m = left > w
        at = cell[m] * window + w
        src = g[m] + 1 + w
        targets.reshape(-1)[at] = flat_items[src]
        target_values.reshape(-1)[at] = flat_values[src]
        target_likes.reshape(-1)[at] = flat_likes[src]

    bag = None
    if earlier:
        # Window s's earlier bag: the user's interactions 0 .. start[s] - 1.
        bag_offsets = np.zeros(count + 1, np.int64)
        bag_offsets[1:] = np.cumsum(start)
        within = np.arange(int(bag_offsets[-1])) - np.repeat(bag_offsets[:-1], start)
        src = np.repeat(offsets[user], start) + within
        bag = Bag(
            torch.from_numpy(flat_items[src]),
            torch.from_numpy(flat_values[src]),
            torch.from_numpy(bag_offsets),
        )
    return TrainingWindows(
        PaddedHistories(
            torch.from_numpy(items), torch.from_numpy(events), torch.from_numpy(values), bag
        ),
        torch.from_numpy(targets),
        torch.from_numpy(target_values),
        torch.from_numpy(target_likes),
    )
