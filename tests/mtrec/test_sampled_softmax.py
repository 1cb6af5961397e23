"""The sampled-softmax loss computes only the sampled items' vectors, with the same result."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mtrec.config import MTRecConfig
from mtrec.data import generate_synthetic
from mtrec.data.history import user_histories
from mtrec.model.batching import make_windows
from mtrec.model.multitask import MultiTaskModel
from mtrec.model.network import rating_bucket
from mtrec.training import _Losses


def _reference(net, batch, gen, negatives: int) -> dict[str, torch.Tensor]:
    """The earlier formulation: the item tower over the whole catalog, then a gather."""
    x = batch.inputs
    state, valid = net.encode(x.items, x.events, rating_bucket(x.values))
    has_target = (batch.targets[..., 0] >= 0) & valid
    tgt = batch.targets[has_target]
    tmask = tgt >= 0
    interest = state.interest[has_target]
    vectors, biases = net.items.all_vectors(), net.items.all_biases()
    negs = torch.randint(0, net.n_items, (negatives,), generator=gen)
    cand = torch.unique(torch.cat([tgt[tmask], negs]))
    logp = torch.log_softmax(interest @ vectors[cand].T + biases[cand], dim=-1)
    picked = logp.gather(1, torch.searchsorted(cand, tgt.clamp(min=0)).clamp(max=len(cand) - 1))
    out = {"engagement": -(picked * tmask).sum() / tmask.sum().clamp(min=1)}
    v_next = vectors[tgt[:, 0]]
    like = batch.next_like[has_target]
    known = ~torch.isnan(like)
    out["like"] = F.binary_cross_entropy_with_logits(
        net.like_logit(state.like[has_target][known], v_next[known]), like[known]
    )
    return out


def test_sampled_loss_and_gradients_equal_the_full_tower_formulation():
    ds = generate_synthetic(n_items=400, n_users=60, n_interactions=3_000, seed=1)
    cfg = MTRecConfig.for_protocol("loo")
    cfg.model.dim, cfg.model.layers, cfg.model.dropout = 16, 1, 0.0
    cfg.model.seen_bias = False  # the reference formulation has no seen-item bias
    cfg.train.full_softmax_max_items, cfg.train.sampled_negatives = 100, 50
    text = np.random.default_rng(0).standard_normal((ds.n_items, 8)).astype(np.float32)
    model = MultiTaskModel.create(ds, cfg, text)
    net = model.net.train()
    w = make_windows(user_histories(ds), 50, 8, ds.n_items, 4.0)
    cats = torch.cat([torch.as_tensor(ds.category_matrix()), torch.zeros(1, len(ds.categories))])

    got = _Losses(model, cats)(w, torch.Generator().manual_seed(5))
    (got["engagement"] + got["like"]).backward()
    g_got = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    net.zero_grad()
    want = _reference(net, w, torch.Generator().manual_seed(5), 50)
    (want["engagement"] + want["like"]).backward()
    g_want = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}

    for k in ("engagement", "like"):
        torch.testing.assert_close(got[k], want[k])
    assert g_got.keys() == g_want.keys()
    for n in g_got:
        torch.testing.assert_close(g_got[n], g_want[n], rtol=1e-4, atol=1e-6)
