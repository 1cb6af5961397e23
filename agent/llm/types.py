"""Data exchanged between the recommender and the LLM tiers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, Field

from agent.schema import Tier


class RankedPick(BaseModel):
    """One item of the LLM's answer."""

    id: str = Field(description="Candidate short id, e.g. C3.")
    explanation: str = Field(default="", description="One short paragraph: why it suits the user.")
    cited_history: list[str] = Field(
        default_factory=list, description="History short ids, e.g. H2."
    )
    categories: list[str] = Field(default_factory=list, description="Categories of the candidate.")


class RerankOutput(BaseModel):
    """The structured answer every tier must produce."""

    ranking: list[RankedPick] = Field(description="Best candidates first.")


@dataclass(frozen=True)
class PromptCandidate:
    """One candidate as a tier sees it (text already cleaned).

    ``details`` are exact attributes worth naming (author, brand); ``support`` the history
    short ids whose removal measurably lowers the candidate's model score (what an explanation
    may cite).
    """

    short_id: str
    item_id: str
    title: str
    year: int | None
    categories: tuple[str, ...]
    text: str
    engagement: float
    like: float
    rating: float
    details: tuple[tuple[str, str], ...] = ()
    support: tuple[str, ...] = ()


@dataclass(frozen=True)
class PromptHistory:
    short_id: str
    item_id: str
    title: str
    categories: tuple[str, ...]
    rating: float | None


@dataclass(frozen=True)
class DomainWords:
    """What the catalog's items and categories are called (from its domain profile)."""

    item: str = "item"
    items: str = "items"
    category: str = "category"
    categories: str = "categories"
    rating_scale: str | None = None
    like_threshold: float | None = None


@dataclass(frozen=True)
class RerankRequest:
    """Everything a tier needs to rerank (already sanitised; candidates already shuffled)."""

    history: tuple[PromptHistory, ...]
    candidates: tuple[PromptCandidate, ...]
    profile: tuple[tuple[str, float], ...]
    k: int
    query: str | None = None
    language: str | None = None
    words: DomainWords = field(default_factory=DomainWords)


@dataclass
class TierAnswer:
    output: RerankOutput
    tokens_in: int = 0
    tokens_out: int = 0
    model: str = ""
    notes: list[str] = field(default_factory=list)


class RerankTier(Protocol):
    """What a tier implements: one rerank call that answers or raises ``TierError``."""

    name: Tier
    model_name: str
    prompt_id: str

    def rerank(self, req: RerankRequest) -> TierAnswer: ...
