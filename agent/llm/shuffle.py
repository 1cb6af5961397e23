"""Position-bias control for chat-model tiers: ask with ``m`` candidate orders, fuse the answers.

A chat model tends to favour candidates by where they stand in the prompt (first and last
places most). The recommender already shows candidates in a seeded shuffle, so no position is
tied to the model's rank; ``ShuffledTier`` goes further and asks the same question ``m``
times, each time with the candidates in another seeded order and renumbered ``C1..Cn`` in that
order, then fuses the ``m`` rankings by reciprocal rank (``sum 1 / (60 + rank)``). A candidate
that wins only by its place wins once; one the model prefers wherever it stands wins ``m``
times. The calls run concurrently (a server that serialises them costs ``m`` calls of latency).

Only chat tiers are wrapped (``TierChain`` does it for the remote tier when
``settings.llm_shuffles > 1``): the local tier scores every title by its own likelihood after
the same prefix, so the order of the candidates cannot change its ranking.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from agent.errors import TierError
from agent.llm.types import RankedPick, RerankOutput, RerankRequest, RerankTier, TierAnswer

#: The reciprocal-rank constant of the fusion of the ``m`` answers.
RRF_K = 60.0


def permutations(req: RerankRequest, m: int) -> list[list[int]]:
    """``m`` candidate orders (indices into ``req.candidates``): the request's own order first,
    then ``m - 1`` seeded shuffles (the seed is the candidates' ids, so a repeated request gets
    the same orders and its answer stays cacheable). Distinct while enough orders exist."""
    n = len(req.candidates)
    orders = [list(range(n))]
    digest = hashlib.sha256("|".join(c.item_id for c in req.candidates).encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    tries = 0
    while len(orders) < m:
        order = rng.permutation(n).tolist()
        tries += 1
        if order not in orders or tries > 20 * m:
            orders.append(order)
    return orders


def reordered(req: RerankRequest, order: list[int]) -> tuple[RerankRequest, dict[str, str]]:
    """The request with its candidates in ``order``, renumbered ``C1..Cn``, and the map from
    the new short ids back to the request's own."""
    cands = tuple(replace(req.candidates[j], short_id=f"C{pos + 1}") for pos, j in enumerate(order))
    back = {c.short_id: req.candidates[j].short_id for c, j in zip(cands, order, strict=True)}
    return replace(req, candidates=cands), back


def fuse_answers(answers: list[RerankOutput], maps: list[dict[str, str]]) -> RerankOutput:
    """One ranking from several answers, each in its own short ids (mapped back by ``maps``).

    Known candidates are fused by reciprocal rank over the answers (first place of an answer
    counts once per answer); each keeps the explanation of the answer that ranked it highest.
    Ids no answer could map (invented ones) and repeats within an answer are kept after the
    fused ranking, so the recommender's guard still counts them.
    """
    score: dict[str, float] = {}
    best: dict[str, tuple[int, RankedPick]] = {}
    leftovers: list[RankedPick] = []
    for output, back in zip(answers, maps, strict=True):
        seen: set[str] = set()
        rank = 0
        for pick in output.ranking:
            sid = back.get(pick.id.strip().upper())
            if sid is None or sid in seen:
                leftovers.append(pick if sid is None else pick.model_copy(update={"id": sid}))
                continue
            seen.add(sid)
            rank += 1
            score[sid] = score.get(sid, 0.0) + 1.0 / (RRF_K + rank)
            if sid not in best or rank < best[sid][0]:
                best[sid] = (rank, pick.model_copy(update={"id": sid}))
    fused = sorted(score, key=lambda s: -score[s])  # stable: first answers first on ties
    return RerankOutput(ranking=[best[s][1] for s in fused] + leftovers)


class ShuffledTier:
    """A chat tier asked ``m`` times per request with differently shuffled candidates.

    Answers when at least one of the ``m`` calls answers (the note says how many did);
    tokens are the sum over the calls.

    Args:
        inner: The tier to ask (the remote tier).
        m: Candidate orders per request (>= 2 to make a difference).
    """

    def __init__(self, inner: RerankTier, m: int) -> None:
        if m < 1:
            raise ValueError(f"m must be >= 1, got {m}")
        self.inner = inner
        self.m = m
        self.name = inner.name
        self.model_name = inner.model_name
        self.prompt_id = inner.prompt_id

    def rerank(self, req: RerankRequest) -> TierAnswer:
        """Ask with every order, fuse what came back.

        Raises:
            TierError: no call answered (the first call's reason).
        """
        if not req.candidates:
            raise TierError("no candidates to rank")
        asked = [reordered(req, order) for order in permutations(req, self.m)]
        with ThreadPoolExecutor(max_workers=self.m) as pool:
            futures = [pool.submit(self.inner.rerank, r) for r, _ in asked]
            outcomes: list[TierAnswer | TierError] = []
            for f in futures:
                try:
                    outcomes.append(f.result())
                except TierError as e:
                    outcomes.append(e)
        good = [
            (o, back)
            for o, (_, back) in zip(outcomes, asked, strict=True)
            if isinstance(o, TierAnswer)
        ]
        if not good:
            raise TierError(str(outcomes[0]))
        fused = fuse_answers([o.output for o, _ in good], [back for _, back in good])
        return TierAnswer(
            fused,
            tokens_in=sum(o.tokens_in for o, _ in good),
            tokens_out=sum(o.tokens_out for o, _ in good),
            model=good[0][0].model,
            notes=[f"{len(good)} of {self.m} shuffled orders answered"],
        )
