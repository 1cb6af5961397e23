"""Scoring: task scores from one user state, the fused model score and the model order."""

from __future__ import annotations

import numpy as np
import pytest

from agent.pipeline.scoring import FusionWeights, fused_model_score, score_candidates
from mtrec.data.history import History
from mtrec.model.multitask import TaskScores


def _tasks(logit, like, rating) -> TaskScores:
    a = [np.asarray(x, np.float64) for x in (logit, like, rating)]
    return TaskScores(np.arange(len(a[0])), np.exp(a[0]), a[0], a[1], a[2])


def test_fused_score_adds_weighted_like_logit_and_rating() -> None:
    ts = _tasks([1.0, 1.0], [0.5, 0.9], [3.0, 5.0])
    assert fused_model_score(ts, FusionWeights()).tolist() == [1.0, 1.0]
    fused = fused_model_score(ts, FusionWeights(like=1.0, rating=0.5))
    assert fused[0] == pytest.approx(1.0)
    assert fused[1] == pytest.approx(1.0 + np.log(9.0) + 1.0)


def test_order_follows_the_fused_score() -> None:
    items = np.array([10, 11, 12])
    s = score_candidates(items, _tasks([0.1, 2.0, 1.0], [0.5] * 3, [3.0] * 3), FusionWeights())
    assert s.order == [11, 12, 10] and s.rank() == {11: 1, 12: 2, 10: 3}
    assert s.position() == {10: 0, 11: 1, 12: 2}


def test_a_query_order_is_fused_in() -> None:
    items = np.array([10, 11, 12])
    tasks = _tasks([3.0, 2.0, 1.0], [0.5] * 3, [3.0] * 3)
    plain = score_candidates(items, tasks, FusionWeights())
    queried = score_candidates(items, tasks, FusionWeights(), np.array([0.0, 0.1, 0.9]))
    assert plain.order == [10, 11, 12]
    assert queried.rank()[12] < plain.rank()[12]  # the best text match moves up
    assert set(queried.score) == {10, 11, 12} and queried.order[-1] == 11


def test_one_user_state_serves_every_output(model, tiny) -> None:
    hist = History.from_items([0, 1, 2], [5, 4, 3])
    state = model.user_state([hist])
    items = np.array([5, 7, 9])
    from_state = model.task_scores(state, items)
    from_history = model.task_scores(hist, items)
    for field in ("engagement", "engagement_logit", "like", "rating"):
        np.testing.assert_allclose(getattr(from_state, field), getattr(from_history, field))
    np.testing.assert_allclose(model.category_interest(state), model.category_interest(hist))
    assert from_state.engagement.sum() < 1.0  # a share of the softmax over the whole catalog


def test_batched_task_scores_equal_one_user_at_a_time(model) -> None:
    hists = [History.from_items([0, 1]), History.from_items([3, 4, 5], [1, 2, 5])]
    items = np.array([[6, 7, 8], [9, 10, 11]])
    batch = model.task_scores_batch(model.user_state(hists), items)
    for b, h in enumerate(hists):
        one = model.task_scores(h, items[b])
        np.testing.assert_allclose(batch.like[b], one.like, rtol=1e-5)
        np.testing.assert_allclose(batch.engagement[b], one.engagement, rtol=1e-5)
        np.testing.assert_allclose(batch.rating[b], one.rating, rtol=1e-5)
