"""The item-neighbour memory: ItemKNN's scores, from the rows it is given, kept by checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtrec.data.history import user_histories
from mtrec.model.baselines import ItemKNNModel
from mtrec.model.neighbours import ItemNeighbours


def _seen(histories, n_items: int) -> torch.Tensor:
    seen = np.full((len(histories), max(len(h) for h in histories)), n_items, np.int64)
    for r, h in enumerate(histories):
        seen[r, : len(h)] = h.items
    return torch.as_tensor(seen)


def _fitted(ds, rows: np.ndarray, k: int) -> ItemNeighbours:
    memory = ItemNeighbours(ds.n_items, k)
    memory.fit(ds.user_idx[rows], ds.item_idx[rows], ds.n_users, chunk=64)
    return memory


def test_scores_equal_itemknn_without_a_neighbour_cut(synthetic):
    rows = np.arange(len(synthetic.item_idx))[::2]
    memory = _fitted(synthetic, rows, synthetic.n_items)
    knn = ItemKNNModel(k=synthetic.n_items).fit(synthetic, rows)
    hist = user_histories(synthetic, rows)
    users = np.arange(40)
    histories = [hist[u] for u in users]
    got = memory.scores(_seen(histories, synthetic.n_items)).numpy()
    np.testing.assert_allclose(got, knn.score(users, histories), rtol=1e-4, atol=1e-4)
    assert got.max() > 0


def test_each_item_keeps_its_k_most_similar_items(synthetic):
    rows = np.arange(len(synthetic.item_idx))
    memory = _fitted(synthetic, rows, 5)
    full = ItemKNNModel(k=synthetic.n_items).fit(synthetic, rows).sim  # sim[h, j]
    assert memory.index.shape == (synthetic.n_items, 5)
    for j in (0, 17, 123):
        kept = np.sort(memory.weight[j].numpy())[::-1]
        np.testing.assert_allclose(kept, np.sort(full[:, j])[::-1][:5], rtol=1e-5)
        assert j not in memory.index[j][memory.weight[j] > 0].tolist()


def test_an_unfitted_memory_scores_nothing_and_k_is_capped(synthetic):
    memory = ItemNeighbours(4, 100)
    assert memory.index.shape == (4, 3)
    assert not memory.fitted
    assert memory.scores(torch.tensor([[0, 1, 4]])).abs().sum() == 0


def test_fitted_follows_fit_and_load_state_dict(synthetic):
    rows = np.arange(len(synthetic.user_idx))
    filled = _fitted(synthetic, rows, 5)
    assert filled.fitted
    empty = ItemNeighbours(synthetic.n_items, 5)
    assert not empty.fitted  # cached False ...
    empty.load_state_dict(filled.state_dict())
    assert empty.fitted  # ... forgotten by the load
    filled.load_state_dict(ItemNeighbours(synthetic.n_items, 5).state_dict())
    assert not filled.fitted


def test_model_fit_neighbours_replaces_the_memory(synthetic, tmp_path):
    from mtrec.config import MTRecConfig
    from mtrec.model.multitask import MultiTaskModel

    cfg = MTRecConfig()
    cfg.model.text_dim, cfg.model.dim, cfg.model.neighbours = 0, 8, 5
    model = MultiTaskModel.create(synthetic, cfg)
    assert model.net.neighbours is not None and not model.has_neighbours
    rows = np.arange(len(synthetic.user_idx))
    model.fit_neighbours(synthetic, rows)
    assert model.has_neighbours and model.net.neighbours.index.shape[1] == 5
    model.fit_neighbours(synthetic, rows, k=3)
    assert model.has_neighbours and model.config.model.neighbours == 3
    assert torch.equal(model.net.neighbours.weight, _fitted(synthetic, rows, 3).weight)
    model.save(tmp_path)  # the checkpoint rebuilds the replaced memory's shape
    loaded = MultiTaskModel.load(tmp_path)
    assert loaded.has_neighbours and loaded.net.neighbours.index.shape[1] == 3
    mask = np.zeros(len(synthetic.user_idx), bool)
    mask[rows[::2]] = True
    model.fit_neighbours(synthetic, mask)  # a boolean mask selects rows, not ids 0 and 1
    assert torch.equal(model.net.neighbours.weight, _fitted(synthetic, rows[::2], 3).weight)
    with pytest.raises(ValueError, match=">= 0"):
        model.fit_neighbours(synthetic, rows, k=-1)
    model.fit_neighbours(synthetic, rows, k=0)
    assert model.net.neighbours is None and not model.has_neighbours


def test_recency_decay_weights_each_item_by_its_latest_age(synthetic):
    rows = np.arange(len(synthetic.user_idx))
    memory = _fitted(synthetic, rows, 5)
    n = synthetic.n_items
    dense = memory.matrix().to_dense()  # M[j, h] = sim(h, j)
    # Oldest first: item 3 at ages 3 and 1 (keeps 0.5 ** 1), item 7 at age 2, item 9 at 0.
    seen = torch.tensor([[3, 7, 3, 9, n, n]])
    got = memory.scores(seen, decay=0.5)[0]
    want = dense[:, 3] * 0.5 + dense[:, 7] * 0.25 + dense[:, 9] * 1.0
    torch.testing.assert_close(got, want)
    # decay 1 is ItemKNN's sum over distinct items, as before the decay existed.
    torch.testing.assert_close(
        memory.scores(seen, decay=1.0)[0], dense[:, 3] + dense[:, 7] + dense[:, 9]
    )
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="decay"):
            memory.scores(seen, decay=bad)


def test_recency_ages_count_real_items_per_row(synthetic):
    rows = np.arange(len(synthetic.user_idx))
    memory = _fitted(synthetic, rows, 5)
    n = synthetic.n_items
    dense = memory.matrix().to_dense()
    # Rows of different lengths, an empty row, and padding inside a row.
    seen = torch.tensor([[3, 7, n, n], [n, n, n, n], [3, n, 7, n]])
    got = memory.scores(seen, decay=0.5)
    want = dense[:, 3] * 0.5 + dense[:, 7]
    torch.testing.assert_close(got[0], want)
    torch.testing.assert_close(got[1], torch.zeros(n))
    torch.testing.assert_close(got[2], want)


def test_a_dislike_does_not_pull_its_neighbours_up(synthetic):
    from mtrec.config import MTRecConfig
    from mtrec.data.history import History
    from mtrec.data.schema import EventType
    from mtrec.model.multitask import MultiTaskModel

    cfg = MTRecConfig()
    cfg.model.text_dim, cfg.model.dim, cfg.model.neighbours = 0, 8, 5
    model = MultiTaskModel.create(synthetic, cfg)
    model.fit_neighbours(synthetic, np.arange(len(synthetic.user_idx)))
    model.config.fusion.neighbour_decay = 0.8
    rating = EventType.RATING.code

    def history(events: list[int]) -> History:
        items = np.array([3, 7, 11][: len(events)], np.int64)
        values = np.full(len(events), np.nan, np.float32)
        return History(items, np.array(events, np.int8), values)

    dislike = EventType.DISLIKE.code
    with_dislike = model.user_state([history([rating, rating, dislike])])
    without = model.user_state([history([rating, rating])])
    assert with_dislike.neighbour_seen is not None and without.neighbour_seen is None
    assert with_dislike.seen.tolist() == [[3, 7, 11]]  # the seen-item bias still sees it
    network = model.network_logits(without)
    torch.testing.assert_close(
        model.neighbour_logits(with_dislike, network), model.neighbour_logits(without, network)
    )


def test_neighbour_decays_are_validated():
    from pydantic import ValidationError

    from mtrec.config import TrainConfig

    for bad in ([], [0.0], [1.5], [1.0, -0.2]):
        with pytest.raises(ValidationError):
            TrainConfig(neighbour_decays=bad)
