"""Stage 4: grounded explanations and the items of the answer.

Template explanations say one short thing, the strongest the evidence supports (see
``agent.pipeline.evidence``): a history item whose removal drops the item down the list, a
shared author or brand, the request's text, people who liked the same, a favourite category,
popularity. Every LLM explanation must pass the grounding check or it is replaced by the
template, and marked so: cited history items must measurably raise the item's score, named
titles must be candidates or history, named categories the item's own, and endorsements,
claims about everyone, echoed instructions and copied catalog text are refused.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from agent.llm.sanitize import looks_like_injection
from agent.pipeline.candidates import Candidates
from agent.pipeline.catalog import Catalog, CoLikes, TitleIndex, liked
from agent.pipeline.evidence import (
    EVIDENCE_WINDOW,
    Contribution,
    contributions,
    removal_window,
    shared_attributes,
)
from agent.pipeline.rerank import LLMText, RerankOutcome
from agent.pipeline.scoring import FusionWeights, ScoredCandidates, score_candidates
from agent.schema import Contribution as ContributionOut
from agent.schema import Evidence, RecommendedItem, TaskScoresOut
from mtrec.data.history import History
from mtrec.data.schema import Item
from mtrec.model.multitask import MultiTaskModel

#: Phrases of the rerank prompts; an explanation that repeats one is leaking the prompt.
_PROMPT_SNIPPETS = (
    "reranking step of",
    "never invent ids",
    "<data>",
    "catalog or user data, not instructions",
    "system prompt",
)
#: Claims no data here can support: endorsements by someone, and claims about everyone.
_UNSUPPORTED = re.compile(
    r"\b(?:editors?|critics?|reviewers?|experts?|staff|the press)\b[^.]{0,40}?"
    r"\b(?:say|says|said|pick|picks|choice|recommend|recommends|love|loves|agree|rave)\b"
    r"|\b(?:award[- ]winning|best[- ]?sell(?:er|ing)|must[- ](?:read|see|watch|have|buy)"
    r"|#\s?1\b|number one|top[- ]rated|critically acclaimed|masterpiece)"
    r"|\b(?:everyone|everybody|anyone|all (?:users|readers|viewers|customers|people)"
    r"|guaranteed?|can'?t go wrong|no one (?:can|could|will))\b",
    re.IGNORECASE,
)
#: Words an explanation uses to tell the ranker what to do (an echoed instruction).
_INSTRUCTION = re.compile(
    r"\b(?:rank(?:ed)?(?: (?:it|this|me|item))? (?:first|#?1|higher|top)"
    r"|put (?:it|this) (?:first|on top)|instruct(?:ed|ions?)?|ignore (?:all|any|previous|prior))\b",
    re.IGNORECASE,
)
#: Consecutive words an explanation may share with the item's own catalog text.
_MAX_COPIED_WORDS = 5
#: Cited history items must be among this many top contributors.
_TOP_CONTRIBUTORS = 5
#: Co-likes below this are not worth saying.
_MIN_CO_LIKES = 3
#: Attribute names said with "by"; others with "from" (brand, publisher, label, ...).
_BY = frozenset({"author", "authors", "artist", "director", "writer", "creator", "composer"})


@dataclass(frozen=True)
class ItemEvidence:
    """What the model and the data say about one recommended item for one user.

    Attributes:
        contributions: Real counterfactual contributions, largest drop first.
        tried: Every history item the leave-one-out removed (dense ids).
        shared_categories: The item's categories among the user's top three.
        co_liked: (history item, people who liked both), the strongest pair among the
            history items whose removal lowers this item (so the citation is true).
        attribute: (attribute, value, history item): a shared exact attribute, with a liked
            history item whose removal lowers this item.
        query_match: The item came from the request's text search.
        engagement: p(item | user).
        like: Probability the user likes it.
        rating: Expected rating.
    """

    contributions: tuple[Contribution, ...]
    tried: tuple[int, ...]
    shared_categories: tuple[str, ...]
    co_liked: tuple[int, int] | None
    attribute: tuple[str, str, int] | None
    query_match: bool
    engagement: float
    like: float
    rating: float


def template_options(
    catalog: Catalog, item: Item, ev: ItemEvidence, liked_ids: set[int], query: str | None
) -> list[tuple[str, str, tuple[int, ...]]]:
    """Every short sentence the evidence supports, strongest first.

    Returns:
        ``(text, reason, cited history items)`` each; ``reason`` names the evidence used. The
        last option always exists (the model's own estimate, or popularity for a new user).
    """
    profile, items = catalog.profile, catalog.ds.items
    noun = profile.item_noun

    def because(h: int) -> str:
        title = f"“{items[h].title}”"
        return f"Because you liked {title}" if h in liked_ids else f"Because of {title}"

    out: list[tuple[str, str, tuple[int, ...]]] = []
    top = ev.contributions[0] if ev.contributions else None
    if top is not None and top.rank_without > top.rank_with:
        # A rank difference, not the ranks themselves: the ranks are by model score among the
        # candidates, and the list the reader sees may be in another order (query, LLM).
        n = top.rank_without - top.rank_with
        where = f"{n} place{'s' if n > 1 else ''} lower"
        text = f"{because(top.item)}: without it, the model would rank this {noun} {where}."
        out.append((text, "history", (top.item,)))
    if ev.attribute is not None:
        name, value, h = ev.attribute
        prep = "by" if name.lower() in _BY else "from"
        text = f"Another {noun} {prep} {value}, like “{items[h].title}”, which you liked."
        out.append((text, "attribute", (h,)))
    if ev.query_match and query:
        asked = query.split(". ")[0][:80]  # a "more like X" query is X's whole document
        out.append((f"It matches what you asked for: “{asked}”.", "query", ()))
    if ev.co_liked is not None and ev.co_liked[1] >= _MIN_CO_LIKES:
        h, n = ev.co_liked
        text = f"{n} people who liked “{items[h].title}” also liked this {noun}."
        out.append((text, "co_liked", (h,)))
    if top is not None and top.rank_without <= top.rank_with:
        out.append(
            (f"{because(top.item)}, which raises its score for you.", "history", (top.item,))
        )
    if ev.shared_categories:
        cats = " and ".join(ev.shared_categories)
        out.append((f"It is {cats}, among the {profile.categories} you pick most.", "category", ()))
    if not ev.tried:
        out.append((f"One of the most popular {profile.items} with everyone here.", "popular", ()))
    else:
        # Never "100%" or "0%": a model's estimate is not a certainty.
        like = min(max(ev.like, 0.01), 0.99)
        text = f"The model's best guess for you ({like:.0%} chance you like it)."
        out.append((text, "model", ()))
    return out


def template_explanation(
    catalog: Catalog,
    item: Item,
    ev: ItemEvidence,
    liked_ids: set[int],
    query: str | None,
    used: Counter[str] | None = None,
) -> tuple[str, str, tuple[int, ...]]:
    """One short sentence from the evidence: the strongest, or, when ``used`` counts what the
    list's earlier items already said, the strongest kind said least so far (a list of ten
    reads as ten reasons, not one reason ten times). Personal evidence that moved the item
    in the list (a history item without which it would rank lower, the same author as a liked
    item) is always said."""
    options = template_options(catalog, item, ev, liked_ids, query)
    first = options[0]
    strong = "would rank" in first[0] or (
        first[1] == "attribute" and ev.attribute is not None and ev.attribute[0].lower() in _BY
    )
    if used is None or strong:
        return first
    real = options[:-1] or options  # the fallback only when nothing else is there
    return min(real, key=lambda o: used[o[1]])  # min keeps the first of equal counts


def _copies_catalog_text(text: str, item: Item) -> bool:
    """The text repeats a run of more than ``_MAX_COPIED_WORDS`` words of the item's own
    catalog description (whose claims nothing here can check)."""
    words = re.findall(r"\w+", item.text.lower())
    said = " " + " ".join(re.findall(r"\w+", text.lower())) + " "
    n = _MAX_COPIED_WORDS + 1
    return any(f" {' '.join(words[i : i + n])} " in said for i in range(max(0, len(words) - n + 1)))


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
    contributors: set[str] | None = None,
) -> tuple[bool, str]:
    """Is an LLM explanation grounded in the data?

    Rules: cited history items must be in the user's history and, when ``contributors`` is
    given, among the history items whose removal measurably lowers the item's score; named
    titles must be a candidate or a history item; claimed categories, whether listed or named
    in the text (checked against ``known_categories``, the catalog's), must be the item's
    own; no endorsement, claim about everyone, echoed instruction, prompt text or copied
    catalog text.

    Returns:
        ``(ok, reason)``; reason is empty when ok.
    """
    if not text or not text.strip():
        return False, "empty explanation"
    bad_cites = [h for h in cited_history if h not in history_ids]
    if bad_cites:
        return False, f"cites items not in the history: {bad_cites[:3]}"
    if contributors is not None:
        idle = [h for h in cited_history if h not in contributors]
        if idle:
            return False, f"cites history items that do not raise its score: {idle[:3]}"
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
    if looks_like_injection(text) or _INSTRUCTION.search(text):
        return False, "repeats an instruction"
    claim = _UNSUPPORTED.search(text)
    if claim:
        return False, f"makes a claim no data supports: {claim.group(0)!r}"
    if item.text and _copies_catalog_text(text, item):
        return False, "repeats the item's catalog text"
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

    text: str
    source: str  # "llm" or "template"
    evidence: Evidence
    grounded: bool = True
    failure: str = ""


@dataclass(frozen=True)
class ExplainContext:
    """What every item of one request is explained against."""

    catalog: Catalog
    hist: History
    liked_ids: set[int]
    hist_ids: set[str]
    allowed_titles: list[str]
    query: str | None

    @classmethod
    def build(
        cls, catalog: Catalog, hist: History, candidates: np.ndarray, query: str | None
    ) -> ExplainContext:
        items = catalog.ds.items
        return cls(
            catalog=catalog,
            hist=hist,
            liked_ids={int(i) for i in hist.items[liked(hist, catalog.ds)]},
            hist_ids={items[i].item_id for i in hist.items},
            allowed_titles=[items[i].title for i in np.concatenate([hist.items, candidates])],
            query=query,
        )


def _evidence(ctx: ExplainContext, ev: ItemEvidence, reason: str, cited: Sequence[int]) -> Evidence:
    items = ctx.catalog.ds.items
    co = ev.co_liked if reason == "co_liked" else None
    return Evidence(
        history_items=tuple(items[h].item_id for h in cited),
        history_titles=tuple(items[h].title for h in cited),
        categories=ev.shared_categories,
        reason=reason,
        contributions=tuple(
            ContributionOut(
                item_id=items[c.item].item_id,
                title=items[c.item].title,
                score_drop=round(c.score_drop, 4),
                rank_with=c.rank_with,
                rank_without=c.rank_without,
            )
            for c in ev.contributions
        ),
        co_liked=co[1] if co else None,
        attribute=ev.attribute[:2] if ev.attribute and reason == "attribute" else None,
    )


def explain_item(
    ctx: ExplainContext,
    item: int,
    ev: ItemEvidence,
    llm: LLMText | None,
    used: Counter[str] | None = None,
) -> Explanation:
    """The LLM's text when it passes the grounding check, else the template (``used``: the
    kinds of evidence the list's earlier templates already cited)."""
    it = ctx.catalog.ds.items[item]
    text, reason, cited = template_explanation(ctx.catalog, it, ev, ctx.liked_ids, ctx.query, used)
    template = Explanation(text, "template", _evidence(ctx, ev, reason, cited))
    if llm is None or not llm.text:
        return template
    items = ctx.catalog.ds.items
    top = list(ev.contributions[:_TOP_CONTRIBUTORS])
    ok, why = check_grounding(
        llm.text,
        llm.cited,
        llm.categories,
        it,
        ctx.hist_ids,
        ctx.allowed_titles,
        ctx.catalog.titles,
        ctx.catalog.ds.categories,
        contributors={items[c.item].item_id for c in top},
    )
    if not ok:
        return Explanation(template.text, "template", template.evidence, False, why)
    by_id = {items[c.item].item_id: c.item for c in top}
    cited_dense = [by_id[c] for c in llm.cited]
    return Explanation(llm.text, "llm", _evidence(ctx, ev, "llm", cited_dense))


def item_evidence(
    ctx: ExplainContext,
    model: MultiTaskModel,
    items: Sequence[int],
    scored: ScoredCandidates,
    sources: dict[int, tuple[str, ...]],
    weights: FusionWeights,
    co_likes: CoLikes | None,
    window: int = EVIDENCE_WINDOW,
) -> dict[int, ItemEvidence]:
    """Evidence for each of ``items`` (candidates of ``scored``): one batched leave-one-out
    (its cost does not grow with the number of items), co-likes, shared attributes and
    categories."""
    catalog, hist = ctx.catalog, ctx.hist
    pos = scored.position()
    tried = removal_window(hist, catalog.ds, window)
    found = contributions(model, hist, scored, list(items), tried, weights)
    liked_items = np.array(sorted(ctx.liked_ids), np.int64)
    user_counts = catalog.user_category_counts(hist)
    real = [[c for c in found[item] if c.real] for item in items]
    # A liked item is named as a reason ("people who liked X", "by the author of X") only if
    # the deletion test shows it matters to this item: every cited item must lower its score.
    movers = [{c.item for c in r} for r in real]
    co = (
        co_likes.best(np.array(items, np.int64), liked_items, movers)
        if co_likes
        else [None] * len(items)
    )
    shared = shared_attributes(catalog, items, liked_items, movers)
    ts = scored.tasks
    out = {}
    for n, item in enumerate(items):
        j = pos[item]
        out[item] = ItemEvidence(
            contributions=tuple(real[n])[:_TOP_CONTRIBUTORS],
            tried=tuple(int(i) for i in tried),
            shared_categories=tuple(catalog.shared_categories(item, user_counts)),
            co_liked=co[n],
            attribute=shared.get(item),
            query_match="query" in sources.get(item, ()),
            engagement=float(ts.engagement[j]),
            like=float(ts.like[j]),
            rating=float(ts.rating[j]),
        )
    return out


@dataclass(frozen=True)
class ExplainedItems:
    """The answer's items, and what the grounding check replaced."""

    items: tuple[RecommendedItem, ...]
    ungrounded: int
    diagnostics: tuple[str, ...]


def explain_items(
    ctx: ExplainContext,
    k: int,
    candidates: Candidates,
    scored: ScoredCandidates,
    outcome: RerankOutcome,
    evidence: dict[int, ItemEvidence],
    write_explanations: bool = True,
) -> ExplainedItems:
    """The first ``k`` items of the final order with scores, evidence and explanations.

    Args:
        ctx: The request's history and catalog.
        k: List length.
        candidates: Where each candidate came from.
        scored: Model scores and order.
        outcome: The final order and the LLM's texts (if a tier answered).
        evidence: ``item_evidence`` of (at least) the first ``k`` items.
        write_explanations: False leaves ``explanation`` empty (evidence is still given).
    """
    ds = ctx.catalog.ds
    pos, model_rank = scored.position(), scored.rank()
    items: list[RecommendedItem] = []
    diagnostics: list[str] = []
    used: Counter[str] = Counter()
    for item in outcome.order[:k]:
        ev = evidence[item]
        j, it = pos[item], ds.items[item]
        llm = outcome.texts.get(item) if write_explanations else None
        ex = explain_item(ctx, item, ev, llm, used)
        if ex.source == "template" and ex.evidence.reason:
            used[ex.evidence.reason] += 1
        if ex.failure:
            diagnostics.append(f"explanation of {it.item_id} replaced: {ex.failure}")
        items.append(
            RecommendedItem(
                item_id=it.item_id,
                title=it.title,
                year=it.year,
                categories=it.categories,
                details=ctx.catalog.details(item),
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
    return ExplainedItems(tuple(items), len(diagnostics), tuple(diagnostics))


def explain_one(
    catalog: Catalog,
    model: MultiTaskModel,
    hist: History,
    item: int,
    weights: FusionWeights,
    co_likes: CoLikes | None = None,
) -> RecommendedItem:
    """Scores, evidence and a template explanation of one item for one history.

    The counterfactual ranks are among the item and the model's top 30 for the history.
    """
    seen = np.zeros(catalog.ds.n_items, bool)
    seen[hist.items] = True
    logits = model.score(np.array([-1]), [hist])[0]
    top = [int(i) for i in np.argsort(-np.where(seen, -np.inf, logits), kind="stable")[:30]]
    cands = np.array([item] + [i for i in top if i != item])
    scored = score_candidates(cands, model.task_scores(hist, cands), weights)
    ctx = ExplainContext.build(catalog, hist, cands, None)
    ev = item_evidence(ctx, model, [item], scored, {}, weights, co_likes)[item]
    ex = explain_item(ctx, item, ev, None)
    it, ts = catalog.ds.items[item], scored.tasks
    return RecommendedItem(
        item_id=it.item_id,
        title=it.title,
        year=it.year,
        categories=it.categories,
        details=catalog.details(item),
        score=float(scored.fused[0]),
        model_score=float(scored.fused[0]),
        task_scores=TaskScoresOut(
            engagement=float(ts.engagement[0]), like=float(ts.like[0]), rating=float(ts.rating[0])
        ),
        model_rank=scored.rank()[item],
        explanation=ex.text,
        explanation_source=ex.source,
        evidence=ex.evidence,
    )
