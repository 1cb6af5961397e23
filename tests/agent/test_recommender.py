"""The Python API on real ml-100k with the model-only tier."""

from __future__ import annotations

import pytest

from agent import Recommender
from agent.schema import Filters, RecommendResult


@pytest.fixture(scope="module")
def rec(trained_workspace):
    return Recommender.load(trained_workspace, llm="none")


def test_known_user(rec):
    res = rec.recommend(user_id="42", k=10, llm="none")
    assert isinstance(res, RecommendResult)
    assert res.tier == "none" and len(res.items) == 10
    seen = {rec.ds.items[i].item_id for i in rec.user_history("42").items}
    assert not seen & {it.item_id for it in res.items}
    assert all(
        it.explanation and it.grounded and it.explanation_source == "template" for it in res.items
    )
    assert all(0 <= it.task_scores.like <= 1 for it in res.items)
    assert abs(sum(res.category_interest.values()) - 1) < 1e-3
    assert set(res.latency_ms) >= {"candidates", "scores", "llm", "explain", "total"}


def test_raw_history_for_a_new_user(rec):
    res = rec.recommend(history=["1", "71", "95"], k=5, llm="none")  # Toy Story, Lion King, Aladdin
    assert len(res.items) == 5 and res.user_id is None and res.history_size == 3
    assert {"1", "71", "95"}.isdisjoint(it.item_id for it in res.items)


def test_free_text_query_steers_the_list(rec):
    res = rec.recommend(user_id="42", query="space science fiction with aliens", k=10, llm="none")
    scifi = [it for it in res.items if "Sci-Fi" in it.categories]
    assert len(scifi) >= 3
    assert any("query" in it.source for it in res.items)


def test_filters(rec):
    res = rec.recommend(
        user_id="42", k=5, llm="none", filters=Filters(categories=["Comedy"], year_min=1990)
    )
    assert all("Comedy" in it.categories and it.year >= 1990 for it in res.items)
    none = rec.recommend(
        user_id="42",
        k=5,
        llm="none",
        filters={"categories": ["Documentary"], "year_min": 1900, "year_max": 1901},
    )
    assert none.items == () and "no item matches" in none.notes[0]


def test_cache_answers_identical_requests(rec):
    a = rec.recommend(user_id="7", k=5, llm="none")
    b = rec.recommend(user_id="7", k=5, llm="none")
    assert not a.cached and b.cached
    assert [i.item_id for i in a.items] == [i.item_id for i in b.items]


def test_similar_and_explain(rec):
    sims = rec.similar("1", k=5)
    assert len(sims) == 5 and all(s["item_id"] != "1" for s in sims)
    item = rec.explain("42", "50")
    assert item.item_id == "50" and item.explanation and item.grounded


def test_bad_input(rec):
    with pytest.raises(KeyError, match="unknown user id"):
        rec.recommend(user_id="no-such-user")
    with pytest.raises(KeyError, match="unknown item id 'nope'"):
        rec.recommend(history=["1", "nope"])
    with pytest.raises(ValueError):
        rec.recommend(user_id="42", k=0)
    with pytest.raises(ValueError, match="give a user_id or a history"):
        rec.recommend()
    with pytest.raises(ValueError, match="unknown categories"):
        rec.recommend(user_id="42", filters={"categories": ["Polka"]})
    big = rec.recommend(user_id="42", k=1000, llm="none", explain=False)
    assert 0 < len(big.items) <= 1000
    cold = rec.recommend(history=[], k=5, llm="none")
    assert len(cold.items) == 5 and all("popular" in it.explanation for it in cold.items)


def test_explanations_never_point_to_a_disliked_item(rec):
    from agent.schema import HistoryEntry

    history = [
        HistoryEntry(item_id="1", rating=5),  # Toy Story
        HistoryEntry(item_id="71", event="dislike"),  # The Lion King
        HistoryEntry(item_id="95", rating=1),  # Aladdin
    ]
    res = rec.recommend(history=history, k=10, llm="none")
    for it in res.items:
        assert set(it.evidence.history_items) <= {"1"}, it.evidence
        assert "Lion King" not in it.explanation and "Aladdin" not in it.explanation


def test_result_carries_the_model_order_for_replay(rec):
    res = rec.recommend(user_id="42", k=5, llm="none")
    assert len(res.model_order) == max(rec.settings.candidates, 5)
    assert list(res.model_order[:5]) == [it.item_id for it in res.items]
    assert res.llm_order == ()  # no LLM tier answered
