"""The remote tier's answer schema: made for each request, bounded, sent over real HTTP.

A server that constrains decoding to the function's schema (llama.cpp's does) can then only
write ids of this request's candidates and history, a bounded number of picks and bounded text.
The scripted endpoint records what the client sent; the success path against a real model is in
test_llm_tiers.py.
"""

from __future__ import annotations

from agent.llm.remote import EXPLANATION_CHARS, MAX_CITED, RemoteTier, answer_schema
from agent.llm.types import PromptCandidate, PromptHistory, RerankRequest
from agent.settings import Settings


def _request(k: int = 2) -> RerankRequest:
    cands = tuple(
        PromptCandidate(f"C{j}", str(j), f"T{j}", None, cats, "", 0.1, 0.5, 3.0)
        for j, cats in ((1, ("Drama",)), (2, ("Comedy", "Drama")), (3, ()))
    )
    return RerankRequest((PromptHistory("H1", "9", "Old", ("Drama",), 5.0),), cands, (), k)


def test_ids_are_enums_of_this_request_and_everything_is_bounded() -> None:
    schema = answer_schema(_request(k=2))
    ranking = schema["properties"]["ranking"]
    pick = ranking["items"]["properties"]
    assert schema["title"] == "RerankOutput" and ranking["maxItems"] == 2
    assert pick["id"]["enum"] == ["C1", "C2", "C3"]
    assert pick["cited_history"]["items"]["enum"] == ["H1"]
    assert pick["cited_history"]["maxItems"] == MAX_CITED
    assert pick["categories"]["items"]["enum"] == ["Comedy", "Drama"]
    assert pick["explanation"]["maxLength"] == EXPLANATION_CHARS
    assert set(ranking["items"]["required"]) == {"id", "explanation", "cited_history", "categories"}


def test_a_new_user_may_cite_nothing() -> None:
    req = _request()
    schema = answer_schema(RerankRequest((), req.candidates, (), 5))
    cited = schema["properties"]["ranking"]["items"]["properties"]["cited_history"]
    assert cited["maxItems"] == 0 and "enum" not in cited["items"]
    assert schema["properties"]["ranking"]["maxItems"] == 3  # never more than the candidates


def test_the_schema_travels_as_the_forced_function(fake_provider) -> None:
    fake_provider.mode, fake_provider.requests[:] = "ok", []
    tier = RemoteTier(Settings(llm_base_url=fake_provider.url, llm_api_key="x", llm_model="m"))
    answer = tier.rerank(_request())
    body = fake_provider.requests[0]
    assert body["tool_choice"]["function"]["name"] == "RerankOutput"
    sent = body["tools"][0]["function"]["parameters"]
    assert sent["properties"]["ranking"]["items"]["properties"]["id"]["enum"] == ["C1", "C2", "C3"]
    assert body["max_tokens"] == Settings().llm_max_tokens  # llama.cpp ignores the other cap
    assert [p.id for p in answer.output.ranking] == ["C3", "C2", "C1"]  # parsed back
