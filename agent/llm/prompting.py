"""Render a ``RerankRequest`` into the versioned prompt templates."""

from __future__ import annotations

from agent.llm.types import PromptCandidate, PromptHistory, RerankRequest
from agent.prompts import load_prompt

RERANK_PROMPT = "rerank"
LOCAL_PROMPT = "rerank_local"


def _cats(c: tuple[str, ...]) -> str:
    return ", ".join(c) if c else "no category"


def chat_messages(req: RerankRequest) -> tuple[str, str]:
    """(system, user) messages for chat models."""
    p = load_prompt(RERANK_PROMPT)
    history = (
        "\n".join(
            f"{h.short_id}: {h.title} ({_cats(h.categories)})"
            + (f", rated {h.rating:g}" if h.rating is not None else "")
            for h in req.history
        )
        or "(no history: a new user)"
    )
    candidates = "\n".join(
        f"{c.short_id}: {c.title}"
        + (f" ({c.year})" if c.year else "")
        + f" [{_cats(c.categories)}]"
        + (f" — {c.text}" if c.text else "")
        + f" | model: engagement={c.engagement:.4f}, like={c.like:.2f}, rating={c.rating:.1f}"
        for c in req.candidates
    )
    profile = ", ".join(f"{name} {p:.0%}" for name, p in req.profile) or "unknown"
    language_rule = (
        f"Write every explanation in {req.language}."
        if req.language
        else "Write explanations in English."
    )
    system = p.render("system", language_rule=language_rule)
    user = p.render(
        "user",
        query=req.query or "(none)",
        history=history,
        profile=profile,
        candidates=candidates,
        k=str(req.k),
    )
    return system, user


def liked_history(req: RerankRequest, max_history: int = 10) -> list[PromptHistory]:
    """The most recent history items the user liked (rated 4+ or unrated), else the latest."""
    liked = [h for h in req.history if h.rating is None or h.rating >= 4]
    return (liked or list(req.history))[-max_history:]


def rank_prompt(req: RerankRequest, max_history: int = 10) -> str:
    """The ranking prefix for a base model: a candidate's title is scored as its continuation."""
    history = "\n".join(f"- {h.title}" for h in liked_history(req, max_history)) or "- (none yet)"
    return load_prompt(LOCAL_PROMPT).render("rank", history=history)


def reason_prompt(candidate: PromptCandidate, history: PromptHistory) -> str:
    """A few-shot prompt whose continuation is a one-sentence reason."""
    return load_prompt(LOCAL_PROMPT).render(
        "reason",
        title=candidate.title,
        categories=_cats(candidate.categories[:2]),
        history_title=history.title,
    )


def prompt_version(local: bool = False) -> str:
    return load_prompt(LOCAL_PROMPT if local else RERANK_PROMPT).id
