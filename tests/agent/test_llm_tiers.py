"""The remote tier against a real llama.cpp server, and the local tier in process."""

from __future__ import annotations

import pytest

from agent import Recommender


def test_remote_tier_through_real_llama_cpp_server(trained_workspace, llama_server):
    rec = Recommender.load(
        trained_workspace,
        llm_base_url=llama_server,
        llm_api_key="none",
        llm_model="gemma",
        llm_timeout_s=60,
        llm_max_tokens=400,
    )
    rec.chain.set_tier("local", None)
    res = rec.recommend(user_id="42", k=5, llm="remote")
    assert len(res.items) == 5
    if res.tier == "remote":
        assert res.tokens_out > 0 and res.prompt_version == "rerank@v1"
        assert all(it.explanation for it in res.items)
        # Whatever the small model wrote, every shown explanation passed the check or was
        # replaced by a template, and says so.
        assert all(it.grounded or it.explanation_source == "template" for it in res.items)
    else:  # the base model may fail to call the function: then it fell back, and says why
        assert res.fallbacks[0].tier == "remote"


def test_local_tier_in_process(trained_workspace, gguf_path):
    rec = Recommender.load(trained_workspace)
    res = rec.recommend(user_id="42", k=5, llm="local")
    assert len(res.items) == 5
    assert res.tier in ("local", "none")
    if res.tier == "local":
        assert res.tokens_out > 0 and res.prompt_version == "rerank_local@v2"
    again = rec.recommend(user_id="42", k=5, llm="local")
    assert again.cached and [i.item_id for i in again.items] == [i.item_id for i in res.items]


@pytest.mark.parametrize("language", ["French"])
def test_language_reaches_the_prompt(language):
    from agent.llm.prompting import chat_messages
    from agent.llm.types import RerankRequest

    system, _ = chat_messages(RerankRequest((), (), (), 3, None, language))
    assert "French" in system
