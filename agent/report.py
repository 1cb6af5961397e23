"""Explanation reports: what the recommender did for a user (or a cohort) and why.

A report is built once as pydantic data (``Report``, whose JSON schema is published with
``mtrec report --schema``) and rendered from it as JSON, Markdown (for tickets) or a
self-contained HTML page (Jinja2 templates in ``agent/templates/``, charts as base64 PNG).

Catalog text is untrusted: HTML autoescapes everything and carries a Content-Security-Policy
that forbids scripts and remote fetches; Markdown escapes its own markup characters.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from agent.schema import Dropped, Evidence, Fallback, HistoryEntry, Tier, TierChoice
from mtrec.data.schema import EventType

if TYPE_CHECKING:
    import jinja2

    from agent.recommender import Recommender
    from mtrec.data.history import History

SCHEMA_VERSION = "1"
Format = Literal["html", "md", "json"]
FORMATS: tuple[str, ...] = ("html", "md", "json")
#: A cohort larger than this is sampled (with a seed, and the report says so): every user
#: costs one model pass, and a cohort report is read for its aggregates, not its rows.
DEFAULT_SAMPLE = 100
#: HTML and Markdown show full sections for this many users of a cohort (JSON has all).
USER_SECTIONS = 10
#: History rows shown in HTML/Markdown timelines (JSON has the whole history).
TIMELINE_ROWS = 20
#: Categories kept in an interest profile: the largest by either the model or the history.
INTEREST_ROWS = 25
#: A category where the model's interest exceeds the history's share by this much is called
#: an extrapolation in the report.
EXTRAPOLATION_GAP = 0.05
TEMPLATES = Path(__file__).parent / "templates"
#: Offline evaluation of the LLM tiers (NDCG@10 and latency per tier), written by
#: ``benchmarks/bench_agent.py`` in a source checkout; shown in cohort reports when present.
TIER_EVALUATION = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "agent.json"


class ReportError(ValueError):
    """A bad report request or output path (the CLI prints it as one line, exit code 2)."""


# ---- the published schema -----------------------------------------------------------------------
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


class TaskScores(BaseModel):
    engagement: float = Field(description="p(item | user) over the whole catalog.")
    like: float = Field(description="Probability the user likes the item.")
    rating: float = Field(description="Expected rating.")


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
    task_scores: TaskScores
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


class Report(BaseModel):
    """An explanation report: one user, or a cohort with each user's report."""

    schema_version: Literal["1"] = SCHEMA_VERSION
    kind: Literal["user", "cohort"]
    generated_at: str = Field(description="ISO 8601, UTC.")
    dataset: str
    k: int
    llm: TierChoice = Field(description="The tier asked for.")
    users: list[UserReport]
    cohort: CohortReport | None = None


def report_schema() -> dict[str, Any]:
    """The JSON schema that ``--format json`` output validates against."""
    return Report.model_json_schema()


# ---- building -----------------------------------------------------------------------------------
def build_report(
    rec: Recommender,
    user_id: str | None = None,
    users: Sequence[str] | str | Path | None = None,
    history: Sequence[HistoryEntry | str | int] | None = None,
    k: int = 10,
    llm: str = "none",
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    on_user: Callable[[int, int], None] | None = None,
) -> Report:
    """The report data for one user (``user_id`` and/or ``history``) or a cohort (``users``).

    Args:
        rec: A loaded recommender.
        user_id: A known user.
        users: A cohort: a list of user ids, ``"all"``, or the path (``str`` or ``Path``) of
            a file with one id per line (blank lines and ``#`` comments skipped).
        history: A raw history (item ids, oldest first) for a new user; ``[]`` gives a
            cold-start report. With ``user_id`` it is appended to that user's history.
        k: List length.
        llm: ``none`` (default: fast and always available), ``auto``, ``remote`` or ``local``.
        sample: Most users in a cohort; larger cohorts are sampled with ``seed``.
        seed: Sampling seed.
        on_user: Called as ``on_user(done, total)`` after each user of a cohort (progress).

    Raises:
        KeyError: an unknown user or item id (named in the message).
        ReportError: a bad combination of arguments or an empty cohort.
    """
    if k < 1:
        raise ReportError(f"k must be at least 1, got {k}")
    if llm not in ("auto", "remote", "local", "none"):
        raise ReportError(f"llm must be auto, remote, local or none, got {llm!r}")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    head = {"generated_at": now, "dataset": rec.ds.name, "k": k, "llm": llm}
    if users is None:
        if user_id is None and history is None:
            raise ReportError("give a user id, a history or users for a cohort")
        return Report(kind="user", users=[user_report(rec, user_id, history, k, llm)], **head)
    if user_id is not None or history is not None:
        raise ReportError("give a single user or a cohort, not both")
    if sample < 1:
        raise ReportError(f"sample must be at least 1, got {sample}")
    ids, selection = _cohort_ids(rec, users)
    chosen = ids
    if len(ids) > sample:
        rng = np.random.default_rng(seed)
        chosen = [ids[i] for i in sorted(rng.choice(len(ids), sample, replace=False))]
    reports = []
    for u in chosen:
        reports.append(user_report(rec, u, None, k, llm))
        if on_user is not None:
            on_user(len(reports), len(chosen))
    cohort = cohort_report(
        rec, reports, selection, len(ids), seed if len(chosen) < len(ids) else None
    )
    return Report(kind="cohort", users=reports, cohort=cohort, **head)


def user_report(
    rec: Recommender,
    user_id: str | None,
    history: Sequence[HistoryEntry | str | int] | None,
    k: int,
    llm: str,
) -> UserReport:
    """One user's report (see ``build_report``)."""
    hist = rec.user_history(user_id) if user_id is not None else None  # KeyError: unknown id
    if history is not None:
        raw = rec.history_from(history)
        hist = raw if hist is None else hist.extend(raw)
    assert hist is not None
    result = rec.recommend(user_id=user_id, history=history, k=k, llm=llm)
    timeline = _timeline(rec, user_id, hist)
    interest = _interest(rec, hist, result.category_interest)
    notes = list(result.notes)
    cold = len(hist) == 0
    if cold:
        notes.insert(
            0,
            "Cold start: the history is empty, so the interest profile is the model's prior, the "
            "list leans on popular items and no history item can be cited as evidence.",
        )
    # With no history every category would count as extrapolated; the note says it is a prior.
    extrapolation = [
        e.category
        for e in sorted(interest, key=lambda e: -e.gap)
        if e.gap >= EXTRAPOLATION_GAP and not cold
    ][:5]
    items = []
    for rank, it in enumerate(result.items, start=1):
        llm_wrote = it.explanation_source == "llm"
        items.append(
            ReportItem(
                rank=rank,
                item_id=it.item_id,
                title=it.title,
                year=it.year,
                categories=it.categories,
                task_scores=TaskScores(**it.task_scores.model_dump()),
                model_score=it.model_score,
                score=it.score,
                model_rank=it.model_rank,
                llm_rank=it.llm_rank,
                source=it.source,
                explanation=ExplanationReport(
                    text=it.explanation,
                    grounded=it.grounded,
                    # A failed check means an LLM wrote text that was replaced.
                    grounding_checked=llm_wrote or not it.grounded,
                    tier=result.tier if llm_wrote else "none",
                    source=it.explanation_source,
                    evidence=_evidence(rec, it.evidence),
                ),
            )
        )
    cats = rec.categories[[rec.ds.item_index(i.item_id) for i in result.items]]
    return UserReport(
        user_id=user_id,
        label=f"user {user_id}" if user_id is not None else "new user (raw history)",
        history_size=len(hist),
        cold_start=cold,
        timeline=timeline,
        top_categories=_top_categories(rec, hist),
        interest=interest,
        extrapolation=extrapolation,
        tier=result.tier,
        fallbacks=result.fallbacks,
        dropped=result.dropped,
        latency_ms=result.latency_ms,
        cached=result.cached,
        items=items,
        intra_list_diversity=intra_list_diversity(cats),
        notes=notes,
    )


def cohort_report(
    rec: Recommender,
    reports: Sequence[UserReport],
    selection: str,
    selected: int,
    seed: int | None,
) -> CohortReport:
    """Aggregates over user reports: coverage, diversity, grounding, tiers, latency."""
    notes = []
    if seed is not None:
        notes.append(
            f"Sampled {len(reports)} of {selected} users with seed {seed}; "
            "raise --sample to report more."
        )
    explanations = [i.explanation for r in reports for i in r.items]
    checked = [e for e in explanations if e.grounding_checked]
    tiers: dict[str, TierStats] = {}
    for name in sorted({r.tier for r in reports}):
        mine = [r for r in reports if r.tier == name]
        ex = [i.explanation for r in mine for i in r.items]
        tiers[name] = TierStats(
            lists=len(mine),
            explanations=len(ex),
            llm_written=sum(e.source == "llm" for e in ex),
            failed_grounding=sum(not e.grounded for e in ex),
            latency_ms=distribution([r.latency_ms.get("total", math.nan) for r in mine]),
        )
    if not any(t in tiers for t in ("remote", "local")):
        notes.append(
            "No LLM tier answered for these lists (the report's default is the model-only "
            "tier); pass --llm auto, remote or local to see them at work."
        )
    evaluation, source = _tier_evaluation(TIER_EVALUATION)
    if source is None:
        notes.append(
            "No offline evaluation of the LLM tiers is stored; "
            "python benchmarks/bench_agent.py writes one."
        )
    fallbacks = Counter(f"{f.tier}: {f.reason}" for r in reports for f in r.fallbacks)
    distinct = {i.item_id for r in reports for i in r.items}
    return CohortReport(
        selection=selection,
        users_selected=selected,
        users_reported=len(reports),
        sampled=seed is not None,
        seed=seed,
        model_metrics=_flatten(rec.model.metrics),
        tier_evaluation=evaluation,
        tier_evaluation_source=source,
        tiers=tiers,
        tier_mix={name: t.lists for name, t in tiers.items()},
        fallbacks=dict(fallbacks.most_common(10)),
        catalog_size=rec.ds.n_items,
        distinct_items=len(distinct),
        catalog_coverage=round(len(distinct) / max(rec.ds.n_items, 1), 4),
        intra_list_diversity=distribution(
            [r.intra_list_diversity for r in reports if r.intra_list_diversity is not None]
        ),
        grounding_pass_rate=(
            round(sum(e.grounded for e in explanations) / len(explanations), 4)
            if explanations
            else None
        ),
        llm_grounding_pass_rate=(
            round(sum(e.grounded for e in checked) / len(checked), 4) if checked else None
        ),
        latency_ms=distribution([r.latency_ms.get("total", math.nan) for r in reports]),
        cold_start_users=sum(r.cold_start for r in reports),
        notes=notes,
    )


def intra_list_diversity(category_vectors: np.ndarray) -> float | None:
    """Mean pairwise cosine distance of a list's category vectors (None below two items).

    An item without categories has cosine 0 to everything (distance 1): nothing says it is alike.
    """
    n = len(category_vectors)
    if n < 2:
        return None
    v = np.asarray(category_vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    u = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
    sims = u @ u.T
    upper = sims[np.triu_indices(n, 1)]
    return round(float(np.mean(1.0 - upper)), 4)


def distribution(values: Sequence[float]) -> Distribution | None:
    """Summary statistics of finite values (None when there are none)."""
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if a.size == 0:
        return None
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return Distribution(
        n=int(a.size),
        mean=round(float(a.mean()), 4),
        min=round(float(a.min()), 4),
        p50=round(float(p50), 4),
        p90=round(float(p90), 4),
        p99=round(float(p99), 4),
        max=round(float(a.max()), 4),
    )


def _cohort_ids(rec: Recommender, users: Sequence[str] | str | Path) -> tuple[list[str], str]:
    from agent.recommender import read_user_selection

    try:
        ids, selection = read_user_selection(users, [u.user_id for u in rec.ds.users])
    except ValueError as e:
        raise ReportError(str(e)) from None
    if not ids:
        raise ReportError("the cohort is empty: give at least one user id")
    unknown = []
    for u in ids:
        try:
            rec.user_history(u)
        except KeyError:
            unknown.append(u)
    if unknown:
        raise KeyError(
            f"unknown user ids in the cohort: {unknown[:5]}"
            + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        )
    return ids, selection


def _evidence(rec: Recommender, ev: Evidence) -> Evidence:
    # Titles are looked up from the cited ids: when an LLM's citations replace the template's,
    # the result keeps the template's titles, which would then name the wrong items.
    titles = [rec.ds.item(i).title if rec.ds.has_item(i) else i for i in ev.history_items]
    return Evidence(
        history_items=list(ev.history_items), history_titles=titles, categories=list(ev.categories)
    )


def _timeline(rec: Recommender, user_id: str | None, hist: History) -> list[TimelineEntry]:
    stamps: list[float | None] = [None] * len(hist)
    if user_id is not None and rec.ds.has_user(user_id):
        # The dataset's rows of this user in the order ``user_histories`` uses (timestamp,
        # ties in row order); feedback and raw entries come after them and have no time here.
        u = rec.ds.user_index(user_id)
        rows = np.flatnonzero(rec.ds.user_idx == u)
        rows = rows[np.argsort(rec.ds.timestamp[rows], kind="stable")]
        if np.array_equal(rec.ds.item_idx[rows], hist.items[: len(rows)]):
            for j, t in enumerate(rec.ds.timestamp[rows]):
                stamps[j] = float(t) if t > 0 else None
    out = []
    for j, (item, ev, value) in enumerate(zip(hist.items, hist.events, hist.values, strict=True)):
        it = rec.ds.items[int(item)]
        out.append(
            TimelineEntry(
                position=j + 1,
                item_id=it.item_id,
                title=it.title,
                categories=list(it.categories),
                event=EventType.from_code(int(ev)).value,
                rating=None if np.isnan(value) else float(value),
                timestamp=stamps[j],
            )
        )
    return out


def _top_categories(rec: Recommender, hist: History, n: int = 5) -> list[CategoryCount]:
    if len(hist) == 0:
        return []
    counts = rec.categories[hist.items].sum(axis=0)
    order = np.argsort(-counts, kind="stable")[:n]
    return [
        CategoryCount(
            category=rec.ds.categories[j],
            count=int(counts[j]),
            share=round(float(counts[j]) / len(hist), 4),
        )
        for j in order
        if counts[j] > 0
    ]


def _interest(
    rec: Recommender, hist: History, known: Mapping[str, float] | None = None
) -> list[InterestEntry]:
    if known and len(known) == len(rec.ds.categories):
        # The recommender already ran the user encoder for this; a second pass costs as much
        # as the whole list.
        model = np.array([known[c] for c in rec.ds.categories], dtype=np.float64)
    else:
        model = np.asarray(rec.model.category_interest(hist), dtype=np.float64)
    mix = np.zeros(len(rec.ds.categories))
    if len(hist):
        # Each history item's weight is split over its categories, so the mix is a
        # distribution comparable to the model's.
        cats = rec.categories[hist.items].astype(np.float64)
        per = cats.sum(axis=1, keepdims=True)
        mix = np.divide(cats, per, out=np.zeros_like(cats), where=per > 0).sum(axis=0)
        if mix.sum() > 0:
            mix = mix / mix.sum()
    order = np.argsort(-np.maximum(model, mix), kind="stable")[:INTEREST_ROWS]
    return [
        InterestEntry(
            category=rec.ds.categories[j],
            model=round(float(model[j]), 4),
            history=round(float(mix[j]), 4),
            gap=round(float(model[j] - mix[j]), 4),
        )
        for j in order
    ]


def _tier_evaluation(path: Path) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Per-tier metrics of the latest agent benchmark, or ({}, None) when there is none."""
    if not path.is_file():
        return {}, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        out: dict[str, dict[str, Any]] = {}
        for section in ("accuracy", "latency"):
            for tier, values in (data.get(section) or {}).items():
                if isinstance(values, Mapping):
                    out.setdefault(str(tier), {}).update(_flatten(values, f"{section}."))
    except (OSError, ValueError, AttributeError) as e:
        # A broken results file must not break the report; the source line says why.
        return {}, f"{path.name} could not be read ({type(e).__name__})"
    return out, f"{path.name} of {data.get('date', 'unknown date')}"


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        elif isinstance(value, bool) or value is None or isinstance(value, (int, str)):
            out[name] = value
        elif isinstance(value, (float, np.floating)):
            out[name] = round(float(value), 4) if math.isfinite(value) else None
        elif isinstance(value, np.integer):
            out[name] = int(value)
        else:
            out[name] = str(value)
    return out


# ---- rendering ----------------------------------------------------------------------------------
def render(report: Report, format: str = "html") -> str:
    """The report as HTML, Markdown or JSON text."""
    if format not in FORMATS:
        raise ReportError(f"format must be html, md or json, got {format!r}")
    if format == "json":
        return report.model_dump_json(indent=2) + "\n"
    shown = report.users[:USER_SECTIONS]
    context: dict[str, Any] = {
        "report": report,
        "shown": shown,
        "timeline_rows": TIMELINE_ROWS,
        "gap": EXTRAPOLATION_GAP,
    }
    if format == "html":
        context["charts"] = _charts(report, shown)
    return _env(format).get_template(f"report.{format}.j2").render(context)


def _charts(report: Report, shown: Sequence[UserReport]) -> dict[str, Any]:
    from agent import report_charts as rc

    users = []
    for u in shown:
        users.append(
            {
                "interest": rc.interest_chart(
                    [e.category for e in u.interest],
                    [e.model for e in u.interest],
                    [e.history for e in u.interest],
                ),
                "timeline": rc.timeline_chart(
                    [t.position for t in u.timeline],
                    [t.rating for t in u.timeline],
                    [t.timestamp for t in u.timeline],
                )
                if u.timeline
                else None,
            }
        )
    charts: dict[str, Any] = {"users": users}
    c = report.cohort
    if c is not None:
        charts["tier_mix"] = rc.tier_mix_chart(c.tier_mix) if c.tier_mix else None
        lat = [u.latency_ms["total"] for u in report.users if "total" in u.latency_ms]
        charts["latency"] = rc.latency_chart(lat) if lat else None
    return charts


@lru_cache(maxsize=2)
def _env(format: str) -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        # Every value in the HTML is escaped unless marked safe; catalog text never is.
        autoescape=format == "html",
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["pct"] = _pct
    env.filters["num"] = _num
    env.filters["md"] = md_escape
    env.filters["bar"] = _bar
    env.filters["date"] = _date
    return env


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int):
        return str(x)
    return (
        f"{x:.{digits}g}" if abs(x) < 1e-3 and x != 0 else f"{x:.{digits}f}".rstrip("0").rstrip(".")
    )


def _date(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d")


def _bar(x: float, width: int = 20) -> str:
    """A text bar for Markdown charts."""
    n = max(0, min(width, round(x * width)))
    return "█" * n or "·"


_MD_SPECIAL = set("\\`*_[]<>|~&#!")


def md_escape(text: Any) -> str:
    """Catalog text made inert in Markdown: markup characters escaped, one line."""
    s = " ".join(str(text).split())
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in s)


# ---- output -------------------------------------------------------------------------------------
def output_path(out: str | Path, base: Path | None = None) -> Path:
    """Check an output path before any work is done, so a typo fails fast.

    A relative ``out`` may not climb out of ``base`` (default: the current directory) with
    ``..``; an absolute path is taken as given.

    Returns:
        The normalised absolute path.

    Raises:
        ReportError: the path is empty, escapes ``base``, is a directory, or its directory is
            missing or not writable.
    """
    raw = Path(out).expanduser()
    if str(out).strip() == "":
        raise ReportError("the output path is empty")
    if raw.is_absolute():
        path = Path(os.path.normpath(raw))
    else:
        root = Path(os.path.normpath((base or Path.cwd()).absolute()))
        path = Path(os.path.normpath(root / raw))
        if not path.is_relative_to(root):
            raise ReportError(
                f"output path {str(out)!r} escapes {root}; give an absolute path to write "
                "outside it"
            )
    if path.is_dir():
        raise ReportError(f"output path {str(path)!r} is a directory; name a file")
    if not path.parent.is_dir():
        raise ReportError(f"cannot write {str(path)!r}: directory {str(path.parent)!r} is missing")
    if not os.access(path.parent, os.W_OK):
        raise ReportError(
            f"cannot write {str(path)!r}: directory {str(path.parent)!r} is read-only"
        )
    return path


def write_report(text: str, out: str | Path, base: Path | None = None) -> Path:
    """Write a rendered report atomically (temp file in the same directory + ``os.replace``).

    Nothing half-written is ever left behind: on any failure the temp file is removed and an
    existing report at ``out`` stays as it was.

    Returns:
        The path written.

    Raises:
        ReportError: see ``output_path``; or the write itself failed (disk full, ...).
    """
    path = output_path(out, base)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise ReportError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is meant to be shared
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise ReportError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
        raise
    return path


def report(
    rec: Recommender,
    user_id: str | None = None,
    users: Sequence[str] | str | Path | None = None,
    history: Sequence[HistoryEntry | str | int] | None = None,
    k: int = 10,
    format: str = "html",
    llm: str = "none",
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    out: str | Path | None = None,
) -> str:
    """Build and render a report (see ``build_report``); with ``out``, also write it atomically.

    Returns:
        The rendered report.
    """
    if format not in FORMATS:  # before any work, so a typo costs nothing
        raise ReportError(f"format must be html, md or json, got {format!r}")
    if out is not None:
        output_path(out)
    text = render(build_report(rec, user_id, users, history, k, llm, sample, seed), format)
    if out is not None:
        write_report(text, out)
    return text
