"""Render a ``RerankRequest`` into the versioned prompt templates."""

from __future__ import annotations

from agent.llm.types import RerankRequest
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


def completion_prompt(req: RerankRequest, max_history: int = 8) -> str:
    """A few-shot completion prompt for a small local base model."""
    p = load_prompt(LOCAL_PROMPT)
    history = (
        "; ".join(
            f"{h.title} ({_cats(h.categories[:2])})" + (f" rated {h.rating:g}" if h.rating else "")
            for h in req.history[-max_history:]
        )
        or "none"
    )
    candidates = " | ".join(
        f"{c.short_id} {c.title} ({_cats(c.categories[:2])})" for c in req.candidates
    )
    return p.render("completion", history=history, candidates=candidates)


def prompt_version(local: bool = False) -> str:
    return load_prompt(LOCAL_PROMPT if local else RERANK_PROMPT).id
