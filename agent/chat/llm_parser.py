"""The LLM intent parser: the remote tier fills an ``Intent`` by function calling."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from agent.chat.intent import Intent
from agent.chat.rules import RuleIntentParser
from agent.errors import redact
from agent.llm.client import chat_model
from agent.llm.sanitize import clean_text
from agent.prompts import load_prompt
from agent.settings import Settings

#: The versioned prompt (``prompts/chat_intent.txt``).
INTENT_PROMPT = "chat_intent"

log = logging.getLogger("mtrec.chat")


class LLMIntentParser:
    """Asks the remote tier for an ``Intent`` (function calling); rules on any failure.

    Args:
        settings: Settings with the remote endpoint (base URL, key, model, timeout).
        rules: The rule parser used as fallback and for category names.
    """

    def __init__(self, settings: Settings, rules: RuleIntentParser) -> None:
        llm = chat_model(settings, max_tokens=min(settings.llm_max_tokens, 400))
        self.runnable = llm.with_structured_output(Intent, method="function_calling")
        self.rules = rules
        self.failures = 0
        self.prompt = load_prompt(INTENT_PROMPT)

    def parse(self, message: str, shown: Sequence[str] = ()) -> tuple[Intent, str]:
        """The message's intent and who read it (``llm``, or ``rules`` after a failure)."""
        import openai
        from langchain_core.messages import HumanMessage, SystemMessage

        system = self.prompt.render(
            "system",
            categories=", ".join(self.rules.categories),
            shown="\n".join(f"{i}. {clean_text(t, 120)}" for i, t in enumerate(shown, 1))
            or "(nothing yet)",
        )
        try:
            out = self.runnable.invoke(
                [SystemMessage(system), HumanMessage(self.prompt.render("user", message=message))]
            )
            intent = out if isinstance(out, Intent) else Intent.model_validate(out)
        except (openai.OpenAIError, ValueError, TypeError) as e:
            # Unreachable endpoint, HTTP error, or an answer that is not an Intent (LangChain's
            # parser errors and pydantic's are ValueErrors): the rules answer instead.
            self.failures += 1
            log.info("LLM intent parser failed (%s); rules used", redact(type(e).__name__))
            return self.rules.parse(message), "rules"
        return _normalise(intent, self.rules), "llm"


def _normalise(intent: Intent, rules: RuleIntentParser) -> Intent:
    """Keep only known categories, attributes and values (case-insensitive) and sane
    positions: an LLM's intent is data to check, like any other input."""
    by_lower = {c.lower(): c for c in rules.categories}
    intent.categories = [by_lower[c.lower()] for c in intent.categories if c.lower() in by_lower]
    intent.exclude_categories = [
        by_lower[c.lower()] for c in intent.exclude_categories if c.lower() in by_lower
    ]
    if intent.query:
        intent.query = redact(clean_text(intent.query, 200)) or None
    for name in ("reject", "seen", "like", "dislike"):
        setattr(intent, name, [p for p in getattr(intent, name) if -1 <= p <= 100])
    index = rules.vocabulary.index
    for field in ("values", "exclude_values"):
        kept: dict[str, list[str]] = {}
        for attr, values in getattr(intent, field).items():
            for v in values:
                hit = index.get(" ".join(str(v).lower().split()))
                if hit is not None and hit[0].lower() == attr.lower():
                    kept.setdefault(hit[0], []).append(hit[1])
        setattr(intent, field, kept)
    numeric = {name for name, _, _ in rules.vocabulary.numbers}
    intent.ranges = {a: r for a, r in intent.ranges.items() if a in numeric}
    attrs = {a for a, _ in index.values()}
    intent.same_as = {a: p for a, p in intent.same_as.items() if a in attrs and -1 <= p <= 100}
    intent.not_same_as = {
        a: p for a, p in intent.not_same_as.items() if a in attrs and -1 <= p <= 100
    }
    return intent
