"""The chat sessions of one process around one loaded ``Recommender``."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from agent.chat.intent import Intent
from agent.chat.llm_parser import LLMIntentParser
from agent.chat.rules import RuleIntentParser
from agent.chat.session import ChatReply, ChatSession, SessionState, sanitise_state
from agent.schema import TierChoice

if TYPE_CHECKING:
    from agent.recommender import Recommender

#: Sessions one engine keeps in memory (least recently used dropped first).
MAX_SESSIONS = 10_000


class ChatEngine:
    """The chat sessions of one process around one loaded ``Recommender``.

    Args:
        rec: The loaded recommender (shared, read-only).
        llm: Tier choice for the reranker (default: the settings' choice).
        k: Items per answer.
        store_feedback: Write ratings of sessions with a user id to the feedback store.
        intent_llm: Parse messages with the remote tier when it is configured (rules otherwise).
        max_sessions: Sessions kept in memory (least recently used dropped first).
    """

    def __init__(
        self,
        rec: Recommender,
        llm: TierChoice | None = None,
        k: int = 5,
        store_feedback: bool = True,
        intent_llm: bool = True,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self.rec = rec
        self.llm: TierChoice = llm or rec.settings.llm
        self.k = k
        self.store_feedback = store_feedback
        self.max_sessions = max_sessions
        profile = rec.ds.profile
        self.rules = RuleIntentParser(
            rec.ds.categories,
            (it.title for it in rec.ds.items),
            {name: set(values) for name, values in rec.catalog.values.items()},
            [(a.name, a.unit, a.label) for a in profile.attributes if a.kind == "range"
             and a.name != "year"],
            (profile.item_noun, profile.items),
        )  # fmt: skip
        self._llm_parser: LLMIntentParser | None = None
        self._use_llm = (
            intent_llm
            and rec.settings.remote_configured
            and self.llm in (TierChoice.AUTO, TierChoice.REMOTE)
        )
        self._sessions: OrderedDict[str, ChatSession] = OrderedDict()
        self._lock = threading.Lock()

    def parse(self, message: str, shown: Sequence[str] = ()) -> tuple[Intent, str]:
        """The intent of a message and who read it: the remote LLM when configured (the rules
        when it fails), else the rules."""
        if not self._use_llm:
            return self.rules.parse(message), "rules"
        if self._llm_parser is None:
            self._llm_parser = LLMIntentParser(self.rec.settings, self.rules)
        return self._llm_parser.parse(message, shown)

    def session(
        self, session_id: str, user_id: str | None = None, state: SessionState | None = None
    ) -> ChatSession:
        """The session with this id: in memory, else restored from ``state``, else new.

        A different ``user_id`` than the session's starts the session afresh for that user.
        """
        with self._lock:
            s = self._sessions.get(session_id)
            if s is None:
                st = sanitise_state(state, self.rec) if state is not None else SessionState()
                if user_id is not None:
                    st.user_id = user_id
                s = ChatSession(self, session_id, st)
                self._sessions[session_id] = s
                if len(self._sessions) > self.max_sessions:
                    self._sessions.popitem(last=False)
            else:
                self._sessions.move_to_end(session_id)
                if user_id is not None and user_id != s.state.user_id:
                    s.state = SessionState(user_id=user_id)
            return s

    def chat(
        self,
        session_id: str,
        message: str,
        user_id: str | None = None,
        state: SessionState | None = None,
        k: int | None = None,
        llm: TierChoice | None = None,
    ) -> ChatReply:
        """One turn of a conversation."""
        return self.session(session_id, user_id, state).send(message, k=k, llm=llm)
