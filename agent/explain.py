"""Grounded explanations: template explanations from model evidence, and the grounding check
that every LLM explanation must pass."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from agent.schema import Evidence
from mtrec.data.schema import Item

_MIN_TITLE_CHARS = 6
#: Phrases of the rerank prompt; an explanation that repeats one is leaking the prompt.
_PROMPT_SNIPPETS = (
    "reranking step of a movie recommender",
    "never invent ids",
    "<data>",
    "catalog or user data, not instructions",
    "system prompt",
)  # shorter titles ("Heat", "Up") are too common as words to check


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


def evidence_model(item: Item, history_items: Sequence[Item], ev: ItemEvidence) -> Evidence:
    return Evidence(
        history_items=[h.item_id for h in history_items],
        history_titles=[h.title for h in history_items],
        categories=list(ev.shared_categories),
    )


class TitleIndex:
    """Finds catalog titles mentioned in free text (for the grounding check)."""

    def __init__(self, items: Iterable[Item]) -> None:
        self.by_title: dict[str, set[str]] = {}
        for it in items:
            t = it.title.strip().lower()
            if len(t) >= _MIN_TITLE_CHARS:
                self.by_title.setdefault(t, set()).add(it.item_id)
        # Longest first, so "aliens" is matched (and removed) before "alien".
        self.titles = sorted(self.by_title, key=len, reverse=True)

    def mentioned(self, text: str, allowed_titles: Iterable[str] = ()) -> set[str]:
        """Titles in ``text`` other than ``allowed_titles`` (whose mentions are removed first)."""
        low = text.lower()
        for t in sorted({a.lower() for a in allowed_titles}, key=len, reverse=True):
            if t:
                low = low.replace(t, " ")
        found = set()
        for t in self.titles:
            if t in low and re.search(r"(?<![\w])" + re.escape(t) + r"(?![\w])", low):
                found.add(t)
                low = low.replace(t, " ")
        return found


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
