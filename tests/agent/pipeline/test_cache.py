"""The answer cache: immutable results shared, marked as cached, least recently used dropped."""

from __future__ import annotations

import pydantic
import pytest

from agent.pipeline.cache import AnswerCache, cache_key
from agent.schema import RecommendRequest, RecommendResult, Tier
from mtrec.data.history import History


def _result(note: str) -> RecommendResult:
    return RecommendResult(items=(), tier=Tier.NONE, notes=(note,))


def test_a_hit_is_the_stored_answer_marked_cached() -> None:
    cache = AnswerCache()
    stored = _result("a")
    cache.put("k", stored)
    hit = cache.get("k", latency_ms=0.2)
    assert hit is not None and hit.cached and hit.latency_ms == {"total": 0.2}
    assert hit.notes is stored.notes and not stored.cached  # shared, not copied; not altered
    assert cache.get("other", 0.1) is None


def test_results_cannot_be_changed_by_a_caller() -> None:
    r = _result("a")
    with pytest.raises(pydantic.ValidationError):
        r.tier = Tier.LOCAL  # type: ignore[misc]
    with pytest.raises(AttributeError):
        r.notes.append("b")  # type: ignore[attr-defined]


def test_the_least_recently_used_answer_goes_first() -> None:
    cache = AnswerCache(size=2)
    cache.put("a", _result("a"))
    cache.put("b", _result("b"))
    cache.get("a", 0.0)
    cache.put("c", _result("c"))
    assert cache.get("b", 0.0) is None and cache.get("a", 0.0) is not None and len(cache) == 2


def test_the_key_covers_history_request_and_context() -> None:
    req = RecommendRequest(user_id="1", k=5)
    h1 = History.from_items([1, 2], [5, 4])
    h2 = History.from_items([1, 2], [5, 3])
    base = cache_key(req, h1, None, model="m1")
    assert base == cache_key(req, h1, None, model="m1")
    assert base != cache_key(req, h2, None, model="m1")
    assert base != cache_key(req.model_copy(update={"k": 6}), h1, None, model="m1")
    assert base != cache_key(req, h1, "space", model="m1")
    assert base != cache_key(req, h1, None, model="m2")
