"""Render a ``RerankRequest`` into the versioned prompt templates.

The catalog's words (``RerankRequest.words``: "book", "genre", ...) fill the templates, so one
prompt serves every domain; the local tier's few-shot examples are chosen by item noun.
"""

from __future__ import annotations

from agent.llm.types import DomainWords, PromptCandidate, PromptHistory, RerankRequest
from agent.prompts import load_prompt

RERANK_PROMPT = "rerank"
LOCAL_PROMPT = "rerank_local"


def _cats(c: tuple[str, ...], words: DomainWords) -> str:
    return ", ".join(c) if c else f"no {words.category}"


def _candidate_line(c: PromptCandidate, words: DomainWords) -> str:
    details = "; ".join(f"{name}: {value}" for name, value in c.details)
    return (
        f"{c.short_id}: {c.title}"
        + (f" ({c.year})" if c.year else "")
        + f" [{_cats(c.categories, words)}]"
        + (f" {{{details}}}" if details else "")
        + (f" — {c.text}" if c.text else "")
        + f" | model: engagement={c.engagement:.4f}, like={c.like:.2f}, rating={c.rating:.1f}"
        + (f" | raised by: {', '.join(c.support)}" if c.support else "")
    )


def chat_messages(req: RerankRequest) -> tuple[str, str]:
    """(system, user) messages for chat models."""
    p = load_prompt(RERANK_PROMPT)
    w = req.words
    scale = f" (on {w.rating_scale})" if w.rating_scale else ""
    history = (
        "\n".join(
            f"{h.short_id}: {h.title} ({_cats(h.categories, w)})"
            + (f", rated {h.rating:g}{scale}" if h.rating is not None else "")
            for h in req.history
        )
        or "(no history: a new person)"
    )
    candidates = "\n".join(_candidate_line(c, w) for c in req.candidates)
    profile = ", ".join(f"{name} {p:.0%}" for name, p in req.profile) or "unknown"
    language_rule = (
        f"Write every explanation in {req.language}."
        if req.language
        else "Write explanations in English."
    )
    system = p.render(
        "system",
        language_rule=language_rule,
        item=w.item,
        items=w.items,
        category=w.category,
        categories=w.categories,
    )
    user = p.render(
        "user",
        query=req.query or "(none)",
        history=history,
        profile=profile,
        candidates=candidates,
        k=str(req.k),
        category_title=w.category.capitalize(),
    )
    return system, user


def liked_history(req: RerankRequest, max_history: int = 10) -> list[PromptHistory]:
    """The most recent history items the person liked (rated at or above the scale's like
    threshold, or unrated), else the latest."""
    threshold = req.words.like_threshold if req.words.like_threshold is not None else 4.0
    liked = [h for h in req.history if h.rating is None or h.rating >= threshold]
    return (liked or list(req.history))[-max_history:]


def rank_prompt(req: RerankRequest, max_history: int = 10) -> str:
    """The ranking prefix for a base model: a candidate's title is scored as its continuation."""
    history = "\n".join(f"- {h.title}" for h in liked_history(req, max_history)) or "- (none yet)"
    w = req.words
    return load_prompt(LOCAL_PROMPT).render(
        "rank", history=history, item=w.item, items_title=w.items.capitalize()
    )


def reason_prompt(
    candidate: PromptCandidate, history: PromptHistory, words: DomainWords | None = None
) -> str:
    """A few-shot prompt whose continuation is a one-sentence reason.

    The examples are those written for the item noun (``reason_examples.book``), else the
    generic ones; an item without categories is described by its first detail (an author).
    """
    words = words or DomainWords()
    p = load_prompt(LOCAL_PROMPT)
    examples = p.sections.get(f"reason_examples.{words.item}", p.sections["reason_examples"])
    about = candidate.categories[:2] or tuple(v for _, v in candidate.details[:1])
    return p.render(
        "reason",
        examples=examples,
        title=candidate.title,
        categories=", ".join(about) if about else words.item,
        history_title=history.title,
    )


def prompt_version(local: bool = False) -> str:
    return load_prompt(LOCAL_PROMPT if local else RERANK_PROMPT).id
