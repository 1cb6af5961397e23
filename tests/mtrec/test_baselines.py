"""The in-project ItemKNN prunes neighbours as RecBole's ItemKNN does."""

from __future__ import annotations

import numpy as np

from mtrec.data import generate_synthetic
from mtrec.data.history import user_histories
from mtrec.evaluation import split_dataset
from mtrec.model.baselines import ItemKNNModel


def test_itemknn_keeps_each_candidates_top_k_neighbours():
    # RecBole (ComputeSimilarity, method "item"): W[h, j] is kept when h is among j's k most
    # similar items, and score[u, j] = sum over u's items h of W[h, j].
    ds = generate_synthetic(n_items=30, n_users=40, n_interactions=500, n_categories=3, seed=1)
    sp = split_dataset(ds, "loo")
    k = 3
    model = ItemKNNModel(k=k).fit(ds, sp.train)
    full = ItemKNNModel(k=ds.n_items).fit(ds, sp.train).sim
    for j in range(ds.n_items):
        kept = np.flatnonzero(model.sim[:, j])
        assert len(kept) <= k
        # Every kept neighbour is at least as similar to j as every dropped one.
        dropped = np.setdiff1d(np.arange(ds.n_items), kept)
        if len(kept) and len(dropped):
            assert full[kept, j].min() >= full[dropped, j].max()
        np.testing.assert_array_equal(model.sim[kept, j], full[kept, j])
    hist = user_histories(ds, sp.train)
    x = np.zeros((ds.n_users, ds.n_items), np.float32)
    x[ds.user_idx[sp.train], ds.item_idx[sp.train]] = 1
    np.testing.assert_allclose(model.score(np.arange(ds.n_users), hist), x @ model.sim, atol=1e-5)
