"""Paired comparisons over users, and the per-user results files they read.

Two models evaluated on the same users (same split, same phase) differ by far less noise
than two independent figures suggest: the per-user differences carry the comparison. The
bootstrap below resamples users, keeping each user's pair together.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class PairedInterval:
    """Mean of ``a - b`` over users with a percentile bootstrap interval.

    Attributes:
        mean_diff: Mean over users of ``a - b``.
        low: Lower bound of the ``level`` interval.
        high: Upper bound.
        level: Coverage, e.g. 0.95.
        n_users: Users paired.
        n_boot: Bootstrap resamples.
    """

    mean_diff: float
    low: float
    high: float
    level: float
    n_users: int
    n_boot: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    n_boot: int = 10_000,
    seed: int = 2020,
    level: float = 0.95,
    chunk: int = 1_000,
) -> PairedInterval:
    """Percentile bootstrap interval of ``mean(a - b)``, resampling users with replacement.

    Args:
        a: (U,) one model's per-user metric.
        b: (U,) the other model's, same users in the same order (see ``pair_by_user``).
        n_boot: Resamples.
        seed: Resampling seed.
        level: Interval coverage.
        chunk: Resamples drawn at once (bounds memory at ``chunk * U`` indices).

    Returns:
        A ``PairedInterval``.

    Raises:
        ValueError: shapes differ, no users, or NaN values.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-d and the same length, got {a.shape} and {b.shape}")
    if len(a) == 0:
        raise ValueError("no users to compare")
    d = a - b
    if np.isnan(d).any():
        raise ValueError("per-user values contain NaN")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        n = min(chunk, n_boot - start)
        idx = rng.integers(0, len(d), size=(n, len(d)))
        means[start : start + n] = d[idx].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return PairedInterval(float(d.mean()), float(low), float(high), level, len(d), n_boot)


def pair_by_user(
    users_a: np.ndarray, a: np.ndarray, users_b: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Align two per-user arrays by user token.

    Args:
        users_a: (U,) user tokens of ``a``.
        a: (U,) values.
        users_b: (U,) user tokens of ``b`` (any order).
        b: (U,) values.

    Returns:
        ``(users, a_aligned, b_aligned)`` in ``users_a``'s order.

    Raises:
        ValueError: the two sides were evaluated on different users (a paired test needs
            the same users; silently intersecting would hide a protocol mismatch).
    """
    users_a, users_b = np.asarray(users_a, str), np.asarray(users_b, str)
    if len(np.unique(users_a)) != len(users_a) or len(np.unique(users_b)) != len(users_b):
        raise ValueError("duplicate user tokens")
    if set(users_a.tolist()) != set(users_b.tolist()):
        only_a = sorted(set(users_a.tolist()) - set(users_b.tolist()))[:5]
        only_b = sorted(set(users_b.tolist()) - set(users_a.tolist()))[:5]
        raise ValueError(f"different users: only in a {only_a}, only in b {only_b}")
    pos = {u: i for i, u in enumerate(users_b.tolist())}
    idx = np.array([pos[u] for u in users_a.tolist()], np.int64)
    return users_a, np.asarray(a), np.asarray(b)[idx]


def save_per_user(
    path: str | Path, users: np.ndarray, metrics: dict[str, dict[str, np.ndarray]]
) -> Path:
    """Write per-user metrics compactly: one ``.npz`` with ``users`` and float32 arrays.

    Args:
        path: Output ``.npz`` path (parents are created).
        users: (U,) user tokens.
        metrics: ``{group: {metric: (U,) values}}``, e.g. ``{"history": {"ndcg@10": ...}}``;
            stored under the key ``"group|metric"``.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"users": np.asarray(users, str)}
    for group, values in metrics.items():
        for name, v in values.items():
            if len(v) != len(users):
                raise ValueError(f"{group}|{name} has {len(v)} values for {len(users)} users")
            arrays[f"{group}|{name}"] = np.asarray(v, np.float32)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def load_per_user(path: str | Path) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
    """Read a file written by ``save_per_user``: ``(users, {group: {metric: values}})``."""
    with np.load(path) as z:
        users = z["users"]
        out: dict[str, dict[str, np.ndarray]] = {}
        for key in z.files:
            if key != "users":
                group, name = key.split("|", 1)
                out.setdefault(group, {})[name] = z[key].astype(np.float64)
    return users, out
