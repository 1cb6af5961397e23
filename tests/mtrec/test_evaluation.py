"""Protocols mirror RecBole's splits; metric functions match hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtrec.evaluation import metrics as M
from mtrec.evaluation import stats as S
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


def test_precision_and_f1_by_hand():
    # 3 targets, hits at ranks 1 and 4 within @10: P = 2/10, R = 2/3, F1 = 2PR/(P+R).
    out = M.ranking_metrics([np.array([1, 4, 30])], ks=(10,))
    p, r = 0.2, 2 / 3
    assert out["precision@10"] == pytest.approx(p)
    assert out["recall@10"] == pytest.approx(r)
    assert out["f1@10"] == pytest.approx(2 * p * r / (p + r))
    # Per user, then averaged: a user with no hit has F1 0 (not NaN), and pulls the mean down.
    two = M.per_user_ranking_metrics([np.array([1, 4, 30]), np.array([50])], ks=(10,))
    assert two["f1@10"][1] == 0.0
    assert M.ranking_metrics([np.array([1, 4, 30]), np.array([50])], ks=(10,))[
        "f1@10"
    ] == pytest.approx(two["f1@10"][0] / 2)


def test_tied_targets_get_distinct_ranks():
    # Items 0 and 1 (both targets) tie above item 2: their ranks must be exactly {1, 2}, so
    # NDCG@10 is 1. Independent random ranks per target could give both rank 1 (NDCG > 1).
    scores = np.array([[2.0, 2.0, 1.0]])
    rng = np.random.default_rng(0)
    for _ in range(50):
        (r,) = M.rank_of_targets(scores, [np.array([0, 1])], rng)
        assert sorted(r.tolist()) == [1, 2]
        out = M.ranking_metrics([r], ks=(10,))
        assert out["ndcg@10"] == pytest.approx(1.0)
        assert out["precision@10"] == pytest.approx(0.2)
        assert out["f1@10"] == pytest.approx(2 * 0.2 / 1.2)


def test_ties_shared_by_targets_and_non_targets_are_random():
    # Two targets tied with two non-targets: every ordering of the four is equally likely,
    # so the targets' mean best rank is E[min of 2 of 4 positions] = 5/3, whichever ids.
    scores = np.zeros((1, 4))
    rng = np.random.default_rng(1)
    best = [M.rank_of_targets(scores, [np.array([0, 1])], rng)[0].min() for _ in range(3000)]
    assert np.mean(best) == pytest.approx(5 / 3, abs=0.05)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 3), min_size=2, max_size=30).flatmap(
        lambda s: st.tuples(
            st.just(s),
            st.sets(st.integers(0, len(s) - 1), min_size=1, max_size=len(s)),
            st.integers(0, 2**32 - 1),
        )
    )
)
def test_rank_and_metric_properties(case):
    raw, target_set, seed = case
    scores = np.array([raw], dtype=np.float64)
    targets = np.array(sorted(target_set))
    (r,) = M.rank_of_targets(scores, [targets], np.random.default_rng(seed))
    n = scores.shape[1]
    assert len(set(r.tolist())) == len(r) and r.min() >= 1 and r.max() <= n
    # A strictly higher score always ranks strictly better; ties never break this.
    for a, ra in zip(targets, r, strict=True):
        assert ra > (scores[0] > scores[0, a]).sum()
        assert ra <= (scores[0] >= scores[0, a]).sum()
    for value in M.ranking_metrics([r], ks=(1, 5, 10)).values():
        assert 0.0 <= value <= 1.0 + 1e-12


def test_paired_bootstrap_known_answers():
    a = np.linspace(0, 1, 300)
    const = S.paired_bootstrap(a + 0.1, a, n_boot=2000, seed=0)
    assert const.mean_diff == pytest.approx(0.1)
    assert const.low == pytest.approx(0.1) and const.high == pytest.approx(0.1)
    # Differences 0/1 half each over 400 users: mean 0.5, standard error 0.5 / sqrt(400) =
    # 0.025, so the 95 % percentile interval is about 0.5 +- 1.96 * 0.025.
    d = np.array([0.0, 1.0] * 200)
    iv = S.paired_bootstrap(d, np.zeros_like(d), n_boot=10_000, seed=3)
    assert iv.mean_diff == pytest.approx(0.5)
    assert iv.low == pytest.approx(0.5 - 1.96 * 0.025, abs=0.006)
    assert iv.high == pytest.approx(0.5 + 1.96 * 0.025, abs=0.006)
    assert iv.n_users == 400 and iv.n_boot == 10_000
    with pytest.raises(ValueError, match="same length"):
        S.paired_bootstrap(d, d[:-1])


def test_pairing_is_by_user_token(tmp_path):
    users, vals = np.array(["7", "3", "5"]), np.array([0.7, 0.3, 0.5])
    _, a, b = S.pair_by_user(users, vals, np.array(["5", "7", "3"]), np.array([5.0, 7.0, 3.0]))
    assert b.tolist() == [7.0, 3.0, 5.0] and a.tolist() == vals.tolist()
    with pytest.raises(ValueError, match="different users"):
        S.pair_by_user(users, vals, np.array(["7", "3", "9"]), vals)
    path = S.save_per_user(tmp_path / "u.npz", users, {"history": {"ndcg@10": vals}})
    got_users, got = S.load_per_user(path)
    assert got_users.tolist() == users.tolist()
    np.testing.assert_allclose(got["history"]["ndcg@10"], vals, rtol=1e-6)
