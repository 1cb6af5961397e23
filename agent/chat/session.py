"""One conversation: its remembered constraints, its turns and its replies."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from agent.chat.intent import Intent
from agent.chat.rules import RuleIntentParser, norm_title, title_forms
from agent.llm.sanitize import clean_text, looks_like_injection
from agent.pipeline.catalog import Catalog
from agent.schema import (
    Feedback,
    Filters,
    HistoryEntry,
    Range,
    RecommendedItem,
    RecommendResult,
    Tier,
    TierChoice,
)

if TYPE_CHECKING:
    from agent.recommender import Recommender

#: A chat message is cut to this many characters after cleaning.
MAX_MESSAGE_CHARS = 500
#: Items a session remembers as shown (oldest forgotten first).
MAX_SHOWN = 2000
#: Note on a reply to a message that reads like instructions to the system.
INJECTION_NOTE = "the message reads like instructions to the system; only its filters were used"


class SessionHost(Protocol):
    """What a session needs from the engine that holds it (``ChatEngine``)."""

    rec: Recommender
    rules: RuleIntentParser
    llm: TierChoice
    k: int
    store_feedback: bool

    def parse(self, message: str, shown: Sequence[str] = ()) -> tuple[Intent, str]: ...


class SessionState(BaseModel):
    """Everything a chat session remembers (also echoed to clients, so that any worker of a
    multi-process server can continue a conversation it has not seen)."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(default=None, max_length=200)
    query: str | None = Field(default=None, max_length=MAX_MESSAGE_CHARS)
    like_item: str | None = Field(default=None, max_length=200)
    categories: list[str] = Field(default_factory=list, max_length=100)
    exclude_categories: list[str] = Field(default_factory=list, max_length=100)
    year_min: int | None = None
    year_max: int | None = None
    values: dict[str, list[str]] = Field(default_factory=dict, max_length=50)
    exclude_values: dict[str, list[str]] = Field(default_factory=dict, max_length=50)
    ranges: dict[str, Range] = Field(default_factory=dict, max_length=50)
    shown: list[str] = Field(default_factory=list, max_length=MAX_SHOWN)
    current: list[str] = Field(default_factory=list, max_length=1000)
    rejected: list[str] = Field(default_factory=list, max_length=MAX_SHOWN)
    history: list[HistoryEntry] = Field(default_factory=list, max_length=MAX_SHOWN)
    last_ref: str | None = Field(default=None, max_length=200)
    turns: int = 0

    def filters(self) -> Filters:
        return Filters(
            categories=list(self.categories),
            exclude_categories=list(self.exclude_categories),
            year_min=self.year_min,
            year_max=self.year_max,
            values={k: list(v) for k, v in self.values.items() if v},
            exclude_values={k: list(v) for k, v in self.exclude_values.items() if v},
            ranges=dict(self.ranges),
        )


class FeedbackEvent(BaseModel):
    item_id: str
    title: str
    event: Feedback
    stored: bool = Field(description="Written to the workspace's feedback store.")


class ChatReply(BaseModel):
    """One answer of the chat: a one-line reply and the items with their explanations."""

    session_id: str
    user_id: str | None = None
    reply: str
    items: tuple[RecommendedItem, ...] = ()
    intent: Intent = Field(default_factory=Intent)
    constraints: SessionState
    feedback: list[FeedbackEvent] = Field(default_factory=list)
    tier: Tier = Tier.NONE
    parser: Literal["rules", "llm"] = "rules"
    notes: list[str] = Field(default_factory=list, description="Said to the person.")
    diagnostics: list[str] = Field(
        default_factory=list,
        description="What the grounding check replaced, and why (a details view, not the reply).",
    )
    state: SessionState


class ChatSession:
    """One conversation. Thread-safe: turns of one session run one at a time."""

    def __init__(self, engine: SessionHost, session_id: str, state: SessionState) -> None:
        self.engine = engine
        self.session_id = session_id
        self.state = state
        self.lock = threading.Lock()

    @property
    def rec(self) -> Recommender:
        return self.engine.rec

    # ---- turns --------------------------------------------------------------------------------
    def send(self, message: str, k: int | None = None, llm: TierChoice | None = None) -> ChatReply:
        """Handle one message and answer with a fresh list."""
        with self.lock:
            text = clean_text(message, MAX_MESSAGE_CHARS)
            if not looks_like_injection(text):
                intent, parser = self.engine.parse(text, self._current_titles())
                return self._turn(intent, parser, k, llm)
            # Instructions to the system ("ignore previous instructions", "rank X first",
            # "reveal the system prompt", a URL) are not requests: only the filters and
            # ratings the rules find count; the free text reaches no search and no LLM.
            intent = self.engine.rules.parse(text)
            intent.query = None
            reply = self._turn(intent, "rules", k, llm)
            reply.notes.insert(0, INJECTION_NOTE)
            return reply

    def rate(
        self,
        item_id: str,
        event: Feedback | str,
        k: int | None = None,
        llm: TierChoice | None = None,
    ) -> ChatReply:
        """Rate one item (like / dislike / seen) and answer with the updated list.

        Raises:
            KeyError: unknown item id.
            ValueError: unknown event.
        """
        event = Feedback.parse(event)
        self.rec.ds.item_index(item_id)
        with self.lock:
            acks: list[str] = []
            events = [self._record(item_id, event, acks)]
            return self._answer(Intent(), "rules", acks, [], events, k, llm, refresh=True)

    def _turn(
        self, intent: Intent, parser: str, k: int | None, llm: TierChoice | None
    ) -> ChatReply:
        st = self.state
        acks: list[str] = []
        notes: list[str] = []
        events: list[FeedbackEvent] = []
        if intent.start_over:
            self.state = st = SessionState(user_id=st.user_id, history=st.history)
            acks.append("Starting over.")
        referenced: str | None = None

        def resolve(pos: int) -> str | None:
            nonlocal referenced
            item = self._resolve(pos, notes)
            if item is not None:
                referenced = item
            return item

        for event, positions in (
            (Feedback.LIKE, intent.like),
            (Feedback.DISLIKE, intent.dislike),
            (Feedback.SEEN, intent.seen),
        ):
            for pos in positions:
                item = resolve(pos)
                if item is not None:
                    events.append(self._record(item, event, acks))
        for pos in intent.reject:
            item = resolve(pos)
            if item is not None and item not in st.rejected:
                st.rejected.append(item)
                acks.append(f"Removed {self._title(item)}.")
        anchor = None
        if intent.more_like is not None:
            anchor = resolve(intent.more_like)
        elif intent.more_like_title:
            anchor = self._title_item(intent.more_like_title)
            if anchor is None:
                notes.append(f"no title {intent.more_like_title!r} in the catalog")
        if anchor is not None:
            st.like_item, st.query = anchor, None
        if intent.query:
            st.query, st.like_item = intent.query, None
        if intent.categories:
            st.categories = list(intent.categories)
            st.exclude_categories = [c for c in st.exclude_categories if c not in intent.categories]
        for c in intent.exclude_categories:
            if c not in st.exclude_categories:
                st.exclude_categories.append(c)
            if c in st.categories:
                st.categories.remove(c)
        self._years(intent)
        self._attributes(intent, resolve, notes)
        if referenced is not None:
            st.last_ref = referenced
        refresh = intent.has_item_actions() and not intent.changes_constraints()
        return self._answer(intent, parser, acks, notes, events, k, llm, refresh=refresh)

    def _answer(
        self,
        intent: Intent,
        parser: str,
        acks: list[str],
        notes: list[str],
        events: list[FeedbackEvent],
        k: int | None,
        llm: TierChoice | None,
        refresh: bool,
    ) -> ChatReply:
        st = self.state
        k = k or self.engine.k
        rejected = set(st.rejected)
        if intent.show_again:
            exclude = rejected
        elif refresh:
            # Rating or removing items: keep the current list, minus what was removed.
            exclude = rejected | (set(st.shown) - set(st.current))
        else:
            exclude = rejected | set(st.shown)
        if st.like_item:
            exclude.add(st.like_item)
        result = self._recommend(k, sorted(exclude), llm, notes)
        ids = [it.item_id for it in result.items]
        st.current = ids
        st.shown = (st.shown + [i for i in ids if i not in set(st.shown)])[-MAX_SHOWN:]
        st.turns += 1
        if st.last_ref is not None and st.last_ref in rejected:
            st.last_ref = None
        reply = " ".join([*acks, self._summary(len(ids), refresh)])
        return ChatReply(
            session_id=self.session_id,
            user_id=st.user_id,
            reply=reply,
            items=result.items,
            intent=intent,
            constraints=st.model_copy(
                update={"shown": [], "current": [], "rejected": [], "history": []}
            ),
            feedback=events,
            tier=result.tier,
            parser=parser,
            notes=notes + list(result.notes),
            diagnostics=list(result.diagnostics),
            state=st.model_copy(deep=True),
        )

    # ---- helpers --------------------------------------------------------------------------------
    def _recommend(
        self, k: int, exclude: list[str], llm: TierChoice | None, notes: list[str]
    ) -> RecommendResult:
        st = self.state
        query = st.query
        if st.like_item:
            query = self.rec.ds.item(st.like_item).document()
        user_id: str | None = st.user_id
        history: list[HistoryEntry] | None = list(st.history)
        if user_id is not None:
            try:
                self.rec.user_history(user_id)
            except KeyError:
                notes.append(
                    f"user {user_id} has no history yet: rate items to personalise the list"
                )
                user_id = None
            else:
                history = history or None
        return self.rec.recommend(
            user_id=user_id,
            history=history if user_id is None else (history or None),
            query=query,
            k=k,
            filters=st.filters(),
            llm=llm or self.engine.llm,
            exclude=exclude,
        )

    def _record(self, item_id: str, event: Feedback, acks: list[str]) -> FeedbackEvent:
        """A rating: into the feedback store for a user id, else into the session's history."""
        st = self.state
        title = self._title(item_id)
        stored = False
        if st.user_id is not None and self.engine.store_feedback:
            self.rec.record_feedback(st.user_id, item_id, event)
            stored = True
        else:
            st.history.append(HistoryEntry(item_id=item_id, rating=event.rating, event=event.event))
        if event in (Feedback.DISLIKE, Feedback.SEEN) and item_id not in st.rejected:
            st.rejected.append(item_id)
        acks.append(
            {
                Feedback.LIKE: f"Glad you like {title}.",
                Feedback.DISLIKE: f"Noted: not {title}.",
                Feedback.SEEN: f"Noted that you've seen {title}.",
            }[event]
        )
        return FeedbackEvent(
            item_id=item_id,
            title=self.rec.ds.item(item_id).title,
            event=event,
            stored=stored,
        )

    def _resolve(self, pos: int, notes: list[str]) -> str | None:
        cur = self.state.current
        if pos == 0:
            ref = self.state.last_ref
            if ref is not None and ref not in self.state.rejected:
                return ref
            if cur:
                return cur[0]
            notes.append("nothing has been shown yet")
            return None
        if pos == -1 and cur:
            return cur[-1]
        if 1 <= pos <= len(cur):
            return cur[pos - 1]
        notes.append(f"there is no #{pos} in the last list ({len(cur)} items)")
        return None

    def _attributes(
        self, intent: Intent, resolve: Callable[[int], str | None], notes: list[str]
    ) -> None:
        """Attribute values and numeric bounds: new ones replace the old for their attribute;
        "by the same author" / "not from that publisher" read the value off a shown item."""
        st = self.state
        values = {a: list(v) for a, v in intent.values.items()}
        excluded = {a: list(v) for a, v in intent.exclude_values.items()}
        for refs, target in ((intent.same_as, values), (intent.not_same_as, excluded)):
            for attr, pos in refs.items():
                item = resolve(pos)
                value = self._value_of(item, attr) if item is not None else None
                if value is None:
                    if item is not None:
                        notes.append(f"{self._title(item)} has no {attr}")
                    continue
                target.setdefault(attr, []).append(value)
        for attr, wanted in values.items():
            st.values[attr] = list(dict.fromkeys(wanted))
            st.exclude_values[attr] = [
                v for v in st.exclude_values.get(attr, []) if v not in wanted
            ]
        for attr, unwanted in excluded.items():
            kept = st.exclude_values.setdefault(attr, [])
            kept += [v for v in unwanted if v not in kept]
            st.values[attr] = [v for v in st.values.get(attr, []) if v not in unwanted]
        for attr, bound in intent.ranges.items():
            old = st.ranges.get(attr, Range())
            lo = bound.min if bound.min is not None else old.min
            hi = bound.max if bound.max is not None else old.max
            st.ranges[attr] = Range(
                min=lo, max=hi if lo is None or hi is None or hi >= lo else None
            )

    def _value_of(self, item_id: str, attr: str) -> str | None:
        """The item's value of an exact attribute, when it has one."""
        value = self.rec.ds.item(item_id).attributes.get(attr)
        return str(value) if value not in (None, "") else None

    def _years(self, intent: Intent) -> None:
        st = self.state
        if intent.clear_years:
            st.year_min = st.year_max = None
        lo, hi = intent.year_min, intent.year_max
        if lo is not None and hi is not None:
            st.year_min, st.year_max = lo, hi
        elif lo is not None:
            st.year_min = lo
            if st.year_max is not None and st.year_max < lo:
                st.year_max = None
        elif hi is not None:
            st.year_max = hi
            if st.year_min is not None and st.year_min > hi:
                st.year_min = None

    def _title(self, item_id: str) -> str:
        it = self.rec.ds.item(item_id)
        return f"“{it.title}”"

    def _title_item(self, title: str) -> str | None:
        key = norm_title(title)
        for it in self.rec.ds.items:
            if key in title_forms(it.title):
                return it.item_id
        return None

    def _current_titles(self) -> list[str]:
        ds = self.rec.ds
        return [
            f"{ds.item(i).title} ({ds.item(i).year})" for i in self.state.current if ds.has_item(i)
        ]

    def _summary(self, n: int, refresh: bool) -> str:
        st, profile = self.state, self.rec.ds.profile
        parts: list[str] = []
        if st.categories:
            parts.append("in " + " or ".join(st.categories))
        if st.exclude_categories:
            parts.append("without " + " or ".join(st.exclude_categories))
        for attr, values in st.values.items():
            if values:
                parts.append(f"with {attr} " + " or ".join(values))
        for attr, values in st.exclude_values.items():
            if values:
                parts.append(f"not with {attr} " + " or ".join(values))
        parts += [_bounds(attr, r) for attr, r in st.ranges.items() if _bounds(attr, r)]
        if st.year_min is not None and st.year_max is not None:
            parts.append(
                f"from {st.year_min}"
                if st.year_min == st.year_max
                else f"from {st.year_min}–{st.year_max}"
            )
        elif st.year_min is not None:
            parts.append(f"from {st.year_min} on")
        elif st.year_max is not None:
            parts.append(f"up to {st.year_max}")
        if st.query:
            parts.append(f"matching “{st.query}”")
        if st.like_item:
            parts.append(f"like {self._title(st.like_item)}")
        what = (" " + ", ".join(parts)) if parts else ""
        if n == 0:
            return (
                f"Nothing left{what}; loosen a constraint, say “show them again” or “start over”."
            )
        who = f" for user {st.user_id}" if st.user_id else ""
        lead = "Updated list" if refresh else f"Here are {n} {profile.items}"
        return f"{lead}{who}{what}."


def _bounds(attr: str, r: Range) -> str:
    if r.min is not None and r.max is not None:
        return f"{attr} {r.min:g}–{r.max:g}"
    if r.max is not None:
        return f"{attr} up to {r.max:g}"
    return f"{attr} from {r.min:g}" if r.min is not None else ""


def sanitise_state(state: SessionState, rec: Recommender) -> SessionState:
    """A client-sent state with unknown item ids and categories dropped."""
    ds = rec.ds
    cats = {c.lower(): c for c in ds.categories}
    st = state.model_copy(deep=True)
    st.shown = [i for i in st.shown if ds.has_item(i)]
    st.current = [i for i in st.current if ds.has_item(i)]
    st.rejected = [i for i in st.rejected if ds.has_item(i)]
    st.history = [h for h in st.history if ds.has_item(h.item_id)]
    st.categories = [cats[c.lower()] for c in st.categories if c.lower() in cats]
    st.exclude_categories = [cats[c.lower()] for c in st.exclude_categories if c.lower() in cats]
    if st.like_item is not None and not ds.has_item(st.like_item):
        st.like_item = None
    if st.last_ref is not None and not ds.has_item(st.last_ref):
        st.last_ref = None
    if st.query:
        st.query = clean_text(st.query, MAX_MESSAGE_CHARS) or None
    if st.year_min is not None and st.year_max is not None and st.year_min > st.year_max:
        st.year_min = st.year_max = None
    catalog = rec.catalog
    st.values = {a: _known_values(catalog, a, v) for a, v in st.values.items()}
    st.exclude_values = {a: _known_values(catalog, a, v) for a, v in st.exclude_values.items()}
    st.ranges = {a: r for a, r in st.ranges.items() if a in catalog.numbers}
    return st


def _known_values(catalog: Catalog, attr: str, values: list[str]) -> list[str]:
    """The values an exact attribute really takes in the catalog (a client's state is data)."""
    have = {v.strip().lower() for v in catalog.values.get(attr, ())}
    return [v for v in values if v.strip().lower() in have]
