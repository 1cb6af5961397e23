"""Explanations: the grounding check decides between the LLM's text and the template."""

from __future__ import annotations

import numpy as np

from agent.pipeline.candidates import Candidates
from agent.pipeline.explain import explain_items, explanation_anchors
from agent.pipeline.rerank import LLMText, RerankOutcome
from agent.pipeline.scoring import FusionWeights, score_candidates
from agent.schema import Tier
from mtrec.data.history import History
from mtrec.data.schema import EventType


def _run(model, catalog, texts: dict[int, LLMText], explain: bool = True):
    hist = History.from_items([0, 1, 2], [5, 4, 5])
    items = np.array([3, 4, 5, 6])
    scored = score_candidates(items, model.task_scores(hist, items), FusionWeights())
    outcome = RerankOutcome(Tier.LOCAL, scored.order, scored.score, texts=texts)
    cands = Candidates(items, {int(i): ("model",) for i in items})
    return explain_items(
        catalog, hist, 4, cands, scored, outcome, model.item_vectors(), explain
    ), scored


def test_grounded_llm_text_is_shown_with_its_citations(model, catalog) -> None:
    text = LLMText("Close to what you rated highly.", ("2",), ("Comedy",))
    out, _ = _run(model, catalog, {3: text})
    item = next(i for i in out.items if i.item_id == "3")
    assert item.explanation_source == "llm" and item.grounded
    assert item.explanation == text.text and item.evidence.history_items == ("2",)
    assert item.evidence.history_titles == ("Title number 2",)
    assert out.ungrounded == 0 and not out.notes


def test_a_citation_outside_the_history_is_replaced_by_the_template(model, catalog) -> None:
    out, _ = _run(model, catalog, {4: LLMText("Because of item 9.", ("9",), ())})
    item = next(i for i in out.items if i.item_id == "4")
    assert item.explanation_source == "template" and not item.grounded
    assert item.explanation and "Title number" in item.explanation
    assert out.ungrounded == 1 and "explanation of 4 replaced" in out.notes[0]


def test_a_category_the_item_lacks_is_replaced(model, catalog) -> None:
    out, _ = _run(model, catalog, {5: LLMText("A great comedy.", (), ())})  # 5 is Horror
    item = next(i for i in out.items if i.item_id == "5")
    assert not item.grounded and out.ungrounded == 1


def test_no_explanations_when_none_are_asked_for(model, catalog) -> None:
    out, scored = _run(model, catalog, {4: LLMText("Because of item 9.", ("9",), ())}, False)
    assert all(i.explanation is None and i.grounded for i in out.items)
    assert [i.item_id for i in out.items] == [str(i) for i in scored.order]
    assert all(i.evidence.history_items for i in out.items)  # evidence is still given


def test_anchors_skip_disliked_and_low_rated_items() -> None:
    hist = History.from_items(
        [1, 2, 3, 4],
        [5, None, 2, None],
        [EventType.RATING, EventType.DISLIKE, EventType.RATING, EventType.VIEW],
    )
    assert explanation_anchors(hist).tolist() == [1, 4]
