"""Named evaluation protocols that split interactions exactly as RecBole 1.2.1 does.

* ``loo``  = RecBole ``split {'LS': 'valid_and_test'}, group_by user, order TO``: per user,
  interactions in time order; the last is test, the one before is validation.
* ``random`` = RecBole ``split {'RS': [0.8, 0.1, 0.1]}, group_by user, order RO``: per
  user, interactions in a seeded random order, cut by RecBole's count formula.

Both rank all items, excluding the user's earlier-phase items (train for validation;
train and validation for test), as RecBole's general models do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtrec.data.schema import Dataset

PROTOCOLS = ("loo", "random")


@dataclass(frozen=True)
class Split:
    """Row indices of a dataset's interactions by phase, plus the protocol that made them.

    Attributes:
        protocol: ``"loo"`` or ``"random"``.
        train: Rows used to fit models.
        valid: Rows for model selection / early stopping.
        test: Rows for the final figures; never seen by fitting or selection.
    """

    protocol: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def rows_before(self, phase: str) -> np.ndarray:
        """Rows a model may use as history when evaluated on ``phase``."""
        if phase == "valid":
            return self.train
        if phase == "test":
            return np.concatenate([self.train, self.valid])
        raise ValueError(f"phase must be 'valid' or 'test', got {phase!r}")

    def rows_of(self, phase: str) -> np.ndarray:
        return {"train": self.train, "valid": self.valid, "test": self.test}[phase]


def _recbole_ratio_counts(total: int, ratios: tuple[float, ...]) -> list[int]:
    """RecBole's ``Dataset._calcu_split_ids`` counts for one user's ``total`` rows."""
    cnt = [int(r * total) for r in ratios]
    cnt[0] = total - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * total < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt


def _user_groups(ds: Dataset, order: np.ndarray) -> list[np.ndarray]:
    """Split an ordering of all rows into per-user row lists, keeping that order."""
    users = ds.user_idx[order]
    by_user = order[np.argsort(users, kind="stable")]
    bounds = np.searchsorted(ds.user_idx[by_user], np.arange(ds.n_users + 1))
    return [by_user[bounds[u] : bounds[u + 1]] for u in range(ds.n_users)]


def split_dataset(ds: Dataset, protocol: str, seed: int = 2020) -> Split:
    """Split interactions by a named protocol.

    Args:
        ds: The dataset.
        protocol: ``"loo"`` or ``"random"``.
        seed: Seed of the random order for ``"random"`` (unused by ``"loo"``).

    Returns:
        A ``Split``. Timestamp ties in ``loo`` keep file order (a stable sort).

    Raises:
        ValueError: an unknown protocol, or ``loo`` on a dataset without timestamps.
    """
    if protocol == "loo":
        if not ds.has_timestamps:
            raise ValueError(
                f"{ds.name} has no timestamps, so the leave-one-out protocol (the latest "
                "interactions held out) does not apply; use --protocol random"
            )
        order = np.argsort(ds.timestamp, kind="stable")
        train, valid, test = [], [], []
        for rows in _user_groups(ds, order):
            leave = min(2, len(rows) - 1)  # RecBole: legal_leave_one_num = min(2, n - 1)
            if leave <= 0:
                train.extend(rows)
                continue
            train.extend(rows[: len(rows) - leave])
            if leave == 2:
                valid.append(rows[-2])
            test.append(rows[-1])
        return Split(
            "loo", np.array(train, np.int64), np.array(valid, np.int64), np.array(test, np.int64)
        )
    if protocol == "random":
        rng = np.random.default_rng(seed)
        order = rng.permutation(ds.n_interactions)
        parts: list[list[int]] = [[], [], []]
        for rows in _user_groups(ds, order):
            counts = _recbole_ratio_counts(len(rows), (0.8, 0.1, 0.1))
            start = 0
            for p, c in enumerate(counts):
                parts[p].extend(rows[start : start + c])
                start += c
        return Split("random", *(np.array(p, np.int64) for p in parts))
    raise ValueError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
