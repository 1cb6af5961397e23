"""The one builder of OpenAI-compatible chat clients (the remote tier and the chat's LLM parser).

Any OpenAI-compatible server works: OpenAI, vLLM, Ollama, llama.cpp's server. Retries are the
caller's (bounded, honouring Retry-After), so the SDK's own are off. ``max_tokens`` travels in
``extra_body`` because some servers (llama.cpp's) ignore ``max_completion_tokens``, which is
what LangChain sends.
"""

from __future__ import annotations

from typing import Any

from agent.settings import Settings


def chat_model(settings: Settings, max_tokens: int | None = None) -> Any:
    """A LangChain ``ChatOpenAI`` for the configured remote endpoint (temperature 0).

    Args:
        settings: Base URL, API key (never logged), model name and timeout.
        max_tokens: Generation cap (default ``settings.llm_max_tokens``).
    """
    from langchain_openai import ChatOpenAI

    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else "not-needed"
    return ChatOpenAI(
        model=settings.llm_model,
        base_url=settings.llm_base_url,
        api_key=key,
        timeout=settings.llm_timeout_s,
        max_retries=0,
        temperature=0,
        extra_body={"max_tokens": max_tokens or settings.llm_max_tokens},
    )
