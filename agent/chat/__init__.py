"""Conversational recommendations: chat turns -> structured intents -> recommendations.

Each message becomes an ``Intent`` (``intent``): a free-text query, categories to keep or drop,
a year range, "more like the third one", "not that one", "I've seen it", "start over",
ratings. ``RuleIntentParser`` (``rules``, words in ``vocabulary``) covers the model-only tier,
so chat works with no LLM at all; when the remote tier is configured, ``LLMIntentParser``
(``llm_parser``) asks it for the same ``Intent`` with function calling and falls back to the
rules on any failure.

A ``ChatSession`` (``session``) keeps the constraints of a conversation until they change,
never repeats an item it already showed (unless asked) and turns ratings into feedback
events: for a user id they go to the workspace's feedback store, so the very next request
reflects them; for an anonymous session they stay in the session's own history.
``ChatEngine`` (``engine``) holds the sessions of one process; the terminal chat
(``terminal``) and the HTTP service use it.
"""

from agent.chat.engine import MAX_SESSIONS, ChatEngine
from agent.chat.intent import Intent
from agent.chat.llm_parser import LLMIntentParser
from agent.chat.rules import RuleIntentParser
from agent.chat.session import (
    INJECTION_NOTE,
    MAX_MESSAGE_CHARS,
    MAX_SHOWN,
    ChatReply,
    ChatSession,
    FeedbackEvent,
    SessionState,
)
from agent.chat.terminal import TERMINAL_HELP, print_reply, run_terminal_chat

__all__ = [
    "INJECTION_NOTE",
    "MAX_MESSAGE_CHARS",
    "MAX_SESSIONS",
    "MAX_SHOWN",
    "TERMINAL_HELP",
    "ChatEngine",
    "ChatReply",
    "ChatSession",
    "FeedbackEvent",
    "Intent",
    "LLMIntentParser",
    "RuleIntentParser",
    "SessionState",
    "print_reply",
    "run_terminal_chat",
]
