"""Protocols mirror RecBole's splits; metric functions match hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtrec.evaluation import metrics as M
from mtrec.evaluation.protocols import _recbole_ratio_counts, split_dataset


@pytest.mark.parametrize("protocol", ["loo", "random"])
def test_splits_are_disjoint_and_complete(ml100k, protocol):
    sp = split_dataset(ml100k, protocol)
    all_rows = np.concatenate([sp.train, sp.valid, sp.test])
    assert len(all_rows) == ml100k.n_interactions
    assert len(np.unique(all_rows)) == ml100k.n_interactions  # disjoint


def test_loo_is_time_respecting(ml100k):
    sp = split_dataset(ml100k, "loo")
    ds = ml100k
    assert len(sp.test) == ds.n_users and len(sp.valid) == ds.n_users
    last_train = np.full(ds.n_users, -np.inf)
    np.maximum.at(last_train, ds.user_idx[sp.train], ds.timestamp[sp.train])
    valid_t = np.empty(ds.n_users)
    valid_t[ds.user_idx[sp.valid]] = ds.timestamp[sp.valid]
    test_t = np.empty(ds.n_users)
    test_t[ds.user_idx[sp.test]] = ds.timestamp[sp.test]
    assert (last_train <= valid_t).all() and (valid_t <= test_t).all()


def test_random_split_uses_recbole_counts(ml100k):
    sp = split_dataset(ml100k, "random")
    per_user = np.bincount(ml100k.user_idx, minlength=ml100k.n_users)
    valid = np.bincount(ml100k.user_idx[sp.valid], minlength=ml100k.n_users)
    for u in range(0, ml100k.n_users, 50):
        assert valid[u] == _recbole_ratio_counts(int(per_user[u]), (0.8, 0.1, 0.1))[1]
    assert _recbole_ratio_counts(20, (0.8, 0.1, 0.1)) == [16, 2, 2]
    assert _recbole_ratio_counts(5, (0.8, 0.1, 0.1)) == [3, 1, 1]


def test_split_is_deterministic(ml100k):
    a, b = split_dataset(ml100k, "random", seed=1), split_dataset(ml100k, "random", seed=1)
    assert (a.test == b.test).all()
    assert not np.array_equal(split_dataset(ml100k, "random", seed=2).test, a.test)


def test_unknown_protocol(ml100k):
    with pytest.raises(ValueError, match="unknown protocol"):
        split_dataset(ml100k, "kfold")


def test_ranking_metrics_by_hand():
    # user 1: targets at ranks 1 and 4; user 2: target at rank 12 (misses @10).
    out = M.ranking_metrics([np.array([1, 4]), np.array([12])], ks=(10,))
    ndcg_u1 = (1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert out["ndcg@10"] == pytest.approx(ndcg_u1 / 2)
    assert out["recall@10"] == pytest.approx(0.5)
    assert out["mrr@10"] == pytest.approx(0.5)
    assert out["hit@10"] == pytest.approx(0.5)


def test_ties_are_not_broken_by_item_id():
    # All items tie: a target's expected rank is the middle, whichever its id.
    scores = np.zeros((1, 101))
    rng = np.random.default_rng(0)
    low = [M.rank_of_targets(scores, [np.array([0])], rng)[0][0] for _ in range(400)]
    high = [M.rank_of_targets(scores, [np.array([100])], rng)[0][0] for _ in range(400)]
    assert 40 < np.mean(low) < 62 and 40 < np.mean(high) < 62


def test_auc_rmse_kl_by_hand():
    assert M.auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.8, 0.2])) == 1.0
    assert M.auc(np.array([1, 0]), np.array([0.5, 0.5])) == 0.5
    assert M.rmse(np.array([1.0, 3.0]), np.array([2.0, 1.0])) == pytest.approx(math.sqrt(2.5))
    assert M.mae(np.array([1.0, 3.0]), np.array([2.0, 1.0])) == pytest.approx(1.5)
    p = np.array([[0.5, 0.5]])
    assert M.kl_divergence(p, p) == pytest.approx(0.0, abs=1e-6)
    assert M.kl_divergence(p, np.array([[0.9, 0.1]])) > 0.3


def test_beyond_accuracy_by_hand():
    top = np.array([[0, 1], [0, 2]])
    assert M.coverage(top, 4) == 0.75
    vec = np.eye(3)
    assert M.intra_list_diversity(top, vec) == pytest.approx(1.0)
    assert M.novelty(np.array([[0]]), np.array([2]), 8) == pytest.approx(2.0)
