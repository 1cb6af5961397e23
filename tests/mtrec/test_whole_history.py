"""The whole-history channel, set-completion samples, the seen-item bias and the fused score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtrec.config import MTRecConfig
from mtrec.data import generate_synthetic
from mtrec.data.history import History, user_histories
from mtrec.data.schema import Dataset
from mtrec.evaluation import split_dataset
from mtrec.model.batching import make_set_samples, make_windows, pad_histories
from mtrec.model.multitask import MultiTaskModel
from mtrec.training import _Losses, _supervised, train_multitask


def _config(**model: object) -> MTRecConfig:
    cfg = MTRecConfig.for_protocol("random")
    cfg.model.dim, cfg.model.layers, cfg.model.dropout = 16, 1, 0.0
    cfg.model.max_history = 5
    for k, v in model.items():
        setattr(cfg.model, k, v)
    return cfg


@pytest.fixture(scope="module")
def ds():
    return generate_synthetic(n_items=60, n_users=20, n_interactions=600, seed=4)


def _history(items: list[int]) -> History:
    return History.from_items(items, [4.0] * len(items))


def test_padding_puts_everything_before_the_window_in_the_earlier_bag():
    hists = [_history(list(range(12))), _history([3, 4]), _history([])]
    p = pad_histories(hists, 5, pad_item=99)
    assert p.items[0].tolist() == [7, 8, 9, 10, 11]
    assert p.items[1].tolist() == [99, 99, 99, 3, 4]
    bag = p.earlier
    assert bag.offsets.tolist() == [0, 7, 7, 7]
    assert bag.items.tolist() == list(range(7))
    # Window + bag = the whole history, for every user.
    for r, h in enumerate(hists):
        seen = bag.items[bag.offsets[r] : bag.offsets[r + 1]].tolist()
        seen += [i for i in p.items[r].tolist() if i != 99]
        assert seen == h.items.tolist()


@pytest.mark.parametrize("whole", [True, False])
def test_the_whole_history_channel_reads_every_history_item(ds, whole):
    """An item far outside the sequence window changes the user state exactly when the
    whole-history channel is on."""
    model = MultiTaskModel.create(ds, _config(whole_history=whole), None)
    base = list(range(10, 22))  # 12 items, the window holds the last 5
    for old in (0, 3, 6):  # positions before the window
        changed = base.copy()
        changed[old] = 50
        a = model.user_state([_history(base)]).interest
        b = model.user_state([_history(changed)]).interest
        assert (not torch.allclose(a, b)) is whole


def test_the_whole_history_channel_averages_window_and_earlier_items_alike(ds):
    """What the set channel reads after the last position is the mean over the whole history,
    however the history is split between the window and the earlier bag."""
    model = MultiTaskModel.create(ds, _config(), None)
    enc = model.net.encoder
    seen: list[torch.Tensor] = []
    hook = enc.set_mlp.register_forward_hook(lambda m, inp, out: seen.append(inp[0][:, -1]))
    h = History.from_items(list(range(5, 25)), [float(1 + i % 5) for i in range(20)])
    model.user_state([h])
    hook.remove()
    from mtrec.model.network import rating_bucket

    direct = enc.set_inputs(
        model.net.items(torch.as_tensor(h.items)), rating_bucket(torch.as_tensor(h.values))
    ).mean(0)
    torch.testing.assert_close(seen[0][0], direct, rtol=1e-5, atol=1e-5)


def test_set_samples_split_each_history_into_kept_input_and_held_out_targets():
    rng = np.random.default_rng(0)
    hists = [_history(list(range(u * 100, u * 100 + n))) for u, n in enumerate([1, 2, 9, 40])]
    s = make_set_samples(hists, 5, 999, 4.0, rng, keep=0.5, max_targets=1000)
    assert len(s) == 3  # the one-item history gives no sample
    for r, h in enumerate(hists[1:]):
        x = s.inputs
        bag = x.earlier.items[x.earlier.offsets[r] : x.earlier.offsets[r + 1]].tolist()
        kept = bag + [i for i in x.items[r].tolist() if i != 999]
        held = [i for i in s.targets[r].tolist() if i >= 0]
        assert kept and held
        assert kept == sorted(kept)  # kept items stay in time order
        assert sorted(kept + held) == h.items.tolist()  # together: the whole history, once
        assert s.target_values[r, : len(held)].tolist() == [4.0] * len(held)
        assert (s.target_likes[r, : len(held)] == 1).all()


def test_seen_matrix_marks_exactly_what_each_position_has_read(ds):
    model = MultiTaskModel.create(ds, _config(max_history=4), None)
    hists = [_history([1, 2, 3, 4, 5, 6, 7, 8]), _history([9, 10, 11])]
    w = make_windows(hists, 4, 2, ds.n_items, 4.0, earlier=True)
    losses = _Losses(model, torch.zeros(ds.n_items + 1, 0))
    valid = w.inputs.items != ds.n_items
    sup = _supervised(w, valid)
    seen = losses._seen(w, sup, lambda i: i, ds.n_items)
    bag = w.inputs.earlier
    for p in range(len(sup.rows)):
        r, c = int(sup.rows[p]), int(sup.cols[p])
        read = [i for i in w.inputs.items[r, : c + 1].tolist() if i != ds.n_items]
        read += bag.items[bag.offsets[r] : bag.offsets[r + 1]].tolist()
        assert set(torch.nonzero(seen[p]).flatten().tolist()) == set(read)


def _first_occurrences(ds: Dataset) -> Dataset:
    """The dataset with each (user, item) pair's repeats removed."""
    _, first = np.unique(ds.user_idx * ds.n_items + ds.item_idx, return_index=True)
    keep = np.sort(first)
    return Dataset(
        ds.name,
        ds.items,
        ds.users,
        ds.user_idx[keep],
        ds.item_idx[keep],
        ds.event[keep],
        ds.value[keep],
        ds.timestamp[keep],
    )


@pytest.mark.parametrize("repeats", [True, False])
def test_seen_bias_is_learned_from_whether_users_repeat_items(ds, repeats):
    """The synthetic users revisit items (605 interactions, 235 distinct pairs): the bias on
    history items is learned positive there, negative once repeats are removed."""
    data = ds if repeats else _first_occurrences(ds)
    split = split_dataset(data, "loo")
    cfg = _config(max_history=20)
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr = 4, 32, 5e-3
    model = MultiTaskModel.create(data, cfg, None)
    train_multitask(model, data, split.train, None)
    bias = float(model.net.seen_bias.detach())
    assert (bias > 0) is repeats
    h = user_histories(data, split.train)[0]
    state = model.user_state([h])
    logits = model.engagement_logits(state)[0]
    plain = state.interest[0] @ model.item_vectors_tensor().T + model.net.items.all_biases()
    diff = (logits - plain).detach().numpy()
    assert np.allclose(diff[h.items], bias)
    assert np.allclose(np.delete(diff, h.items), 0.0)


def test_sampled_softmax_seen_bias_equals_the_full_softmax_on_the_same_candidates(ds):
    """With every item a candidate, the sampled path's loss equals the full one, seen-item
    bias included."""
    cfg = _config(max_history=6)
    cfg.train.sampled_negatives = 5000  # every item is sampled
    model = MultiTaskModel.create(ds, cfg, None)
    with torch.no_grad():
        model.net.seen_bias.fill_(-2.0)
    hist = user_histories(ds)
    w = make_windows(hist, 6, 3, ds.n_items, 4.0, earlier=True)
    batch = w.take(torch.arange(16))
    cats = torch.zeros(ds.n_items + 1, 0)
    full = _Losses(model, cats)(batch, torch.Generator().manual_seed(1))
    model.config.train.full_softmax_max_items = 10
    sampled = _Losses(model, cats)(batch, torch.Generator().manual_seed(1))
    torch.testing.assert_close(full["engagement"], sampled["engagement"])


def test_fused_logits_match_the_agents_formula(ds):
    model = MultiTaskModel.create(ds, _config(), None)
    h = _history([1, 2, 3, 4])
    state = model.user_state([h])
    items = np.arange(ds.n_items)
    ts = model.task_scores(state, items)
    fused = model.fused_logits(state, like=0.7, rating=0.3)[0].numpy()
    like = np.clip(ts.like, 1e-6, 1 - 1e-6)
    want = ts.engagement_logit + 0.7 * np.log(like / (1 - like)) + 0.3 * (ts.rating - 3.0)
    np.testing.assert_allclose(fused, want, rtol=1e-4, atol=1e-4)
    # The config's weights are the default, and zero weights give the engagement logits.
    model.config.fusion.like = model.config.fusion.rating = 0.0
    torch.testing.assert_close(model.fused_logits(state), model.engagement_logits(state))
