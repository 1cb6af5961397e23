"""Candidates: model top-N over eligible items, query matches, popular items for new users."""

from __future__ import annotations

import numpy as np

from agent.pipeline.candidates import COLD_START_HISTORY, gather_candidates

LOGITS = np.array([0.5, 3.0, 2.0, -1.0, 4.0, 1.0, 0.0, 2.5])


def test_model_candidates_are_the_top_eligible_items_in_score_order() -> None:
    eligible = np.ones(8, bool)
    eligible[4] = False  # seen or filtered: never a candidate, however high its score
    c = gather_candidates(LOGITS, eligible, n=3, history_size=COLD_START_HISTORY)
    assert c.items.tolist() == [1, 7, 2]
    assert all(c.sources[i] == ("model",) for i in c.items)


def test_query_matches_join_once_and_only_if_eligible() -> None:
    eligible = np.ones(8, bool)
    eligible[6] = False
    c = gather_candidates(
        LOGITS, eligible, n=2, query_hits=[7, 6, 3], history_size=COLD_START_HISTORY
    )
    assert c.items.tolist() == [4, 1, 7, 3]
    assert c.sources[7] == ("query",) and c.sources[3] == ("query",) and 6 not in c.sources


def test_short_histories_get_popular_items() -> None:
    popularity = np.array([0, 1, 2, 3, 4, 50, 60, 5])
    eligible = np.ones(8, bool)
    c = gather_candidates(LOGITS, eligible, n=4, popularity=popularity, history_size=1)
    assert {5, 6} <= set(c.items.tolist())
    assert "popular" in c.sources[6] and "popular" in c.sources[5]
    long = gather_candidates(LOGITS, eligible, n=4, popularity=popularity, history_size=20)
    assert all("popular" not in s for s in long.sources.values())


def test_nothing_eligible_gives_no_candidates() -> None:
    c = gather_candidates(LOGITS, np.zeros(8, bool), n=5, query_hits=[1])
    assert len(c) == 0


def test_one_edition_of_each_work() -> None:
    from agent.pipeline.candidates import Candidates, one_per_work

    works = np.array([0, 1, 1, 2, 0])  # items 1 and 2 are editions of one book; 0 and 4 too
    c = Candidates(np.array([2, 4, 1, 3, 0]), {i: ("model",) for i in range(5)})
    kept = one_per_work(c, works)
    assert kept.items.tolist() == [2, 4, 3] and set(kept.sources) == {2, 4, 3}


def test_editions_of_history_items_are_not_candidates(catalog) -> None:
    from agent.pipeline.candidates import find_candidates
    from mtrec.data.history import History

    hist = History.from_items([0, 1])
    c = find_candidates(catalog, np.zeros(12), hist, None, (), 12)
    assert not set(c.items.tolist()) & {0, 1}
    assert catalog.same_work(np.array([0])).sum() == 1  # unique titles: only itself
