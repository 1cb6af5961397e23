"""Request and response models shared by the Python API, the CLI, chat and HTTP."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Tier = Literal["remote", "local", "none"]
TierChoice = Literal["auto", "remote", "local", "none"]
EventName = Literal["like", "dislike", "seen"]


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
    event: Literal["view", "click", "rating", "like", "dislike", "purchase", "seen"] | None = None


class RecommendRequest(BaseModel):
    """What ``Recommender.recommend`` and ``POST /recommend`` take."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = None
    history: list[HistoryEntry | str] | None = None
    query: str | None = Field(default=None, max_length=2000)
    k: int = Field(default=10, ge=1, le=1000)
    filters: Filters | None = None
    llm: TierChoice = "auto"
    explain: bool = True
    language: str | None = Field(default=None, max_length=40)
    exclude: list[str] = Field(default_factory=list, description="Item ids never to return.")


class TaskScoresOut(BaseModel):
    engagement: float = Field(description="p(item | user) over the whole catalog.")
    like: float = Field(description="Probability the user likes the item.")
    rating: float = Field(description="Expected rating.")


class Evidence(BaseModel):
    """What an explanation rests on."""

    history_items: list[str] = Field(default_factory=list, description="Cited history item ids.")
    history_titles: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list, description="Shared categories.")


class RecommendedItem(BaseModel):
    item_id: str
    title: str
    year: int | None = None
    categories: list[str] = Field(default_factory=list)
    score: float = Field(description="Final fused score (higher is better).")
    model_score: float = Field(description="The model's fused task score.")
    task_scores: TaskScoresOut
    model_rank: int
    llm_rank: int | None = None
    source: list[str] = Field(default_factory=list, description="model, query, popular.")
    explanation: str | None = None
    grounded: bool = True
    explanation_source: Literal["llm", "template"] | None = None
    evidence: Evidence = Field(default_factory=Evidence)


class Dropped(BaseModel):
    """What the rerank guard removed from the LLM's answer."""

    unknown: int = 0
    duplicate: int = 0
    missing: int = 0
    ungrounded: int = 0


class Fallback(BaseModel):
    tier: Tier
    reason: str


class RecommendResult(BaseModel):
    """What ``Recommender.recommend`` and ``POST /recommend`` return."""

    items: list[RecommendedItem]
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
    fallbacks: list[Fallback] = Field(default_factory=list)
    category_interest: dict[str, float] = Field(default_factory=dict)
    history_size: int = 0
    notes: list[str] = Field(default_factory=list)
    model_order: list[str] = Field(
        default_factory=list,
        description="Every candidate's item id in the model's order (after query fusion).",
    )
    llm_order: list[str] = Field(
        default_factory=list,
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
