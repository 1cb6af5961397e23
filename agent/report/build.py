"""Building report data: one user's profile, interest and explained list; a cohort of them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agent.errors import ReportError
from agent.files import read_user_selection
from agent.report.cohort import cohort_report, intra_list_diversity
from agent.report.schema import (
    EXTRAPOLATION_GAP,
    CategoryCount,
    ExplanationReport,
    InterestEntry,
    Report,
    ReportItem,
    TimelineEntry,
    UserReport,
    Words,
)
from agent.schema import Evidence, HistoryEntry, Tier, TierChoice, tier_choice
from mtrec.data.history import History
from mtrec.data.schema import EventType

if TYPE_CHECKING:
    from agent.recommender import Recommender

#: A cohort larger than this is sampled (with a seed, and the report says so): every user
#: costs one model pass, and a cohort report is read for its aggregates, not its rows.
DEFAULT_SAMPLE = 100
#: Categories kept in an interest profile: the largest by either the model or the history.
INTEREST_ROWS = 25


def build_report(
    rec: Recommender,
    user_id: str | None = None,
    users: Sequence[str] | str | Path | None = None,
    history: Sequence[HistoryEntry | str | int] | None = None,
    k: int = 10,
    llm: TierChoice | str = TierChoice.NONE,
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
    try:
        llm = tier_choice(llm, "llm")
    except ValueError as e:
        raise ReportError(str(e)) from None
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    p = rec.ds.profile
    words = Words(
        item=p.item_noun,
        items=p.items,
        category=p.category_noun,
        categories=p.categories,
        has_categories=bool(rec.ds.categories),
        has_timestamps=rec.ds.has_timestamps,
    )
    head = {"generated_at": now, "dataset": rec.ds.name, "k": k, "llm": llm, "words": words}
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
    sampled_with = seed if len(chosen) < len(ids) else None
    cohort = cohort_report(
        reports, selection, len(ids), sampled_with, rec.ds.n_items, rec.model.metrics
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
    hist = rec.request_history(user_id, history)  # KeyError: unknown id
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
                details=it.details,
                task_scores=it.task_scores,
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
                    tier=result.tier if llm_wrote else Tier.NONE,
                    source=it.explanation_source,
                    evidence=_evidence(rec, it.evidence),
                ),
            )
        )
    cats = rec.catalog.categories[[rec.ds.item_index(i.item_id) for i in result.items]]
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


def _cohort_ids(rec: Recommender, users: Sequence[str] | str | Path) -> tuple[list[str], str]:
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
    titles = tuple(rec.ds.item(i).title if rec.ds.has_item(i) else i for i in ev.history_items)
    return ev.model_copy(update={"history_titles": titles})


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
    counts = rec.catalog.categories[hist.items].sum(axis=0)
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
        cats = rec.catalog.categories[hist.items].astype(np.float64)
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
