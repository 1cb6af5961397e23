"""The local tier's likelihood ranking and short reasons, on the real Gemma 3 270M."""

from __future__ import annotations

import pytest

from agent.llm.local import LocalTier
from agent.llm.types import PromptCandidate, PromptHistory, RerankRequest
from agent.settings import Settings


def _cand(i: int, title: str, cats: tuple[str, ...]) -> PromptCandidate:
    return PromptCandidate(f"C{i}", str(i), title, None, cats, "", 0.1, 0.5, 3.5)


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
        _cand(2, "Return of the Jedi", ("Action", "Sci-Fi")),
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


def test_reasons_only_for_the_top_items_and_cite_a_liked_history_item(tier, request_):
    ranking = tier.rerank(request_).output.ranking
    assert all(not p.explanation for p in ranking[2:])
    for p in ranking[:2]:
        if p.explanation:  # an empty completion leaves the template to the recommender
            assert p.cited_history in (["H1"], ["H2"])  # liked, never the 1-star H3
            assert p.explanation.startswith("Because you enjoyed ")


def test_deterministic_across_calls(tier, request_):
    # The second call reuses the cached prefix; it must not change the ranking.
    first = [p.id for p in tier.rerank(request_).output.ranking]
    assert [p.id for p in tier.rerank(request_).output.ranking] == first
