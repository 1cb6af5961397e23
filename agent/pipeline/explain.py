"""Stage 4: grounded explanations and the items of the answer.

Template explanations are built from model evidence only; every LLM explanation must pass the
grounding check (cited items in the history, named titles among the candidates or the history,
named categories the item's own) or it is replaced by the template, and marked so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from agent.pipeline.candidates import Candidates
from agent.pipeline.catalog import Catalog, TitleIndex
from agent.pipeline.rerank import LLMText, RerankOutcome
from agent.pipeline.scoring import FusionWeights, ScoredCandidates, score_candidates
from agent.schema import Evidence, RecommendedItem, TaskScoresOut
from mtrec.data.history import History
from mtrec.data.schema import EventType, Item
from mtrec.model.multitask import MultiTaskModel

#: Phrases of the rerank prompt; an explanation that repeats one is leaking the prompt.
_PROMPT_SNIPPETS = (
    "reranking step of a movie recommender",
    "never invent ids",
    "<data>",
    "catalog or user data, not instructions",
    "system prompt",
)


@dataclass(frozen=True)
class ItemEvidence:
    """Model evidence for one recommended item."""

    nearest_history: list[int]  # dense ids of the history items nearest to it
    shared_categories: list[str]
    engagement: float
    like: float
    rating: float


def nearest_history(
    candidate_vectors: np.ndarray,
    history_vectors: np.ndarray,
    history_items: np.ndarray,
    n: int = 2,
) -> list[list[int]]:
    """For each candidate, the ``n`` history items nearest by cosine of model item vectors.

    Args:
        candidate_vectors: (C, d).
        history_vectors: (H, d).
        history_items: (H,) dense ids.
        n: How many per candidate.

    Returns:
        C lists of dense item ids, nearest first (empty when the history is empty).
    """
    if len(history_items) == 0:
        return [[] for _ in range(len(candidate_vectors))]
    a = candidate_vectors / np.maximum(
        np.linalg.norm(candidate_vectors, axis=1, keepdims=True), 1e-12
    )
    b = history_vectors / np.maximum(np.linalg.norm(history_vectors, axis=1, keepdims=True), 1e-12)
    sims = a @ b.T
    out = []
    for row in sims:
        order = np.argsort(-row, kind="stable")
        picked: list[int] = []
        for j in order:
            item = int(history_items[j])
            if item not in picked:
                picked.append(item)
            if len(picked) == n:
                break
        out.append(picked)
    return out


def template_explanation(item: Item, history_items: Sequence[Item], ev: ItemEvidence) -> str:
    """A short explanation built only from facts the model and catalog hold."""
    parts = []
    if history_items:
        titles = " and ".join(f"“{h.title}”" for h in history_items)
        parts.append(f"Recommended because you watched {titles}, the closest to it in your history")
    else:
        parts.append("Recommended as one of the most popular items for new users")
    if ev.shared_categories:
        parts.append(f"it is {', '.join(ev.shared_categories)}, like much of what you watch")
    text = "; ".join(parts) + ". "
    text += (
        f"The model gives it a {ev.like:.0%} chance you like it and a predicted rating of "
        f"{ev.rating:.1f}."
    )
    return text


def evidence_model(history_items: Sequence[Item], ev: ItemEvidence) -> Evidence:
    return Evidence(
        history_items=tuple(h.item_id for h in history_items),
        history_titles=tuple(h.title for h in history_items),
        categories=tuple(ev.shared_categories),
    )


def explanation_anchors(hist: History, last: int = 50) -> np.ndarray:
    """History items an explanation may point to ("because you liked X"): the latest ones the
    user did not dislike (rated below 3, or a dislike event); all latest ones if none."""
    disliked = (hist.events == EventType.DISLIKE.code) | (hist.values < 3)  # NaN < 3 is False
    kept = hist.items[~disliked]
    return (kept if len(kept) else hist.items)[-last:]


def category_pattern(category: str) -> re.Pattern[str] | None:
    """A word pattern that catches a category named in prose ("Animation" -> "animated").

    The stem is the name's first five letters (whole word for shorter names), so adjectives
    and plurals match; "unknown"-style placeholders get no pattern.
    """
    name = re.sub(r"'s$", "", category.strip().lower())
    if not name or name in {"unknown", "(no genres listed)", "other"}:
        return None
    stem = name[:5] if len(name) >= 5 else name
    tail = r"[\w-]*" if len(name) >= 5 else r"s?"
    return re.compile(r"(?<![\w])" + re.escape(stem) + tail + r"(?![\w])")


def mentioned_categories(text: str, categories: Iterable[str]) -> set[str]:
    """Catalog categories that ``text`` names in prose."""
    low = text.lower()
    return {c for c in categories if (p := category_pattern(c)) is not None and p.search(low)}


def check_grounding(
    text: str,
    cited_history: Sequence[str],
    claimed_categories: Sequence[str],
    item: Item,
    history_ids: set[str],
    allowed_titles: Iterable[str],
    titles: TitleIndex,
    known_categories: Iterable[str] = (),
) -> tuple[bool, str]:
    """Is an LLM explanation grounded in the data?

    Rules: cited history items must be in the user's history; named titles must be a
    candidate or a history item; claimed categories, whether listed or named in the text
    (checked against ``known_categories``, the catalog's), must be the item's own.

    Returns:
        ``(ok, reason)``; reason is empty when ok.
    """
    if not text or not text.strip():
        return False, "empty explanation"
    bad_cites = [h for h in cited_history if h not in history_ids]
    if bad_cites:
        return False, f"cites items not in the history: {bad_cites[:3]}"
    own = {c.lower() for c in item.categories}
    bad_cats = [c for c in claimed_categories if c.lower() not in own]
    if bad_cats:
        return False, f"claims categories the item does not have: {bad_cats[:3]}"
    named = mentioned_categories(text, known_categories) - set(item.categories)
    if named:
        return False, f"names categories the item does not have: {sorted(named)[:3]}"
    low = text.lower()
    if any(snippet in low for snippet in _PROMPT_SNIPPETS):
        return False, "repeats the prompt"
    stray = titles.mentioned(text, allowed_titles)
    if stray:
        return False, f"names titles that are neither candidates nor history: {sorted(stray)[:3]}"
    return True, ""


@dataclass(frozen=True)
class Explanation:
    """The text shown for one item, where it came from, and what it rests on.

    ``grounded`` is False when an LLM's text failed the check (``failure`` says why) and the
    template is shown instead.
    """

    text: str | None
    source: str | None  # "llm", "template", or None when no text was asked for
    evidence: Evidence
    grounded: bool = True
    failure: str = ""


def explain_item(
    catalog: Catalog,
    item: int,
    ev: ItemEvidence,
    llm: LLMText | None,
    hist_ids: set[str],
    allowed_titles: Sequence[str],
) -> Explanation:
    """The LLM's text when it passes the grounding check, else the template."""
    ds = catalog.ds
    it = ds.items[item]
    near = [ds.items[h] for h in ev.nearest_history]
    template = Explanation(template_explanation(it, near, ev), "template", evidence_model(near, ev))
    if llm is None or not llm.text:
        return template
    ok, reason = check_grounding(
        llm.text,
        llm.cited,
        llm.categories,
        it,
        hist_ids,
        allowed_titles,
        catalog.titles,
        ds.categories,
    )
    if not ok:
        return Explanation(template.text, "template", template.evidence, False, reason)
    evidence = template.evidence
    if llm.cited:  # the LLM's own citations, with their titles
        evidence = Evidence(
            history_items=llm.cited,
            history_titles=tuple(ds.item(c).title for c in llm.cited),
            categories=tuple(ev.shared_categories),
        )
    return Explanation(llm.text, "llm", evidence)


@dataclass(frozen=True)
class ExplainedItems:
    """The answer's items, and what the grounding check replaced."""

    items: tuple[RecommendedItem, ...]
    ungrounded: int
    notes: tuple[str, ...]


def explain_items(
    catalog: Catalog,
    hist: History,
    k: int,
    candidates: Candidates,
    scored: ScoredCandidates,
    outcome: RerankOutcome,
    item_vectors: np.ndarray,
    write_explanations: bool = True,
) -> ExplainedItems:
    """The first ``k`` items of the final order with scores, evidence and explanations.

    Args:
        catalog: The catalog.
        hist: The request's history.
        k: List length.
        candidates: Where each candidate came from.
        scored: Model scores and order.
        outcome: The final order and the LLM's texts (if a tier answered).
        item_vectors: (n_items, d) the model's item vectors (evidence: nearest history items).
        write_explanations: False leaves ``explanation`` empty (evidence is still given).
    """
    ds = catalog.ds
    top = outcome.order[:k]
    pos, model_rank = scored.position(), scored.rank()
    evidence = item_evidence(catalog, hist, top, scored, item_vectors)
    allowed_titles = [ds.items[i].title for i in np.concatenate([hist.items, candidates.items])]
    hist_ids = {ds.items[i].item_id for i in hist.items}
    items: list[RecommendedItem] = []
    notes: list[str] = []
    for item, ev in zip(top, evidence, strict=True):
        j, it = pos[item], ds.items[item]
        llm = outcome.texts.get(item) if write_explanations else None
        ex = explain_item(catalog, item, ev, llm, hist_ids, allowed_titles)
        if ex.failure:
            notes.append(f"explanation of {it.item_id} replaced: {ex.failure}")
        items.append(
            RecommendedItem(
                item_id=it.item_id,
                title=it.title,
                year=it.year,
                categories=it.categories,
                score=round(outcome.score[item], 6),
                model_score=round(float(scored.fused[j]), 4),
                task_scores=TaskScoresOut(engagement=ev.engagement, like=ev.like, rating=ev.rating),
                model_rank=model_rank[item],
                llm_rank=outcome.llm_rank.get(item),
                source=candidates.sources[item],
                explanation=ex.text if write_explanations else None,
                grounded=ex.grounded,
                explanation_source=ex.source if write_explanations else None,
                evidence=ex.evidence,
            )
        )
    return ExplainedItems(tuple(items), len(notes), tuple(notes))


def item_evidence(
    catalog: Catalog,
    hist: History,
    items: Sequence[int],
    scored: ScoredCandidates,
    item_vectors: np.ndarray,
) -> list[ItemEvidence]:
    """Model evidence for each of ``items`` (candidates of ``scored``)."""
    pos = scored.position()
    anchors = explanation_anchors(hist)
    near = nearest_history(item_vectors[list(items)], item_vectors[anchors], anchors)
    user_counts = catalog.user_category_counts(hist)
    ts = scored.tasks
    return [
        ItemEvidence(
            near[r],
            catalog.shared_categories(item, user_counts),
            float(ts.engagement[pos[item]]),
            float(ts.like[pos[item]]),
            float(ts.rating[pos[item]]),
        )
        for r, item in enumerate(items)
    ]


def explain_one(
    catalog: Catalog,
    model: MultiTaskModel,
    hist: History,
    item: int,
    weights: FusionWeights,
) -> RecommendedItem:
    """Scores, evidence and a template explanation of one item for one history."""
    items = np.array([item])
    scored = score_candidates(items, model.task_scores(hist, items), weights)
    ev = item_evidence(catalog, hist, [item], scored, model.item_vectors())[0]
    ex = explain_item(catalog, item, ev, None, set(), ())
    it = catalog.ds.items[item]
    return RecommendedItem(
        item_id=it.item_id,
        title=it.title,
        year=it.year,
        categories=it.categories,
        score=float(scored.fused[0]),
        model_score=float(scored.fused[0]),
        task_scores=TaskScoresOut(engagement=ev.engagement, like=ev.like, rating=ev.rating),
        model_rank=1,
        explanation=ex.text,
        explanation_source=ex.source,
        evidence=ex.evidence,
    )
