"""The multi-task model recovers planted structure, round-trips, and handles bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtrec.config import MTRecConfig
from mtrec.data.history import History, user_histories
from mtrec.evaluation import evaluate_ranking, split_dataset
from mtrec.model.baselines import BPRModel, ContentModel, ItemKNNModel, PopularityModel
from mtrec.model.multitask import MultiTaskModel
from mtrec.training import train_multitask


def small_config(**train: object) -> MTRecConfig:
    cfg = MTRecConfig.for_protocol("random")
    cfg.model.dim = 32
    cfg.model.layers = 1
    cfg.model.max_history = 30
    cfg.train.epochs = 6
    cfg.train.batch_size = 64
    cfg.train.lr = 5e-3
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


@pytest.fixture(scope="module")
def trained(synthetic):
    split = split_dataset(synthetic, "random")
    model = MultiTaskModel.create(synthetic, small_config(), None)
    result = train_multitask(model, synthetic, split.train, split)
    return model, split, result


def test_category_interest_recovers_planted_favourite(trained, synthetic):
    model, split, _ = trained
    hist = user_histories(synthetic, split.train)
    hits = 0
    for u in range(synthetic.n_users):
        dist = model.category_interest(hist[u])
        assert dist.shape == (len(synthetic.categories),)
        assert dist.sum() == pytest.approx(1.0, abs=1e-4)
        favourite = synthetic.users[u].attributes["favorite"]
        hits += synthetic.categories[int(dist.argmax())] == favourite
    # Chance is 1/6; the planted favourite is also the history's majority category for ~82 %
    # of users, which bounds what any model can recover from these short histories.
    assert hits / synthetic.n_users > 0.55


def test_beats_popularity_by_a_clear_margin(trained, synthetic):
    model, split, _ = trained
    ours = evaluate_ranking(model, synthetic, split, "test", beyond_accuracy=False)
    pop = evaluate_ranking(
        PopularityModel().fit(synthetic, split.train),
        synthetic,
        split,
        "test",
        beyond_accuracy=False,
    )
    assert ours["recall@10"] > 1.3 * pop["recall@10"]


def test_loss_falls_and_early_stopping_keeps_best(trained):
    _, _, result = trained
    losses = [e.losses["engagement"] for e in result.epochs]
    assert losses[-1] < losses[0]
    assert result.best_ndcg10 == max(e.valid["ndcg@10"] for e in result.epochs)


def test_checkpoint_round_trip_gives_identical_scores(trained, synthetic, tmp_path):
    model, split, _ = trained
    model.save(tmp_path / "ck", {"note": "test"})
    loaded = MultiTaskModel.load(tmp_path / "ck")
    hist = user_histories(synthetic, split.train)[:8]
    np.testing.assert_array_equal(model.score(np.arange(8), hist), loaded.score(np.arange(8), hist))
    assert loaded.metrics["note"] == "test"
    # The item-neighbour memory and its validation-chosen weight travel with the weights.
    assert loaded.net.neighbours is not None and loaded.net.neighbours.fitted
    assert torch.equal(loaded.net.neighbours.index, model.net.neighbours.index)
    assert loaded.config.fusion == model.config.fusion


def test_interrupted_save_leaves_last_good_checkpoint(trained, tmp_path):
    model, _, _ = trained
    model.save(tmp_path)
    # A crash mid-save leaves a partial directory behind; LATEST still names the good one.
    (tmp_path / ".partial-000002").mkdir()
    (tmp_path / ".partial-000002" / "model.safetensors").write_bytes(b"garbage")
    assert MultiTaskModel.load(tmp_path).n_items == model.n_items


def test_seeded_training_is_reproducible(synthetic):
    split = split_dataset(synthetic, "random")
    scores = []
    for _ in range(2):
        # One fixed thread: a thread count that changed mid-run could change the sums' order.
        m = MultiTaskModel.create(synthetic, small_config(epochs=1, threads=1), None)
        train_multitask(m, synthetic, split.train, None)
        scores.append(m.score(np.arange(4), user_histories(synthetic, split.train)[:4]))
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5, atol=1e-5)


def test_inference_api(trained, synthetic):
    model, split, _ = trained
    h = user_histories(synthetic, split.train)[3]
    items, scores = model.recommend(h, k=5)
    assert len(items) == 5 and not set(items) & set(h.items)
    assert (np.diff(scores) <= 0).all()
    ts = model.task_scores(h, items)
    assert ts.like.shape == (5,) and ((ts.like >= 0) & (ts.like <= 1)).all()
    assert ((ts.rating > 0) & (ts.rating < 7)).all()
    assert model.interest_vector(h).shape == (model.config.model.dim,)
    batch_items, _ = model.recommend_batch(user_histories(synthetic, split.train)[:3], k=4)
    assert batch_items.shape == (3, 4)


def test_unseen_user_from_raw_history(trained, synthetic):
    model, _, _ = trained
    space = [i for i, it in enumerate(synthetic.items) if it.categories[0] == "Space"][:10]
    items, _ = model.recommend(History.from_items(space, values=[5.0] * len(space)), k=10)
    share = np.mean([synthetic.items[i].categories[0] == "Space" for i in items])
    assert share >= 0.5


def test_bad_input(trained, synthetic):
    model, _, _ = trained
    empty = History.from_items([])
    items, _ = model.recommend(empty, k=3)  # cold start: a defined answer
    assert len(items) == 3
    with pytest.raises(ValueError, match="k must be a positive integer"):
        model.recommend(empty, k=0)
    items, _ = model.recommend(empty, k=10 * synthetic.n_items)  # capped at the catalog
    assert len(items) == synthetic.n_items
    with pytest.raises(ValueError, match="candidate ids"):
        model.task_scores(empty, np.array([synthetic.n_items + 5]))
    with pytest.raises(KeyError, match="unknown item id"):
        synthetic.item_index("no-such-item")


@pytest.mark.parametrize("mixture", ["ple", "shared"])
def test_mixture_options_train(synthetic, mixture):
    cfg = small_config(epochs=1)
    cfg.model.mixture = mixture
    cfg.model.encoder = "gru"
    cfg.train.uncertainty_weighting = True
    split = split_dataset(synthetic, "loo")
    m = MultiTaskModel.create(synthetic, cfg, None)
    res = train_multitask(m, synthetic, split.train, split)
    assert np.isfinite(res.epochs[0].losses["engagement"])


def test_text_embeddings_feed_the_item_tower(synthetic):
    text = np.random.default_rng(0).normal(size=(synthetic.n_items, 16)).astype(np.float32)
    m = MultiTaskModel.create(synthetic, small_config(), text)
    assert m.config.model.text_dim == 16
    assert m.net.items.text_proj is not None
    with pytest.raises(ValueError, match="rows for"):
        MultiTaskModel.create(synthetic, small_config(), text[:5])


def test_frozen_model_scores_identically_without_its_text_buffer(synthetic, tmp_path):
    text = np.random.default_rng(0).normal(size=(synthetic.n_items, 16)).astype(np.float32)
    m = MultiTaskModel.create(synthetic, small_config(epochs=1), text)
    split = split_dataset(synthetic, "random")
    train_multitask(m, synthetic, split.train, split)
    hist = user_histories(synthetic, split.train)[:8]
    items = np.arange(0, synthetic.n_items, 7)
    before = (m.score(np.arange(8), hist), m.task_scores(hist[0], items), m.item_vectors())
    m.freeze()
    assert "text" not in dict(m.net.named_buffers()) and m.frozen
    after = (m.score(np.arange(8), hist), m.task_scores(hist[0], items), m.item_vectors())
    np.testing.assert_allclose(after[0], before[0], rtol=1e-5, atol=1e-5)
    for field in ("engagement", "like", "rating"):
        np.testing.assert_allclose(getattr(after[1], field), getattr(before[1], field), atol=1e-5)
    np.testing.assert_allclose(after[2], before[2], atol=1e-6)
    with pytest.raises(RuntimeError, match="frozen"):
        m.save(tmp_path / "ck")


def test_sampled_softmax_path(synthetic):
    cfg = small_config(epochs=1, full_softmax_max_items=10, sampled_negatives=50)
    split = split_dataset(synthetic, "loo")
    m = MultiTaskModel.create(synthetic, cfg, None)
    res = train_multitask(m, synthetic, split.train, None)
    assert np.isfinite(res.epochs[0].losses["engagement"])


@pytest.mark.parametrize("cls", [PopularityModel, ItemKNNModel, BPRModel])
def test_baselines_share_the_interface(synthetic, cls):
    split = split_dataset(synthetic, "loo")
    model = cls(epochs=2) if cls is BPRModel else cls()
    model.fit(synthetic, split.train)
    hist = user_histories(synthetic, split.train)
    scores = model.score(np.arange(3), hist[:3])
    assert scores.shape == (3, synthetic.n_items)
    items, _ = model.recommend(hist[0], k=5, user=0)
    assert len(items) == 5 and not set(items) & set(hist[0].items)
    if model.item_vectors() is not None:
        near, _ = model.similar_items(0, k=3)
        assert 0 not in near


def test_content_baseline(synthetic):
    cats = synthetic.category_matrix()
    model = ContentModel(cats + 0.01).fit(synthetic, np.arange(10))
    h = History.from_items([0, 1])
    assert model.score(np.array([-1]), [h]).shape == (1, synthetic.n_items)
    torch.manual_seed(0)
