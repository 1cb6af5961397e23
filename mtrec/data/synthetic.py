"""A synthetic catalog with planted structure, for tests and scale benchmarks.

Each item has a primary category (and sometimes a second one) and text written from its
category's vocabulary; each user has a latent preference over categories (drawn from a
sparse Dirichlet) and picks items from preferred categories, weighted by popularity.
Ratings are higher in preferred categories. So a model that works must put a user's
category-interest mass on the user's planted favourite, and beat popularity.
"""

from __future__ import annotations

import numpy as np

from mtrec.data.schema import Dataset, EventType, Item, User

VOCAB: dict[str, tuple[str, ...]] = {
    "Space": ("galaxy", "starship", "alien", "orbit", "astronaut", "nebula"),
    "Cooking": ("recipe", "kitchen", "chef", "flavour", "bakery", "spice"),
    "Sports": ("football", "stadium", "championship", "athlete", "coach", "league"),
    "Music": ("guitar", "concert", "melody", "band", "album", "rhythm"),
    "History": ("empire", "ancient", "war", "dynasty", "revolution", "castle"),
    "Nature": ("forest", "wildlife", "ocean", "mountain", "river", "birds"),
    "Crime": ("detective", "murder", "heist", "police", "gangster", "trial"),
    "Romance": ("love", "wedding", "heartbreak", "couple", "kiss", "passion"),
    "Finance": ("market", "stocks", "bank", "investor", "fortune", "trading"),
    "Travel": ("journey", "island", "backpack", "road", "city", "voyage"),
    "Gaming": ("console", "quest", "level", "pixel", "arcade", "tournament"),
    "Health": ("fitness", "doctor", "diet", "hospital", "yoga", "medicine"),
}


def generate_synthetic(
    n_items: int = 500,
    n_users: int = 200,
    n_interactions: int = 10_000,
    n_categories: int = 8,
    seed: int = 0,
    start_time: float = 1_600_000_000.0,
) -> Dataset:
    """Generate a dataset with planted category preferences.

    Args:
        n_items: Catalog size.
        n_users: Number of users (each gets at least 5 interactions).
        n_interactions: Approximate total number of interactions.
        n_categories: Number of categories, at most ``len(VOCAB)``.
        seed: Random seed; the same seed gives the same dataset.
        start_time: Timestamp of the first event (seconds).

    Returns:
        A ``Dataset`` named ``synthetic``. Each user's attribute ``favorite`` is the planted
        top category and ``preference`` the planted distribution as ``"Cat:0.42|..."``.
    """
    if not 1 <= n_categories <= len(VOCAB):
        raise ValueError(f"n_categories must be in 1..{len(VOCAB)}, got {n_categories}")
    if n_items < 1 or n_users < 1 or n_interactions < n_users:
        raise ValueError("need n_items >= 1, n_users >= 1 and n_interactions >= n_users")
    rng = np.random.default_rng(seed)
    cats = list(VOCAB)[:n_categories]

    primary = rng.integers(0, n_categories, n_items)
    second = np.where(rng.random(n_items) < 0.3, rng.integers(0, n_categories, n_items), -1)
    second[second == primary] = -1
    popularity = rng.lognormal(0.0, 1.0, n_items)
    items = []
    for i in range(n_items):
        words = VOCAB[cats[primary[i]]]
        w = rng.choice(len(words), 3, replace=False)
        item_cats = (cats[primary[i]],) + ((cats[second[i]],) if second[i] >= 0 else ())
        title = f"The {words[w[0]].title()} {words[w[1]].title()} {i}"
        text = f"A story about {words[w[0]]}, {words[w[1]]} and {words[w[2]]}."
        items.append(Item(str(i), title, text, item_cats, int(1950 + (i * 7) % 75)))

    prefs = rng.dirichlet(np.full(n_categories, 0.3), n_users)
    users = [
        User(
            str(u),
            {
                "favorite": cats[int(prefs[u].argmax())],
                "preference": "|".join(f"{c}:{p:.3f}" for c, p in zip(cats, prefs[u], strict=True)),
            },
        )
        for u in range(n_users)
    ]

    # Interactions per user: heavy-tailed, at least 5.
    weights = rng.lognormal(0.0, 0.8, n_users)
    counts = np.maximum(5, np.round(weights / weights.sum() * n_interactions)).astype(np.int64)
    user_idx = np.repeat(np.arange(n_users), counts)
    n = len(user_idx)
    # Category per event from the user's preference (inverse-CDF sampling, vectorised).
    cdf = np.cumsum(prefs, axis=1)
    cat_of_event = (rng.random(n)[:, None] > cdf[user_idx]).sum(axis=1)
    cat_of_event = np.minimum(cat_of_event, n_categories - 1)
    # Item within the category, by popularity.
    item_idx = np.empty(n, dtype=np.int64)
    for c in range(n_categories):
        members = np.flatnonzero(primary == c)
        mask = cat_of_event == c
        if members.size == 0:  # a category with no items: fall back to any item
            members = np.arange(n_items)
        p = popularity[members] / popularity[members].sum()
        item_idx[mask] = rng.choice(members, mask.sum(), p=p)

    affinity = prefs[user_idx, primary[item_idx]] / prefs[user_idx].max(axis=1)
    rating = np.clip(np.round(1.5 + 3.5 * affinity + rng.normal(0, 0.7, n)), 1, 5)
    kind = rng.random(n)
    event = np.full(n, EventType.RATING.code, dtype=np.int8)
    event[kind < 0.15] = EventType.VIEW.code
    event[(kind >= 0.15) & (kind < 0.25)] = EventType.CLICK.code
    value = np.where(event == EventType.RATING.code, rating, np.nan).astype(np.float32)
    # Time: each user's events are spread over a year, in order of generation.
    offsets = rng.random(n) * 365 * 86_400
    timestamp = np.round(start_time + offsets)
    return Dataset("synthetic", items, users, user_idx, item_idx, event, value, timestamp)
