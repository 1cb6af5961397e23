"""Explanations: counterfactual evidence, the grounding check, and short template texts."""

from __future__ import annotations

import re

import numpy as np

from agent.pipeline.candidates import Candidates
from agent.pipeline.catalog import CoLikes, disliked
from agent.pipeline.evidence import contributions, removal_window
from agent.pipeline.explain import ExplainContext, explain_items, item_evidence
from agent.pipeline.rerank import LLMText, RerankOutcome
from agent.pipeline.scoring import FusionWeights, score_candidates
from agent.schema import Tier
from mtrec.data.history import History
from mtrec.data.schema import EventType

W = FusionWeights()


def _run(model, catalog, texts: dict[int, LLMText], explain: bool = True, co_likes=None):
    hist = History.from_items([0, 1, 2], [5, 4, 5])
    items = np.array([3, 4, 5, 6])
    scored = score_candidates(items, model.task_scores(hist, items), W)
    outcome = RerankOutcome(Tier.LOCAL, scored.order, scored.score, texts=texts)
    cands = Candidates(items, {int(i): ("model",) for i in items})
    ctx = ExplainContext.build(catalog, hist, items, None)
    evidence = item_evidence(ctx, model, items.tolist(), scored, cands.sources, W, co_likes)
    out = explain_items(ctx, 4, cands, scored, outcome, evidence, explain)
    return out, scored, hist


def _contributor(model, catalog, item: int) -> str | None:
    """A history item whose removal really lowers ``item``'s score, if any."""
    hist = History.from_items([0, 1, 2], [5, 4, 5])
    items = np.array([3, 4, 5, 6])
    scored = score_candidates(items, model.task_scores(hist, items), W)
    found = contributions(model, hist, scored, [item], removal_window(hist, catalog.ds), W)
    real = [c for c in found[item] if c.real]
    return catalog.ds.items[real[0].item].item_id if real else None


def test_contributions_are_measured_by_removing_each_history_item(model, catalog) -> None:
    hist = History.from_items([0, 1, 2], [5, 4, 5])
    items = np.array([3, 4, 5, 6])
    scored = score_candidates(items, model.task_scores(hist, items), W)
    found = contributions(model, hist, scored, [3, 4], np.array([2, 0]), W)
    for target in (3, 4):
        assert {c.item for c in found[target]} == {0, 2}
        for c in found[target]:
            kept = [(i, r) for i, r in zip([0, 1, 2], [5, 4, 5], strict=True) if i != c.item]
            without = History.from_items([i for i, _ in kept], [r for _, r in kept])
            alone = score_candidates(items, model.task_scores(without, items), W)
            j = scored.position()[target]
            assert abs(c.score_drop - (scored.fused[j] - alone.fused[j])) < 1e-4
            assert c.rank_without == alone.rank()[target]


def test_grounded_llm_text_cites_a_real_contributor(model, catalog) -> None:
    cause = _contributor(model, catalog, 3)
    if cause is None:  # the untrained model gives item 3 no contributor: nothing to cite
        cause_free = LLMText("Close to what you rated highly.", (), ())
        out, _, _ = _run(model, catalog, {3: cause_free})
        item = next(i for i in out.items if i.item_id == "3")
        assert item.explanation_source == "llm" and item.grounded
        return
    text = LLMText("Close to what you rated highly.", (cause,), ("Comedy",))
    out, _, _ = _run(model, catalog, {3: text})
    item = next(i for i in out.items if i.item_id == "3")
    assert item.explanation_source == "llm" and item.grounded
    assert item.explanation == text.text and item.evidence.history_items == (cause,)
    assert out.ungrounded == 0 and not out.diagnostics


def test_a_citation_outside_the_history_is_replaced_by_the_template(model, catalog) -> None:
    out, _, _ = _run(model, catalog, {4: LLMText("Because of item 9.", ("9",), ())})
    item = next(i for i in out.items if i.item_id == "4")
    assert item.explanation_source == "template" and not item.grounded
    assert item.explanation
    assert out.ungrounded == 1 and "explanation of 4 replaced" in out.diagnostics[0]


def test_a_category_the_item_lacks_is_replaced(model, catalog) -> None:
    out, _, _ = _run(model, catalog, {5: LLMText("A great comedy.", (), ())})  # 5 is Horror
    item = next(i for i in out.items if i.item_id == "5")
    assert not item.grounded and out.ungrounded == 1


def test_claims_no_data_supports_are_replaced(model, catalog) -> None:
    for text in (
        "The editors say this is essential.",
        "Perfect for everyone.",
        "An award-winning story.",
        "Ranked first as instructed.",
    ):
        out, _, _ = _run(model, catalog, {6: LLMText(text, (), ())})
        item = next(i for i in out.items if i.item_id == "6")
        assert not item.grounded and item.explanation != text, text


def test_templates_cite_only_items_whose_removal_lowers_the_score(model, catalog) -> None:
    """Every reason that names a history item (a counterfactual, co-likes, a shared
    attribute) passes a deletion test computed here: without the item, the score drops."""
    out, scored, hist = _run(model, catalog, {}, co_likes=CoLikes(catalog.ds))
    ids = [it.item_id for it in catalog.ds.items]
    cited_any = False
    for item in out.items:
        ev = item.evidence
        assert item.explanation and ev.reason
        j = scored.position()[ids.index(item.item_id)]
        for cited in ev.history_items:
            cited_any = True
            keep = hist.items != ids.index(cited)
            without = History(hist.items[keep], hist.events[keep], hist.values[keep])
            alone = score_candidates(scored.items, model.task_scores(without, scored.items), W)
            assert scored.fused[j] - alone.fused[j] > 0, (item.item_id, ev.reason, cited)
            said = re.search(r"would rank this \w+ (\d+) places? lower", item.explanation)
            if said:  # the number of places is the one measured here
                dense = ids.index(item.item_id)
                assert int(said[1]) == alone.rank()[dense] - scored.rank()[dense], item.explanation
    assert cited_any  # the check above ran on at least one citation


def test_co_likes_name_only_allowed_anchors(catalog) -> None:
    co = CoLikes(catalog.ds)
    items, anchors = np.array([3, 6]), np.array([0, 1, 2])
    assert co.best(items, anchors) == [(2, 1), (2, 1)]  # user u1 liked 2 and 3, u2 2 and 6
    assert co.best(items, anchors, [{2}, set()]) == [(2, 1), None]
    assert co.best(items, anchors, [{0, 1}, {2}]) == [None, (2, 1)]


def test_no_explanations_when_none_are_asked_for(model, catalog) -> None:
    out, scored, _ = _run(model, catalog, {4: LLMText("Because of item 9.", ("9",), ())}, False)
    assert all(i.explanation is None and i.grounded for i in out.items)
    assert [i.item_id for i in out.items] == [str(i) for i in scored.order]


def test_the_window_skips_disliked_and_low_rated_items(catalog) -> None:
    hist = History.from_items(
        [1, 2, 3, 4],
        [5, None, 2, None],
        [EventType.RATING, EventType.DISLIKE, EventType.RATING, EventType.VIEW],
    )
    assert disliked(hist, catalog.ds).tolist() == [False, True, True, False]
    assert removal_window(hist, catalog.ds).tolist() == [4, 1]  # latest first


def test_the_counterfactual_sentence_states_the_measured_rank_difference(catalog) -> None:
    """The sentence gives places lost, not ranks: the reader's list may be in another order
    than the model's (the query, the LLM), so "would rank 5th" could contradict it."""
    from agent.pipeline.evidence import Contribution
    from agent.pipeline.explain import ItemEvidence, template_options

    def first_text(rank_with: int, rank_without: int) -> str:
        ev = ItemEvidence(
            contributions=(Contribution(1, 0.4, rank_with, rank_without),),
            tried=(1,), shared_categories=(), co_liked=None, attribute=None,
            query_match=False, engagement=0.1, like=0.5, rating=3.5,
        )  # fmt: skip
        return template_options(catalog, catalog.ds.items[5], ev, {1}, None)[0][0]

    title = catalog.ds.items[1].title
    noun = catalog.profile.item_noun
    assert first_text(2, 5) == (
        f"Because you liked “{title}”: without it, the model would rank this {noun} 3 places lower."
    )
    assert first_text(4, 5).endswith("1 place lower.")
    assert "places lower" not in first_text(3, 3)  # no rank change: the weaker sentence


def test_the_model_estimate_is_never_stated_as_certain(catalog) -> None:
    """A like probability of 0.998 reads "99%", not "100%"; 0.002 reads "1%"."""
    from agent.pipeline.explain import ItemEvidence, template_options

    def last_text(like: float) -> str:
        ev = ItemEvidence(
            contributions=(), tried=(1,), shared_categories=(), co_liked=None, attribute=None,
            query_match=False, engagement=0.1, like=like, rating=3.5,
        )  # fmt: skip
        return template_options(catalog, catalog.ds.items[5], ev, set(), None)[-1][0]

    assert "(99% chance you like it)" in last_text(0.998)
    assert "(1% chance you like it)" in last_text(0.002)
    assert "(62% chance you like it)" in last_text(0.62)
