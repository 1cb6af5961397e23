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


#: Longest explanation the answer schema allows (characters).
EXPLANATION_CHARS = 240
#: Most history ids and categories one pick may list.
MAX_CITED = 3


def answer_schema(req: RerankRequest) -> dict[str, Any]:
    """The ``RerankOutput`` function's JSON schema for one request.

    Ids are enums of this request's short ids and every list and text is bounded, so a server
    that constrains decoding to the schema (llama.cpp's, vLLM's) can only write a ranking of
    real candidates of a bounded length: measured with SmolLM2-135M-Instruct on llama.cpp's
    server, the fixed schema let it fill the token cap with an endless ``categories`` list
    (no parse), this one gives a parsable ranking. The guard still checks every id.
    """
    cands = [c.short_id for c in req.candidates]
    hist = [h.short_id for h in req.history]
    cats = sorted({cat for c in req.candidates for cat in c.categories})

    def ids(values: list[str], description: str) -> dict[str, Any]:
        items: dict[str, Any] = {"type": "string"}
        if values:
            items["enum"] = values
        return {
            "type": "array",
            "items": items,
            "maxItems": MAX_CITED if values else 0,
            "description": description,
        }

    pick = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "enum": cands, "description": "Candidate short id."},
            "explanation": {
                "type": "string",
                "maxLength": EXPLANATION_CHARS,
                "description": "One short sentence: why it suits this person.",
            },
            "cited_history": ids(hist, "History short ids the explanation rests on."),
            "categories": ids(cats, "Categories of this candidate named in the explanation."),
        },
        "required": ["id", "explanation", "cited_history", "categories"],
    }
    return {
        "title": RerankOutput.__name__,
        "description": "The best candidates, best first, each with its explanation.",
        "type": "object",
        "properties": {
            "ranking": {
                "type": "array",
                "items": pick,
                "minItems": 1,
                "maxItems": max(1, min(req.k, len(cands))),
            }
        },
        "required": ["ranking"],
    }


class RemoteTier:
    """Reranks with a chat model at ``settings.llm_base_url`` (OpenAI, vLLM, Ollama, llama.cpp).

    Structured output uses function calling, which llama.cpp's server supports (it rejects
    ``json_schema`` response formats), with a schema made for each request (``answer_schema``).
    The candidates' order is a seeded shuffle; ``settings.llm_shuffles`` asks with several
    (``agent.llm.shuffle``).
    """

    name = Tier.REMOTE

    def __init__(self, settings: Settings) -> None:
        self.model_name = settings.llm_model
        self.prompt_id = prompt_version()
        self.chat = chat_model(settings)

    def rerank(self, req: RerankRequest) -> TierAnswer:
        """One rerank call, with one retry on 429/5xx and one repair retry on a bad parse.

        Raises:
            TierError: the endpoint failed or never produced a parsable answer.
        """
        import openai
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        system, user = chat_messages(req)
        messages: list[Any] = [SystemMessage(system), HumanMessage(user)]
        runnable = self.chat.with_structured_output(
            answer_schema(req), method="function_calling", include_raw=True
        )
        tokens_in = tokens_out = 0
        for attempt in range(2):
            try:
                result = self._invoke_with_retry(runnable, messages)
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
            parsed = _as_output(result.get("parsed"))
            if parsed is not None and parsed.ranking:
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

    def _invoke_with_retry(self, runnable: Any, messages: list[Any]) -> dict[str, Any]:
        import openai

        try:
            return runnable.invoke(messages)
        except openai.RateLimitError as e:
            wait = _retry_after(e)
            if wait is None or wait > MAX_RETRY_AFTER_S:
                raise
            time.sleep(wait)
        except openai.InternalServerError:
            time.sleep(0.2)
        return runnable.invoke(messages)


def _as_output(parsed: Any) -> RerankOutput | None:
    """The parsed arguments as a ``RerankOutput`` (None when they do not fit it)."""
    if isinstance(parsed, RerankOutput) or parsed is None:
        return parsed
    try:
        return RerankOutput.model_validate(parsed)
    except ValueError:
        return None


def _retry_after(e: Any) -> float | None:
    try:
        value = e.response.headers.get("retry-after")
        return float(value) if value is not None else 0.5
    except (AttributeError, ValueError):
        return None
