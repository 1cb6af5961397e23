"""Stage 3: the LLM rerank through the tier chain, its guard, and the fusion with the model.

Candidates reach the LLM under short ids (C1, C2, ...) in a seeded shuffle, so that position
cannot pass for preference; history items under H1, H2, ... . Whatever comes back goes through
``guard``: unknown ids, duplicates and missing candidates are counted, never trusted. Items
whose own catalog text tries to steer an LLM keep their model rank.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.errors import redact
from agent.llm.chain import TierChain
from agent.llm.sanitize import clean_text, looks_like_injection
from agent.llm.types import (
    DomainWords,
    PromptCandidate,
    PromptHistory,
    RerankOutput,
    RerankRequest,
)
from agent.pipeline.catalog import Catalog
from agent.pipeline.fusion import reciprocal_rank_fusion
from agent.pipeline.scoring import ScoredCandidates
from agent.schema import Dropped, Fallback, Tier, TierChoice
from mtrec.data.history import History

#: Candidate text shown to the LLM is capped at this many characters.
PROMPT_TEXT_CHARS = 200
#: History items shown to the LLM.
PROMPT_HISTORY = 15


@dataclass(frozen=True)
class LLMText:
    """What the LLM wrote about one of its picks (already cleaned and redacted)."""

    text: str
    cited: tuple[str, ...]  # item ids of cited history items ("?H9" for an unknown short id)
    categories: tuple[str, ...]


@dataclass(frozen=True)
class GuardedAnswer:
    """An LLM answer reduced to what may be used.

    Attributes:
        order: Every candidate once: the LLM's accepted picks first, then the rest in model
            order.
        texts: The explanation of each accepted pick.
        dropped: What the guard removed.
    """

    order: list[int]
    texts: dict[int, LLMText]
    dropped: Dropped


@dataclass(frozen=True)
class RerankOutcome:
    """What the rerank stage hands on: the final order and who produced it.

    ``tier`` is ``none`` when no LLM answered (then the order is the model's); ``llm_weight``
    is the weight the LLM's order was fused with (None when no LLM answered).
    """

    tier: Tier
    order: list[int]
    score: dict[int, float]
    fallbacks: tuple[Fallback, ...] = ()
    llm_order: list[int] = field(default_factory=list)
    llm_rank: dict[int, int] = field(default_factory=dict)
    texts: dict[int, LLMText] = field(default_factory=dict)
    dropped: Dropped = field(default_factory=Dropped)
    prompt_id: str | None = None
    llm_model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    llm_weight: float | None = None


#: The fusion weight of an answer, from the tier that gave it and its model name.
WeightFor = Callable[[Tier, str], float]


@dataclass(frozen=True)
class PromptIds:
    """The short ids of one rerank request."""

    candidates: dict[str, int]  # "C3" -> dense item id
    history: dict[str, str]  # "H2" -> item id


def query_for_llm(query: str | None) -> tuple[str | None, tuple[str, ...]]:
    """The query as the LLM may see it, and a note when it is withheld.

    Like hostile catalog text, a query that reads like an instruction still drives the
    semantic search, but never reaches the LLM.
    """
    if query and looks_like_injection(query):
        return None, ("the query reads like an instruction; not shown to the LLM",)
    return query, ()


def shuffle_seed(user_id: str | None, hist: History) -> int:
    """The candidate shuffle's seed: stable for a user and recent history (cacheable answers)."""
    digest = hashlib.sha256(f"{user_id}|{hist.items[-20:].tolist()}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def build_request(
    catalog: Catalog,
    hist: History,
    scored: ScoredCandidates,
    profile: Sequence[tuple[str, float]],
    k: int,
    query: str | None,
    language: str | None,
    seed: int,
    support: Mapping[int, Sequence[int]] | None = None,
) -> tuple[RerankRequest, PromptIds]:
    """The sanitised request every tier reranks, and its short-id maps.

    ``support`` gives, per candidate, the history items (dense ids) whose removal lowers its
    model score; the request names them by short id so a tier can cite them.
    """
    items = catalog.ds.items
    shown = list(scored.order)
    np.random.default_rng(seed).shuffle(shown)  # position must not pass for preference
    pos = scored.position()
    short_to_item = {f"C{j + 1}": item for j, item in enumerate(shown)}
    recent = hist.items[-PROMPT_HISTORY:]
    short_of = {int(i): f"H{j + 1}" for j, i in enumerate(recent)}  # the latest occurrence
    support = support or {}
    ts = scored.tasks
    candidates = tuple(
        PromptCandidate(
            short_id=s,
            item_id=items[i].item_id,
            title=clean_text(items[i].title, 120),
            year=items[i].year,
            categories=items[i].categories,
            text=clean_text(items[i].text, PROMPT_TEXT_CHARS),
            engagement=float(ts.engagement[pos[i]]),
            like=float(ts.like[pos[i]]),
            rating=float(ts.rating[pos[i]]),
            details=tuple(
                (name, clean_text(values[i], 80))
                for name, values in catalog.values.items()
                if values[i]
            ),
            support=tuple(short_of[h] for h in support.get(i, ()) if h in short_of),
        )
        for s, i in short_to_item.items()
    )
    values = hist.values[-PROMPT_HISTORY:]
    history = tuple(
        PromptHistory(
            f"H{j + 1}",
            items[i].item_id,
            clean_text(items[i].title, 120),
            items[i].categories,
            None if np.isnan(v) else float(v),
        )
        for j, (i, v) in enumerate(zip(recent, values, strict=True))
    )
    short_hist = {h.short_id: h.item_id for h in history}
    p = catalog.profile
    words = DomainWords(
        p.item_noun, p.items, p.category_noun, p.categories, p.rating_scale, p.like_threshold
    )
    request = RerankRequest(history, candidates, tuple(profile)[:5], k, query, language, words)
    return request, PromptIds(short_to_item, short_hist)


def guard(output: RerankOutput, ids: PromptIds, model_order: Sequence[int]) -> GuardedAnswer:
    """Keep only candidate ids, once each; append missing candidates in model order."""
    unknown = duplicate = 0
    order: list[int] = []
    texts: dict[int, LLMText] = {}
    for pick in output.ranking:
        sid = pick.id.strip().upper()
        if sid not in ids.candidates:
            unknown += 1
            continue
        item = ids.candidates[sid]
        if item in texts:
            duplicate += 1
            continue
        order.append(item)
        texts[item] = LLMText(
            text=redact(clean_text(pick.explanation, 600)),  # a model may echo a key
            cited=tuple(ids.history.get(h.strip().upper(), f"?{h}") for h in pick.cited_history),
            categories=tuple(pick.categories),
        )
    missing = [i for i in model_order if i not in texts]
    dropped = Dropped(unknown=unknown, duplicate=duplicate, missing=len(missing))
    return GuardedAnswer(order + missing, texts, dropped)


def rerank(
    chain: TierChain,
    request: RerankRequest,
    ids: PromptIds,
    scored: ScoredCandidates,
    start: TierChoice,
    llm_weight: float | WeightFor,
    suspicious: np.ndarray,
) -> RerankOutcome:
    """Ask the chain from ``start`` down; fuse an answer with the model's order.

    The final score is weighted RRF of the model order (``1 - w``) and the LLM's order
    (``w``), where ``w`` is ``llm_weight``, or ``llm_weight(tier, model)`` for the tier that
    answered (``Settings.weight_for``: per tier, per calibrated model).
    """
    result = chain.run(request, start)
    model_order = scored.order
    if result.answer is None:
        return RerankOutcome(Tier.NONE, model_order, scored.score, tuple(result.fallbacks))
    if callable(llm_weight):
        llm_weight = llm_weight(result.tier, result.answer.model)
    guarded = guard(result.answer.output, ids, model_order)
    # Items whose catalog text tries to steer the LLM keep their model rank.
    picked = [i for i in guarded.order[: len(guarded.texts)] if not suspicious[i]]
    chosen = set(picked)
    llm_order = picked + [i for i in model_order if i not in chosen]
    rrf = reciprocal_rank_fusion([model_order, llm_order], [1 - llm_weight, llm_weight])
    score = {i: rrf.get(i, 0.0) for i in model_order}
    return RerankOutcome(
        tier=result.tier,
        order=sorted(model_order, key=lambda i: -score[i]),
        score=score,
        fallbacks=tuple(result.fallbacks),
        llm_order=llm_order,
        llm_rank={item: r for r, item in enumerate(picked, start=1)},  # only the LLM's own picks
        texts=guarded.texts,
        dropped=guarded.dropped,
        prompt_id=result.prompt_id,
        llm_model=result.answer.model,
        tokens_in=result.answer.tokens_in,
        tokens_out=result.answer.tokens_out,
        llm_weight=llm_weight,
    )
