"""Request and response models shared by the Python API, the CLI, chat and HTTP.

Tier and feedback-event names are enums here and nowhere else; the CLI's choices, the HTTP
schema and every comparison in the code use them. A ``RecommendResult`` is immutable (frozen,
sequences are tuples): the answer cache hands the same object to every caller of one request.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mtrec.data.schema import EventType


class Tier(StrEnum):
    """Who ranked and explained a list: an LLM tier, or the model alone (``none``)."""

    REMOTE = "remote"
    LOCAL = "local"
    NONE = "none"


#: LLM tiers in fallback order (``none`` always answers after them).
LLM_TIERS: tuple[Tier, ...] = (Tier.REMOTE, Tier.LOCAL)


class TierChoice(StrEnum):
    """The tier a caller asks for: ``auto`` starts at the top of the chain."""

    AUTO = "auto"
    REMOTE = "remote"
    LOCAL = "local"
    NONE = "none"


def tier_choice(value: str, option: str = "--llm") -> TierChoice:
    """Parse a tier name, with a one-line error naming the option and the choices.

    Raises:
        ValueError: not a tier name.
    """
    try:
        return TierChoice(value)
    except ValueError:
        choices = ", ".join(t.value for t in TierChoice)
        raise ValueError(f"{option} must be one of {choices}, got {value!r}") from None


class Feedback(StrEnum):
    """What a person can say about an item in chat, on the web page or over HTTP."""

    LIKE = "like"
    DISLIKE = "dislike"
    SEEN = "seen"

    @classmethod
    def parse(cls, value: str) -> Feedback:
        """The event named ``value``.

        Raises:
            ValueError: not an event name (the message lists them).
        """
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(e.value for e in cls)
            raise ValueError(f"event must be one of {choices}, got {value!r}") from None

    @property
    def rating(self) -> float | None:
        """The rating the user encoder sees for this event (None: no rating, just an event)."""
        return _FEEDBACK_RATING[self]

    @property
    def event(self) -> EventType:
        """The dataset event type this feedback is stored as."""
        return EventType(self.value)


_FEEDBACK_RATING: dict[Feedback, float | None] = {
    Feedback.LIKE: 5.0,
    Feedback.DISLIKE: 1.0,
    Feedback.SEEN: None,
}


def feedback_rating_value(event: Feedback) -> float:
    """The rating as a float array value (NaN where there is none)."""
    r = event.rating
    return math.nan if r is None else r


class Filters(BaseModel):
    """Metadata restrictions on recommended items."""

    model_config = ConfigDict(extra="forbid")

    categories: list[str] = Field(default_factory=list, description="Keep items with any of these.")
    exclude_categories: list[str] = Field(default_factory=list, description="Drop these.")
    year_min: int | None = None
    year_max: int | None = None

    @model_validator(mode="after")
    def _years(self) -> Filters:
        if (
            self.year_min is not None
            and self.year_max is not None
            and self.year_min > self.year_max
        ):
            raise ValueError(f"year_min {self.year_min} is after year_max {self.year_max}")
        return self

    def is_empty(self) -> bool:
        return not (self.categories or self.exclude_categories or self.year_min or self.year_max)


class HistoryEntry(BaseModel):
    """One interaction of a raw history: an item id and an optional rating or event."""

    model_config = ConfigDict(extra="forbid")

    item_id: str
    rating: float | None = None
    event: EventType | None = None


class RecommendRequest(BaseModel):
    """What ``Recommender.recommend`` and ``POST /recommend`` take."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = None
    history: list[HistoryEntry | str] | None = None
    query: str | None = Field(default=None, max_length=2000)
    k: int = Field(default=10, ge=1, le=1000)
    filters: Filters | None = None
    llm: TierChoice = TierChoice.AUTO
    explain: bool = True
    language: str | None = Field(default=None, max_length=40)
    exclude: list[str] = Field(default_factory=list, description="Item ids never to return.")


class TaskScoresOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    engagement: float = Field(description="p(item | user) over the whole catalog.")
    like: float = Field(description="Probability the user likes the item.")
    rating: float = Field(description="Expected rating.")


class Evidence(BaseModel):
    """What an explanation rests on."""

    model_config = ConfigDict(frozen=True)

    history_items: tuple[str, ...] = Field(default=(), description="Cited history item ids.")
    history_titles: tuple[str, ...] = ()
    categories: tuple[str, ...] = Field(default=(), description="Shared categories.")


class RecommendedItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    item_id: str
    title: str
    year: int | None = None
    categories: tuple[str, ...] = ()
    score: float = Field(description="Final fused score (higher is better).")
    model_score: float = Field(description="The model's fused task score.")
    task_scores: TaskScoresOut
    model_rank: int
    llm_rank: int | None = None
    source: tuple[str, ...] = Field(default=(), description="model, query, popular.")
    explanation: str | None = None
    grounded: bool = True
    explanation_source: str | None = Field(default=None, description="llm or template.")
    evidence: Evidence = Field(default_factory=Evidence)


class Dropped(BaseModel):
    """What the rerank guard removed from the LLM's answer."""

    model_config = ConfigDict(frozen=True)

    unknown: int = 0
    duplicate: int = 0
    missing: int = 0
    ungrounded: int = 0


class Fallback(BaseModel):
    model_config = ConfigDict(frozen=True)

    tier: Tier
    reason: str


class RecommendResult(BaseModel):
    """What ``Recommender.recommend`` and ``POST /recommend`` return (immutable)."""

    model_config = ConfigDict(frozen=True)

    items: tuple[RecommendedItem, ...]
    tier: Tier
    user_id: str | None = None
    query: str | None = None
    prompt_version: str | None = None
    llm_model: str | None = None
    cached: bool = False
    latency_ms: dict[str, float] = Field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    dropped: Dropped = Field(default_factory=Dropped)
    fallbacks: tuple[Fallback, ...] = ()
    category_interest: dict[str, float] = Field(default_factory=dict)
    history_size: int = 0
    notes: tuple[str, ...] = ()
    model_order: tuple[str, ...] = Field(
        default=(),
        description="Every candidate's item id in the model's order (after query fusion).",
    )
    llm_order: tuple[str, ...] = Field(
        default=(),
        description="The order fused with model_order when an LLM tier answered: the LLM's "
        "accepted picks, then the other candidates in model order; empty otherwise.",
    )


def hit_record(hit: Any) -> dict[str, Any]:
    """A retrieval ``Hit`` as the plain record the CLI, API and HTTP service return."""
    return {
        "item_id": hit.item_id,
        "title": hit.title,
        "year": hit.year,
        "categories": list(hit.categories),
        "score": round(hit.score, 4),
    }
