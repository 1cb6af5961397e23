"""Fusion of the task heads: chosen on validation only, compared on test against engagement."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mtrec.config import MTRecConfig
from mtrec.evaluation import split_dataset
from mtrec.evaluation.evaluator import evaluate_ranking, evaluate_ranking_per_user
from mtrec.model.multitask import MultiTaskModel
from mtrec.selection import (
    NEIGHBOUR_DECAY_GRID,
    NEIGHBOUR_GRID,
    fusion_comparison,
    liked_rows,
    liked_split,
    select_fusion,
)
from mtrec.training import train_multitask


@pytest.fixture(scope="module")
def fitted(synthetic):
    cfg = MTRecConfig.for_protocol("random")
    cfg.model.dim, cfg.model.layers, cfg.model.max_history = 32, 1, 30
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr = 3, 64, 5e-3
    split = split_dataset(synthetic, "random")
    model = MultiTaskModel.create(synthetic, cfg, None)
    train_multitask(model, synthetic, split.train, split)
    return model, split


def test_liked_rows_keep_rated_rows_at_or_above_the_threshold(synthetic):
    rows = np.arange(len(synthetic.value))
    liked = liked_rows(synthetic, rows, 4.0)
    values = synthetic.value[liked]
    assert len(liked) > 0
    assert (values >= 4.0).all()
    left_out = np.setdiff1d(rows, liked)
    assert not (synthetic.value[left_out] >= 4.0).any()  # NaN compares False: unrated is out


def test_liked_split_of_test_keeps_the_whole_earlier_history(synthetic):
    split = split_dataset(synthetic, "random")
    liked = liked_split(synthetic, split, 4.0, "test")
    assert sorted(liked.train) == sorted(np.concatenate([split.train, split.valid]))
    assert set(liked.test) <= set(split.test)
    with pytest.raises(ValueError, match="phase"):
        liked_split(synthetic, split, 4.0, "train")


def test_select_fusion_reads_no_test_rating(fitted, synthetic):
    model, split = fitted
    chosen = select_fusion(model, synthetic, split)
    # Invert every test rating: a selector that peeked at test targets would change its mind.
    value = synthetic.value.copy()
    value[split.test] = 6.0 - value[split.test]
    flipped = dataclasses.replace(synthetic, value=value)
    assert select_fusion(model, flipped, split) == chosen
    assert chosen["selected_on"].startswith("valid")


def test_fusion_comparison_engagement_side_is_the_model_s_own_ranking(fitted, synthetic):
    model, split = fitted
    model.config.fusion.like, model.config.fusion.rating = 1.0, 0.5
    report = fusion_comparison(model, synthetic, split, "test", seed=2020)
    own = evaluate_ranking_per_user(model, synthetic, split, "test", ks=(10,), seed=2020)
    every = report["all"]
    assert every["users"].tolist() == own.users.tolist()
    np.testing.assert_allclose(
        every["per_user"]["engagement"]["ndcg@10"], own.per_user["ndcg@10"], atol=1e-6
    )
    # The fused side is a different ranking (weights 1.0 / 0.5), scored on the same users.
    assert not np.allclose(every["per_user"]["fused"]["ndcg@10"], own.per_user["ndcg@10"])
    liked = report["liked"]
    n_liked_users = len(np.unique(synthetic.user_idx[liked_rows(synthetic, split.test, 4.0)]))
    assert liked["summary"]["users"] == n_liked_users > 0
    assert liked["summary"]["weights"] == {
        "neighbour": model.config.fusion.neighbour,
        "neighbour_decay": model.config.fusion.neighbour_decay,
        "like": 1.0,
        "rating": 0.5,
    }
    interval = liked["summary"]["paired_ndcg10_fused_minus_engagement"]
    assert interval["low"] <= interval["mean_diff"] <= interval["high"]


def test_neighbour_weight_and_decay_are_the_best_of_their_grid_on_validation(fitted, synthetic):
    model, split = fitted
    assert model.net.neighbours is not None and model.net.neighbours.fitted
    chosen = select_fusion(model, synthetic, split)
    before = model.config.fusion.model_copy()
    figures = {}  # (decay, weight) in the order the selection tries them
    try:
        model.config.fusion.neighbour = 0.0
        network = evaluate_ranking(model, synthetic, split, "valid", ks=(10,))["ndcg@10"]
        for d in NEIGHBOUR_DECAY_GRID:
            for w in NEIGHBOUR_GRID[1:]:
                model.config.fusion.neighbour, model.config.fusion.neighbour_decay = w, d
                ev = evaluate_ranking(model, synthetic, split, "valid", ks=(10,))
                figures[d, w] = ev["ndcg@10"]
    finally:
        model.config.fusion = before
    best = max([network, *figures.values()])
    # The first pair tried that reaches the best validation NDCG@10 wins (the network alone
    # if none beats it); the figure the choice reports is the model's own at that pair.
    first = next((pair for pair, v in figures.items() if v >= best - 1e-9), None)
    if network >= best - 1e-9:
        assert (chosen["neighbour"], chosen["neighbour_decay"]) == (0.0, NEIGHBOUR_DECAY_GRID[0])
    else:
        assert (chosen["neighbour_decay"], chosen["neighbour"]) == first
    assert chosen["valid"]["all_ndcg@10_engagement"] == pytest.approx(best, abs=1e-6)
    assert chosen["valid"]["all_ndcg@10_network"] == pytest.approx(network, abs=1e-6)


def test_network_side_is_the_model_without_its_neighbour_channel(fitted, synthetic):
    model, split = fitted
    before = model.config.fusion.model_copy()
    try:
        model.config.fusion.neighbour = 1.0
        report = fusion_comparison(model, synthetic, split, "test", seed=2020)
        with_channel = evaluate_ranking_per_user(model, synthetic, split, "test", ks=(10,))
        model.config.fusion.neighbour = 0.0
        network = evaluate_ranking_per_user(model, synthetic, split, "test", ks=(10,))
    finally:
        model.config.fusion = before
    sides = report["all"]["per_user"]
    np.testing.assert_allclose(sides["network"]["ndcg@10"], network.per_user["ndcg@10"], atol=1e-6)
    np.testing.assert_allclose(
        sides["engagement"]["ndcg@10"], with_channel.per_user["ndcg@10"], atol=1e-6
    )
    assert not np.allclose(network.per_user["ndcg@10"], with_channel.per_user["ndcg@10"])
    interval = report["all"]["summary"]["paired_ndcg10_engagement_minus_network"]
    assert interval["low"] <= interval["mean_diff"] <= interval["high"]


def test_the_random_protocol_tries_no_recency_decay():
    from mtrec.config import MTRecConfig

    assert MTRecConfig.for_protocol("random").train.neighbour_decays == [1.0]
    loo = MTRecConfig.for_protocol("loo").train.neighbour_decays
    assert loo[0] == 1.0 and list(loo) == list(NEIGHBOUR_DECAY_GRID)
