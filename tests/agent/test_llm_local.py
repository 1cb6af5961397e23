"""The local tier's likelihood ranking and short reasons, on the real Gemma 3 270M."""

from __future__ import annotations

import pytest

from agent.llm.local import LocalTier
from agent.llm.types import PromptCandidate, PromptHistory, RerankRequest
from agent.settings import Settings


def _cand(
    i: int, title: str, cats: tuple[str, ...], support: tuple[str, ...] = ()
) -> PromptCandidate:
    return PromptCandidate(f"C{i}", str(i), title, None, cats, "", 0.1, 0.5, 3.5, support=support)


@pytest.fixture(scope="module")
def tier(gguf_path: str) -> LocalTier:
    return LocalTier(Settings(local_model_path=gguf_path, local_explain_top=2))


@pytest.fixture(scope="module")
def request_() -> RerankRequest:
    history = (
        PromptHistory("H1", "50", "Star Wars", ("Action", "Sci-Fi"), 5.0),
        PromptHistory("H2", "172", "The Empire Strikes Back", ("Action", "Sci-Fi"), 5.0),
        PromptHistory("H3", "99", "Some Dull Film", ("Drama",), 1.0),
    )
    candidates = (
        _cand(1, "Zqxv Blorpt Wvvk", ("Drama",)),
        # The recommender measured that removing H2 lowers this candidate's model score.
        _cand(2, "Return of the Jedi", ("Action", "Sci-Fi"), support=("H2",)),
        _cand(3, "Kkrrth Pfft Quonx", ("Horror",)),
    )
    return RerankRequest(history, candidates, (("Action", 0.6),), k=3)


def test_ranks_every_candidate_once_and_prefers_a_likely_title(tier, request_):
    answer = tier.rerank(request_)
    ids = [p.id for p in answer.output.ranking]
    assert sorted(ids) == ["C1", "C2", "C3"]
    # The sequel of the liked films is far more likely than a string of nonsense.
    assert ids[0] == "C2"
    assert answer.tokens_in > 0 and answer.tokens_out > 0 and answer.model.endswith(".gguf")


def test_reasons_only_for_the_top_items_and_cite_the_measured_support(tier, request_):
    ranking = tier.rerank(request_).output.ranking
    assert all(not p.explanation for p in ranking[2:])
    top = {p.id: p for p in ranking[:2]}
    assert "C2" in top  # ranked first by the test above
    # The one top item with a supporting history item gets a reason that cites exactly it.
    assert top["C2"].explanation.startswith("Because you enjoyed The Empire Strikes Back")
    assert len(top["C2"].explanation) > len("Because you enjoyed The Empire Strikes Back: .")
    assert top["C2"].cited_history == ["H2"]
    # A top item without support gets no generated reason (the recommender's template).
    assert all(not p.explanation and not p.cited_history for i, p in top.items() if i != "C2")


def test_the_candidates_order_does_not_change_the_ranking(tier, request_):
    """Each title is scored after the same prefix: no position bias to shuffle away."""
    from dataclasses import replace

    first = [p.id for p in tier.rerank(request_).output.ranking]
    flipped = replace(request_, candidates=tuple(reversed(request_.candidates)))
    assert [p.id for p in tier.rerank(flipped).output.ranking] == first


def test_deterministic_across_calls(tier, request_):
    # The second call reuses the cached prefix; it must not change the ranking.
    first = [p.id for p in tier.rerank(request_).output.ranking]
    assert [p.id for p in tier.rerank(request_).output.ranking] == first
