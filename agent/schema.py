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


class Range(BaseModel):
    """A numeric attribute's bounds (either may be open)."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


class Filters(BaseModel):
    """Metadata restrictions on recommended items.

    Attribute names and the kind of filter each takes come from the catalog's domain profile
    (``mtrec info`` lists them): ``ranges`` for numeric attributes (``{"price": {"max": 30}}``),
    ``values``/``exclude_values`` for exact ones (``{"author": ["Terry Pratchett"]}``).
    ``year_min``/``year_max`` are a shorthand for ``ranges["year"]``.
    """

    model_config = ConfigDict(extra="forbid")

    categories: list[str] = Field(default_factory=list, description="Keep items with any of these.")
    exclude_categories: list[str] = Field(default_factory=list, description="Drop these.")
    year_min: int | None = None
    year_max: int | None = None
    ranges: dict[str, Range] = Field(
        default_factory=dict, description="Numeric attribute bounds, by attribute name."
    )
    values: dict[str, list[str]] = Field(
        default_factory=dict, description="Keep items whose attribute has any of these values."
    )
    exclude_values: dict[str, list[str]] = Field(
        default_factory=dict, description="Drop items whose attribute has any of these values."
    )

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
        return not (
            self.categories
            or self.exclude_categories
            or self.year_min is not None
            or self.year_max is not None
            or self.ranges
            or any(self.values.values())
            or any(self.exclude_values.values())
        )

    def all_ranges(self) -> dict[str, Range]:
        """``ranges`` with the year shorthand folded in (both bounds apply)."""
        out = dict(self.ranges)
        if self.year_min is None and self.year_max is None:
            return out
        year = out.get("year", Range())
        lows = [v for v in (year.min, self.year_min) if v is not None]
        highs = [v for v in (year.max, self.year_max) if v is not None]
        out["year"] = Range(min=max(lows) if lows else None, max=min(highs) if highs else None)
        return out


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
    history: list[HistoryEntry | str] | None = Field(
        default=None,
        description="the user's interactions, oldest first (the model weighs recent ones more)",
    )
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


class Contribution(BaseModel):
    """What removing one history item does to a recommended item (measured on the model)."""

    model_config = ConfigDict(frozen=True)

    item_id: str
    title: str
    score_drop: float = Field(description="Model score with the item minus without it.")
    rank_with: int = Field(description="Rank among the request's candidates by model score.")
    rank_without: int = Field(description="That rank once the history item is removed.")


class Evidence(BaseModel):
    """What an explanation rests on."""

    model_config = ConfigDict(frozen=True)

    history_items: tuple[str, ...] = Field(default=(), description="Cited history item ids.")
    history_titles: tuple[str, ...] = ()
    categories: tuple[str, ...] = Field(default=(), description="Shared categories.")
    reason: str | None = Field(
        default=None,
        description="What the template text rests on: history (a counterfactual drop), "
        "attribute, query, co_liked, category, popular or model.",
    )
    contributions: tuple[Contribution, ...] = Field(
        default=(),
        description="The history items whose removal lowers this item's model score, largest "
        "drop first (leave-one-out over the latest history).",
    )
    co_liked: int | None = Field(
        default=None, description="People who liked the cited history item and this one."
    )
    attribute: tuple[str, str] | None = Field(
        default=None, description="A shared exact attribute: (name, value)."
    )


class RecommendedItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    item_id: str
    title: str
    year: int | None = None
    categories: tuple[str, ...] = ()
    details: dict[str, str] = Field(
        default_factory=dict, description="Exact attributes of the item (author, brand, ...)."
    )
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
    notes: tuple[str, ...] = Field(default=(), description="Said to the person who asked.")
    diagnostics: tuple[str, ...] = Field(
        default=(),
        description="What the guard and the grounding check did (replaced texts and why); for "
        "logs and details views, not for the person's reading.",
    )
    model_order: tuple[str, ...] = Field(
        default=(),
        description="Every candidate's item id in the model's order (after query fusion).",
    )
    llm_order: tuple[str, ...] = Field(
        default=(),
        description="The order fused with model_order when an LLM tier answered: the LLM's "
        "accepted picks, then the other candidates in model order; empty otherwise.",
    )
    llm_weight: float | None = Field(
        default=None,
        description="The weight llm_order was fused with (per tier and model: a calibrated "
        "weight, the tier's own or the default); None when no LLM answered.",
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
