"""The remote tier: any OpenAI-compatible chat endpoint through LangChain's ChatOpenAI."""

from __future__ import annotations

import time
from typing import Any

from agent.errors import TierError
from agent.llm.client import chat_model
from agent.llm.prompting import chat_messages, prompt_version
from agent.llm.types import RerankOutput, RerankRequest, TierAnswer
from agent.schema import Tier
from agent.settings import Settings

#: Longest Retry-After we honour before giving up on this tier for the request.
MAX_RETRY_AFTER_S = 2.0


class RemoteTier:
    """Reranks with a chat model at ``settings.llm_base_url`` (OpenAI, vLLM, Ollama, llama.cpp).

    Structured output uses function calling, which llama.cpp's server supports (it rejects
    ``json_schema`` response formats).
    """

    name = Tier.REMOTE

    def __init__(self, settings: Settings) -> None:
        self.model_name = settings.llm_model
        self.prompt_id = prompt_version()
        self.runnable = chat_model(settings).with_structured_output(
            RerankOutput, method="function_calling", include_raw=True
        )

    def rerank(self, req: RerankRequest) -> TierAnswer:
        """One rerank call, with one retry on 429/5xx and one repair retry on a bad parse.

        Raises:
            TierError: the endpoint failed or never produced a parsable answer.
        """
        import openai
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        system, user = chat_messages(req)
        messages: list[Any] = [SystemMessage(system), HumanMessage(user)]
        tokens_in = tokens_out = 0
        for attempt in range(2):
            try:
                result = self._invoke_with_retry(messages)
            except (openai.APITimeoutError, openai.APIConnectionError) as e:
                raise TierError(f"remote endpoint unreachable: {type(e).__name__}") from None
            except openai.APIStatusError as e:
                raise TierError(f"remote endpoint answered HTTP {e.status_code}") from None
            except openai.OpenAIError as e:
                raise TierError(f"remote endpoint error: {type(e).__name__}") from None
            except Exception as e:
                raise TierError(f"remote answer unusable: {type(e).__name__}") from None
            raw = result.get("raw")
            usage = getattr(raw, "usage_metadata", None) or {}
            tokens_in += int(usage.get("input_tokens", 0))
            tokens_out += int(usage.get("output_tokens", 0))
            parsed = result.get("parsed")
            if isinstance(parsed, RerankOutput) and parsed.ranking:
                return TierAnswer(
                    parsed, tokens_in, tokens_out, self.model_name, ["repaired"] if attempt else []
                )
            error = result.get("parsing_error") or "no ranking in the answer"
            if attempt == 0:
                content = getattr(raw, "content", "") if raw is not None else ""
                messages += [
                    AIMessage(str(content)[:2000] or "(empty)"),
                    HumanMessage(
                        "Your answer could not be used ("
                        + str(error)[:300]
                        + "). Call the RerankOutput function with a non-empty ranking of "
                        "candidate ids."
                    ),
                ]
        raise TierError("remote answer did not parse after one repair retry")

    def _invoke_with_retry(self, messages: list[Any]) -> dict[str, Any]:
        import openai

        try:
            return self.runnable.invoke(messages)
        except openai.RateLimitError as e:
            wait = _retry_after(e)
            if wait is None or wait > MAX_RETRY_AFTER_S:
                raise
            time.sleep(wait)
        except openai.InternalServerError:
            time.sleep(0.2)
        return self.runnable.invoke(messages)


def _retry_after(e: Any) -> float | None:
    try:
        value = e.response.headers.get("retry-after")
        return float(value) if value is not None else 0.5
    except (AttributeError, ValueError):
        return None
