"""Tests that would catch a dishonest evaluator (issue 13, item 8).

* the history mask excludes exactly the earlier-phase items, and ``mask="none"`` nothing;
* an item that appears only in test rows reaches no training, early stopping or statistic
  (the rating head's mean included): two datasets that differ only in their test rows train
  to bit-identical models;
* the loo split follows RecBole's rules on a fixture with timestamp ties;
* the recency floor scores by the latest item of the history it is given.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtrec.config import MTRecConfig
from mtrec.data import generate_synthetic
from mtrec.data.history import user_histories
from mtrec.data.schema import Dataset, EventType, Interaction, Item
from mtrec.evaluation import split_dataset
from mtrec.evaluation.evaluator import (
    PrecomputedScores,
    evaluate_ranking,
    evaluate_ranking_per_user,
)
from mtrec.model.baselines import (
    BPRModel,
    ItemKNNModel,
    LastItemKNNModel,
    PopularityModel,
)
from mtrec.model.multitask import MultiTaskModel
from mtrec.training import train_multitask


def _tie_fixture() -> Dataset:
    """Four users whose rows are interleaved in the file, with timestamp ties.

    RecBole (order TO = stable sort by timestamp, then per user LS with
    legal_leave_one_num = min(2, n - 1)) gives, per user:
      a: rows (i1,5) (i2,3) (i3,5) (i4,3) (i5,1) -> time order i5 i2 i4 i1 i3:
         train [i5, i2, i4], valid i1, test i3 (ties keep file order)
      b: (i6,2) (i7,2) -> n = 2, one left out: train [i6], test i7, no valid
      c: (i8,9) -> n = 1: train only
      d: (i9,7) (i0,7) (i1,7) -> all tied, file order: train [i9], valid i0, test i1
    """
    items = [Item(f"i{k}", f"Item {k}", categories=("X",)) for k in range(10)]
    file_rows = [
        ("a", "i1", 5),
        ("d", "i9", 7),
        ("a", "i2", 3),
        ("b", "i6", 2),
        ("a", "i3", 5),
        ("d", "i0", 7),
        ("c", "i8", 9),
        ("a", "i4", 3),
        ("b", "i7", 2),
        ("d", "i1", 7),
        ("a", "i5", 1),
    ]
    inter = [Interaction(u, i, EventType.RATING, 4.0, float(t)) for u, i, t in file_rows]
    return Dataset.from_records("ties", items, inter)


def _phase_pairs(ds: Dataset, rows: np.ndarray) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in sorted(rows, key=lambda r: (ds.user_idx[r], ds.timestamp[r], r)):
        out.setdefault(ds.users[ds.user_idx[r]].user_id, []).append(
            ds.items[ds.item_idx[r]].item_id
        )
    return out


def test_loo_split_follows_recbole_rules_with_timestamp_ties():
    ds = _tie_fixture()
    sp = split_dataset(ds, "loo")
    assert _phase_pairs(ds, sp.train) == {
        "a": ["i5", "i2", "i4"],
        "b": ["i6"],
        "c": ["i8"],
        "d": ["i9"],
    }
    assert _phase_pairs(ds, sp.valid) == {"a": ["i1"], "d": ["i0"]}
    assert _phase_pairs(ds, sp.test) == {"a": ["i3"], "b": ["i7"], "d": ["i1"]}


# ---- the mask ----------------------------------------------------------------------------------
def _mask_fixture() -> tuple[Dataset, np.ndarray]:
    """A synthetic dataset plus one user whose test item repeats a train item, and distinct
    random scores (no ties, so every rank below is exact)."""
    ds = generate_synthetic(n_items=40, n_users=12, n_interactions=200, n_categories=3, seed=5)
    sp = split_dataset(ds, "loo")
    # User 0's test row becomes a repeat of one of its train items.
    u0_train = sp.train[ds.user_idx[sp.train] == 0]
    (u0_test,) = sp.test[ds.user_idx[sp.test] == 0]
    ds.item_idx[u0_test] = ds.item_idx[u0_train[0]]
    scores = np.random.default_rng(0).permutation(ds.n_users * ds.n_items).astype(np.float32)
    return ds, scores.reshape(ds.n_users, ds.n_items)


@pytest.mark.parametrize("phase", ["valid", "test"])
@pytest.mark.parametrize("mask", ["history", "none"])
def test_mask_excludes_exactly_the_earlier_phase_items(phase, mask):
    ds, scores = _mask_fixture()
    sp = split_dataset(ds, "loo")
    earlier = {"valid": [sp.train], "test": [sp.train, sp.valid]}[phase]
    n = ds.n_items
    ev = evaluate_ranking_per_user(
        PrecomputedScores(scores), ds, sp, phase, ks=(n,), beyond_accuracy=False, mask=mask
    )
    checked_repeat = False
    for u, mrr in zip(ev.user_idx, ev.per_user[f"mrr@{n}"], strict=True):
        (target,) = ds.item_idx[sp.rows_of(phase)][ds.user_idx[sp.rows_of(phase)] == u]
        # Expected from the raw rows, not from the evaluator's helpers: the user's items in
        # earlier phases, minus this phase's target (RecBole: used_item - positive_item).
        excluded = set()
        if mask == "history":
            for rows in earlier:
                excluded |= set(ds.item_idx[rows][ds.user_idx[rows] == u].tolist())
            checked_repeat |= target in excluded
            excluded.discard(target)
        competitors = [j for j in range(n) if j not in excluded and j != target]
        expected_rank = 1 + sum(scores[u, j] > scores[u, target] for j in competitors)
        assert round(1 / mrr) == expected_rank
    if mask == "history" and phase == "test":
        assert checked_repeat  # user 0's repeated item was ranked, not masked


def test_unknown_mask_is_refused():
    ds, scores = _mask_fixture()
    with pytest.raises(ValueError, match="mask must be one of"):
        evaluate_ranking(PrecomputedScores(scores), ds, split_dataset(ds, "loo"), mask="train")


def test_per_user_results_are_keyed_by_user_token():
    ds, scores = _mask_fixture()
    sp = split_dataset(ds, "loo")
    ev = evaluate_ranking_per_user(PrecomputedScores(scores), ds, sp, "test", ks=(10,))
    assert ev.users.tolist() == [ds.users[u].user_id for u in ev.user_idx]
    for name, values in ev.per_user.items():
        assert values.shape == ev.users.shape
        assert ev.summary[name] == pytest.approx(values.mean())


# ---- a planted item that appears only in test rows ---------------------------------------------
def _planted(variant: str) -> Dataset:
    """A small dataset plus two catalog items that appear only as the latest (test) row of
    users 0-9: variant "A" gives them item planted-A rated 5, variant "B" item planted-B rated
    1. Everything but the test rows is identical between the variants."""
    base = generate_synthetic(n_items=50, n_users=30, n_interactions=600, n_categories=3, seed=9)
    items = [*base.items, Item("planted-A", "Planted A", categories=("Space",))]
    items.append(Item("planted-B", "Planted B", categories=("Space",)))
    item, value = (base.n_items, 5.0) if variant == "A" else (base.n_items + 1, 1.0)
    users = np.arange(10)
    last = np.array([base.timestamp[base.user_idx == u].max() for u in users]) + 60.0
    return Dataset(
        base.name,
        items,
        base.users,
        np.concatenate([base.user_idx, users]),
        np.concatenate([base.item_idx, np.full(10, item)]),
        np.concatenate([base.event, np.full(10, EventType.RATING.code, np.int8)]),
        np.concatenate([base.value, np.full(10, value, np.float32)]),
        np.concatenate([base.timestamp, last]),
    )


def _tiny_config() -> MTRecConfig:
    cfg = MTRecConfig.for_protocol("loo")
    cfg.model.dim = 16
    cfg.model.layers = 1
    cfg.model.max_history = 20
    cfg.train.epochs = 3
    cfg.train.patience = 1
    cfg.train.batch_size = 64
    cfg.train.device = "cpu"
    return cfg


def test_planted_test_only_item_reaches_no_training_statistic():
    a, b = _planted("A"), _planted("B")
    sa, sb = split_dataset(a, "loo"), split_dataset(b, "loo")
    for phase in ("train", "valid", "test"):
        assert np.array_equal(sa.rows_of(phase), sb.rows_of(phase))
    planted_rows = np.flatnonzero(a.item_idx >= a.n_items - 2)
    assert set(planted_rows.tolist()) <= set(sa.test.tolist())  # only ever a test row

    models, results = [], []
    for ds, sp in ((a, sa), (b, sb)):
        m = MultiTaskModel.create(ds, _tiny_config(), None)
        results.append(train_multitask(m, ds, sp.train, sp))
        models.append(m)
    # The rating head's offset is the training rows' mean rating, not all rows'.
    train_mean = float(np.nanmean(a.value[sa.train]))
    for m in models:
        assert float(m.net.rating_mean) == pytest.approx(train_mean, rel=1e-6)
    # Early stopping saw the same validation figures, and the weights are bit-identical.
    assert [e.valid for e in results[0].epochs] == [e.valid for e in results[1].epochs]
    assert results[0].best_epoch == results[1].best_epoch
    state_a, state_b = models[0].net.state_dict(), models[1].net.state_dict()
    for name, tensor in state_a.items():
        assert torch.equal(tensor, state_b[name]), name
    # That includes the item-neighbour memory, filled after training: it ran, and it holds
    # nothing of the planted items; the weights chosen on validation are the same.
    memory = models[0].net.neighbours
    assert memory is not None and memory.fitted
    planted = torch.arange(a.n_items - 2, a.n_items)
    assert (memory.weight[planted] == 0).all()
    assert (memory.weight[torch.isin(memory.index, planted)] == 0).all()
    assert models[0].config.fusion == models[1].config.fusion

    # The baselines' statistics (popularity, co-occurrence, factors) come from training rows.
    hist = user_histories(a, sa.train)
    for make in (
        PopularityModel,
        ItemKNNModel,
        LastItemKNNModel,
        lambda: BPRModel(epochs=2),
    ):
        fitted = [make().fit(ds, sp.train) for ds, sp in ((a, sa), (b, sb))]
        s = [f.score(np.arange(a.n_users), hist) for f in fitted]
        np.testing.assert_array_equal(s[0], s[1])
        assert (s[0][:, -2:] == 0).all() or isinstance(fitted[0], BPRModel)
    # The validation figures the model is selected on cannot depend on test rows either.
    va = evaluate_ranking(models[0], a, sa, "valid", ks=(10,))
    vb = evaluate_ranking(models[1], b, sb, "valid", ks=(10,))
    assert va == vb


# ---- the recency floor -------------------------------------------------------------------------
def test_recency_floor_scores_by_the_latest_history_item():
    ds = generate_synthetic(n_items=40, n_users=15, n_interactions=300, n_categories=3, seed=2)
    sp = split_dataset(ds, "loo")
    model = LastItemKNNModel().fit(ds, sp.train)
    knn = ItemKNNModel(k=ds.n_items).fit(ds, sp.train)  # no neighbour cut
    np.testing.assert_array_equal(model.sim, knn.sim)  # the same co-occurrence cosine
    x = np.zeros((ds.n_users, ds.n_items))
    x[ds.user_idx[sp.train], ds.item_idx[sp.train]] = 1  # training rows only
    cosine = (x.T @ x) / np.maximum(np.outer(np.sqrt(x.sum(0)), np.sqrt(x.sum(0))), 1e-12)
    np.fill_diagonal(cosine, 0)
    np.testing.assert_allclose(model.sim, cosine, atol=1e-6)
    test_hist = user_histories(ds, sp.rows_before("test"))
    scores = model.score(np.arange(ds.n_users), test_hist)
    valid_item = dict(
        zip(ds.user_idx[sp.valid].tolist(), ds.item_idx[sp.valid].tolist(), strict=True)
    )
    for u, h in enumerate(test_hist):
        # At test time the latest history item is the validation item.
        assert h.items[-1] == valid_item[u]
        np.testing.assert_array_equal(scores[u], knn.sim[valid_item[u]])
        # One item only: scoring the whole history (ItemKNN) gives something else.
        assert not np.array_equal(scores[u], knn.score(np.array([u]), [h])[0])
