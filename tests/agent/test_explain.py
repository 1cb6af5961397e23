"""The grounding check's rules, including categories named in prose."""

from __future__ import annotations

import pytest

from agent.pipeline.catalog import TitleIndex
from agent.pipeline.explain import check_grounding, mentioned_categories
from mtrec.data.schema import Item

CATS = ["Action", "Animation", "Children's", "Comedy", "Drama", "Romance", "Sci-Fi", "War"]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("both are funny animated family films", {"Animation"}),
        ("action-packed adventures", {"Action"}),
        ("a romantic comedy", {"Comedy", "Romance"}),
        ("dark and dramatic", {"Drama"}),
        ("a sci-fi epic for children", {"Sci-Fi", "Children's"}),
        ("an award-winning story", set()),  # "war" is matched as a whole word only
        ("the warden", set()),
    ],
)
def test_mentioned_categories(text: str, named: set[str]) -> None:
    assert mentioned_categories(text, CATS) == named


def _check(text: str, item: Item, cited: list[str] = ()) -> tuple[bool, str]:
    return check_grounding(
        text, list(cited), [], item, {"1"}, ["Toy Story"], TitleIndex([item]), CATS
    )


def test_text_naming_a_category_the_item_lacks_fails() -> None:
    heat = Item("9", "Heat", categories=("Action", "Drama"))
    assert _check("Because you enjoyed Toy Story: a tense action drama.", heat) == (True, "")
    ok, reason = _check("Because you enjoyed Toy Story: a funny animated film.", heat)
    assert not ok and "Animation" in reason


def test_citing_outside_the_history_fails() -> None:
    heat = Item("9", "Heat", categories=("Action",))
    ok, reason = _check("A tense film.", heat, cited=["777"])
    assert not ok and "not in the history" in reason
