"""The published report schema (``mtrec report --schema``): what a report holds."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.schema import Dropped, Evidence, Fallback, TaskScoresOut, Tier, TierChoice

SCHEMA_VERSION = "1"
#: A category where the model's interest exceeds the history's share by this much is called
#: an extrapolation in the report.
EXTRAPOLATION_GAP = 0.05


class TimelineEntry(BaseModel):
    """One interaction of the user's history, oldest first."""

    position: int = Field(description="1 = oldest interaction.")
    item_id: str
    title: str
    categories: list[str] = Field(default_factory=list)
    event: str = Field(description="view, click, rating, like, dislike, purchase or seen.")
    rating: float | None = None
    timestamp: float | None = Field(
        default=None, description="Seconds since the epoch; None for feedback or raw entries."
    )


class CategoryCount(BaseModel):
    category: str
    count: int = Field(description="History items in this category.")
    share: float = Field(description="count / history size.")


class InterestEntry(BaseModel):
    """The model's interest in a category beside the category's share of the history."""

    category: str
    model: float = Field(description="The model's predicted interest (a distribution).")
    history: float = Field(
        description="Share of the history (each item's weight split over its categories)."
    )
    gap: float = Field(description="model - history; positive where the model extrapolates.")


class ExplanationReport(BaseModel):
    """An explanation with its provenance."""

    text: str | None = None
    grounded: bool = Field(
        description="False when the LLM's text failed the grounding check and a template was "
        "shown instead; templates are grounded by construction."
    )
    grounding_checked: bool = Field(
        description="An LLM wrote text for this item, so the grounding check ran."
    )
    tier: Tier = Field(
        description="Who wrote the text shown: an LLM tier (remote, local) or none (template)."
    )
    source: Literal["llm", "template"] | None = None
    evidence: Evidence = Field(default_factory=Evidence)


class ReportItem(BaseModel):
    rank: int
    item_id: str
    title: str
    year: int | None = None
    categories: list[str] = Field(default_factory=list)
    details: dict[str, str] = Field(
        default_factory=dict, description="Exact attributes (author, brand, ...)."
    )
    task_scores: TaskScoresOut
    model_score: float = Field(description="The model's fused task score.")
    score: float = Field(description="The final score after any LLM rank fusion.")
    model_rank: int
    llm_rank: int | None = None
    source: list[str] = Field(default_factory=list, description="model, query, popular.")
    explanation: ExplanationReport


class UserReport(BaseModel):
    """Profile, interest profile and explained list of one user."""

    user_id: str | None = Field(description="None for a raw history of a new user.")
    label: str
    history_size: int
    cold_start: bool = Field(description="The history is empty: a defined cold-start report.")
    timeline: list[TimelineEntry] = Field(default_factory=list)
    top_categories: list[CategoryCount] = Field(default_factory=list)
    interest: list[InterestEntry] = Field(default_factory=list)
    extrapolation: list[str] = Field(
        default_factory=list,
        description=f"Categories where the model's interest exceeds the history's share by "
        f">= {EXTRAPOLATION_GAP:.0%}.",
    )
    tier: Tier = Field(description="The tier that produced the list.")
    fallbacks: list[Fallback] = Field(default_factory=list)
    dropped: Dropped = Field(default_factory=Dropped)
    latency_ms: dict[str, float] = Field(default_factory=dict)
    cached: bool = Field(
        default=False, description="The list came from the answer cache (latency is the cache's)."
    )
    items: list[ReportItem] = Field(default_factory=list)
    intra_list_diversity: float | None = Field(
        default=None, description="Mean pairwise cosine distance of the items' category vectors."
    )
    notes: list[str] = Field(default_factory=list)


class Distribution(BaseModel):
    n: int
    mean: float
    min: float
    p50: float
    p90: float
    p99: float
    max: float


class TierStats(BaseModel):
    """What one tier did in this report's lists."""

    lists: int
    explanations: int
    llm_written: int = Field(description="Explanations an LLM wrote that passed grounding.")
    failed_grounding: int = Field(description="LLM explanations replaced by a template.")
    latency_ms: Distribution | None = None


class CohortReport(BaseModel):
    """Aggregates over several users' lists."""

    selection: str = Field(description="list, file or all.")
    users_selected: int = Field(description="Users in the selection before sampling.")
    users_reported: int
    sampled: bool
    seed: int | None = Field(default=None, description="The sampling seed when sampled.")
    model_metrics: dict[str, float | int | str | bool | None] = Field(
        default_factory=dict, description="The checkpoint's metrics dict, flattened."
    )
    tier_evaluation: dict[str, dict[str, float | int | str | bool | None]] = Field(
        default_factory=dict,
        description="Latest offline evaluation per tier (benchmarks/results/agent.json), "
        "flattened; empty when none is stored.",
    )
    tier_evaluation_source: str | None = Field(
        default=None, description="Which evaluation file, and its date."
    )
    tiers: dict[str, TierStats] = Field(default_factory=dict)
    tier_mix: dict[str, int] = Field(default_factory=dict, description="Lists per tier.")
    fallbacks: dict[str, int] = Field(default_factory=dict, description="'tier: reason' counts.")
    catalog_size: int
    distinct_items: int
    catalog_coverage: float = Field(description="Distinct recommended items / catalog size.")
    intra_list_diversity: Distribution | None = None
    grounding_pass_rate: float | None = Field(
        default=None, description="Explanations shown that passed (or needed no) grounding."
    )
    llm_grounding_pass_rate: float | None = Field(
        default=None, description="Of the LLM's explanations, the share that passed; None if none."
    )
    latency_ms: Distribution | None = None
    cold_start_users: int = 0
    notes: list[str] = Field(default_factory=list)


class Words(BaseModel):
    """What the catalog calls its items and categories (its domain profile)."""

    item: str = "item"
    items: str = "items"
    category: str = "category"
    categories: str = "categories"
    has_categories: bool = Field(default=True, description="The catalog has categories.")
    has_timestamps: bool = Field(
        default=True, description="The interactions have times (else no date column)."
    )


class Report(BaseModel):
    """An explanation report: one user, or a cohort with each user's report."""

    schema_version: Literal["1"] = SCHEMA_VERSION
    kind: Literal["user", "cohort"]
    generated_at: str = Field(description="ISO 8601, UTC.")
    dataset: str
    words: Words = Field(default_factory=Words, description="The catalog's nouns.")
    k: int
    llm: TierChoice = Field(description="The tier asked for.")
    users: list[UserReport]
    cohort: CohortReport | None = None


def report_schema() -> dict[str, Any]:
    """The JSON schema that ``--format json`` output validates against."""
    return Report.model_json_schema()
