"""Position-bias control (``llm_shuffles``): m candidate orders per request, fused by rank.

The tiers here are stand-ins with a known bias, so the effect of the shuffles can be asserted:
a real small model's bias is measured in BENCHMARKS.md instead.
"""

from __future__ import annotations

import threading

import pytest

from agent.errors import TierError
from agent.llm.chain import TierChain
from agent.llm.shuffle import ShuffledTier, fuse_answers, permutations, reordered
from agent.llm.types import (
    PromptCandidate,
    PromptHistory,
    RankedPick,
    RerankOutput,
    RerankRequest,
    TierAnswer,
)
from agent.schema import Tier, TierChoice
from agent.settings import Settings

#: The stand-ins' "true" preference: item ids, best first.
PREFERENCE = ["7", "3", "5", "1", "0", "2", "4", "6"]


def _request(n: int = 8) -> RerankRequest:
    cands = tuple(
        PromptCandidate(f"C{j + 1}", str(j), f"Title {j}", None, ("Drama",), "", 0.1, 0.5, 3.0)
        for j in range(n)
    )
    history = (PromptHistory("H1", "99", "Old favourite", ("Drama",), 5.0),)
    return RerankRequest(history, cands, (), k=3)


class PositionBiased:
    """Puts whatever is shown first on top, then follows the true preference."""

    name = Tier.REMOTE
    model_name = "biased"
    prompt_id = "biased@v1"

    def __init__(self, fail_on: int | None = None) -> None:
        self.seen: list[list[str]] = []
        self.fail_on = fail_on
        self._lock = threading.Lock()

    def rerank(self, req: RerankRequest) -> TierAnswer:
        with self._lock:
            self.seen.append([c.item_id for c in req.candidates])
            call = len(self.seen)
        if call == self.fail_on:
            raise TierError("remote endpoint answered HTTP 503")
        short = {c.item_id: c.short_id for c in req.candidates}
        first = req.candidates[0].item_id
        order = [first] + [i for i in PREFERENCE if i != first]
        picks = [
            RankedPick(id=short[i], explanation=f"pick {i}", cited_history=["H1"]) for i in order
        ]
        return TierAnswer(RerankOutput(ranking=picks), tokens_in=100, tokens_out=20, model="b")


def _item_order(req: RerankRequest, output: RerankOutput) -> list[str]:
    by_short = {c.short_id: c.item_id for c in req.candidates}
    return [by_short[p.id] for p in output.ranking]


def test_orders_are_seeded_distinct_and_renumbered() -> None:
    req = _request()
    orders = permutations(req, 4)
    assert orders[0] == list(range(8)) and len({tuple(o) for o in orders}) == 4
    assert permutations(req, 4) == orders  # the same request gets the same orders
    shown, back = reordered(req, orders[1])
    assert [c.short_id for c in shown.candidates] == [f"C{j + 1}" for j in range(8)]
    assert [back[c.short_id] for c in shown.candidates] == [f"C{j + 1}" for j in orders[1]]
    assert shown.history == req.history and shown.k == req.k


def test_one_order_keeps_the_position_bias_several_remove_it() -> None:
    req = _request()  # "0" is shown first; the truly preferred item is "7"
    once = PositionBiased()
    assert _item_order(req, ShuffledTier(once, 1).rerank(req).output)[0] == "0"
    biased = PositionBiased()
    answer = ShuffledTier(biased, 5).rerank(req)
    assert len(biased.seen) == 5 and len({tuple(s) for s in biased.seen}) == 5
    assert _item_order(req, answer.output)[0] == PREFERENCE[0]  # no longer the first shown
    assert answer.tokens_in == 500 and answer.tokens_out == 100
    assert answer.notes == ["5 of 5 shuffled orders answered"]
    # Explanations and citations survive the renumbering (history ids are not shuffled).
    assert all(p.cited_history == ["H1"] for p in answer.output.ranking)
    assert {p.explanation for p in answer.output.ranking[:1]} == {"pick 7"}


def test_a_failed_call_leaves_the_others_and_all_failing_raises() -> None:
    req = _request()
    answer = ShuffledTier(PositionBiased(fail_on=2), 3).rerank(req)
    assert answer.notes == ["2 of 3 shuffled orders answered"]

    class Down(PositionBiased):
        def rerank(self, req: RerankRequest) -> TierAnswer:
            raise TierError("remote endpoint unreachable: APIConnectionError")

    with pytest.raises(TierError, match="unreachable"):
        ShuffledTier(Down(), 3).rerank(req)


def test_invented_and_repeated_ids_reach_the_guard() -> None:
    good = RerankOutput(ranking=[RankedPick(id="C2"), RankedPick(id="C1")])
    bad = RerankOutput(ranking=[RankedPick(id="C9"), RankedPick(id="C1"), RankedPick(id="c1")])
    fused = fuse_answers([good, bad], [{"C1": "C1", "C2": "C2"}, {"C1": "C2", "C2": "C1"}])
    # C2 ranked 1st and 1st (after the map) beats C1; the unknown C9 and the repeat stay last.
    assert [p.id for p in fused.ranking] == ["C2", "C1", "C9", "C2"]


def test_the_chain_wraps_the_remote_tier_only() -> None:
    url = "http://127.0.0.1:9/v1"  # never called: the chain only builds its tiers here
    chain = TierChain(Settings(llm_base_url=url, llm_api_key="x", llm_shuffles=3))
    remote = chain.tier(Tier.REMOTE)
    assert isinstance(remote, ShuffledTier) and remote.m == 3
    assert not isinstance(chain.tier(Tier.LOCAL), ShuffledTier)  # order-independent
    assert not isinstance(TierChain(Settings(llm_base_url=url)).tier(Tier.REMOTE), ShuffledTier)


def test_the_remote_tier_asks_m_times_over_real_http(fake_provider, trained_workspace) -> None:
    """Scripted endpoint (a capable model's reliable answer); the HTTP and parsing are real."""
    from agent import Recommender

    rec = Recommender.load(
        trained_workspace,
        llm_base_url=fake_provider.url,
        llm_api_key="x",
        llm_shuffles=3,
        llm_weight_remote=1.0,
    )
    rec.chain.set_tier(Tier.LOCAL, None)
    fake_provider.mode, fake_provider.requests[:] = "ok", []
    res = rec.recommend(user_id="42", k=5, llm=TierChoice.REMOTE)
    assert res.tier == Tier.REMOTE and res.llm_weight == 1.0
    assert len(fake_provider.requests) == 3 and res.tokens_in == 300
    shown = [
        [line.split(":")[1] for line in m["content"].splitlines() if line.startswith("C")]
        for r in fake_provider.requests
        for m in r["messages"]
        if m["role"] == "user"
    ]
    assert len({tuple(s) for s in shown}) == 3  # three different candidate orders
