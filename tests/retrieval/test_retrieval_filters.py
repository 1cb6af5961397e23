"""ItemFilter: where-clause shapes, and every combination checked against real Chroma."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval import Embedder, IndexItem, ItemFilter, ItemIndex


def test_empty_filter_is_none() -> None:
    assert ItemFilter().to_where() is None
    assert ItemFilter().is_empty()


def test_single_conditions_are_unwrapped() -> None:
    # Chroma rejects $and/$or with a single operand.
    assert ItemFilter(categories_any=("Horror",)).to_where() == {
        "categories": {"$contains": "Horror"}
    }
    assert ItemFilter(year_min=1990).to_where() == {"year": {"$gte": 1990}}
    assert ItemFilter(categories_none=("Horror",)).to_where() == {
        "categories": {"$not_contains": "Horror"}
    }


def test_combined_clause_shape() -> None:
    where = ItemFilter(
        categories_any=("Horror", "Western"),
        categories_none=("Comedy",),
        year_min=1960,
        year_max=1990,
    ).to_where()
    assert where == {
        "$and": [
            {
                "$or": [
                    {"categories": {"$contains": "Horror"}},
                    {"categories": {"$contains": "Western"}},
                ]
            },
            {"categories": {"$not_contains": "Comedy"}},
            {"year": {"$gte": 1960}},
            {"year": {"$lte": 1990}},
        ]
    }


def test_string_is_one_category_and_year_order_checked() -> None:
    assert ItemFilter(categories_any="Horror").categories_any == ("Horror",)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="year_min"):
        ItemFilter(year_min=2000, year_max=1990)


def _expected(item: IndexItem, f: ItemFilter) -> bool:
    cats = set(item.categories)
    if f.categories_any and not cats & set(f.categories_any):
        return False
    if cats & set(f.categories_none):
        return False
    if f.year_min is not None and (item.year is None or item.year < f.year_min):
        return False
    return not (f.year_max is not None and (item.year is None or item.year > f.year_max))


FILTERS = [
    ItemFilter(categories_any=("Horror",)),
    ItemFilter(categories_any=("Horror", "Western")),
    ItemFilter(categories_none=("Comedy",)),
    ItemFilter(categories_none=("Comedy", "Sci-Fi")),
    ItemFilter(year_min=1980),
    ItemFilter(year_max=1970),
    ItemFilter(year_min=1960, year_max=1990),
    ItemFilter(categories_any=("Romance", "Comedy"), categories_none=("Children's",)),
    ItemFilter(categories_any=("Sci-Fi",), year_min=1970),
    ItemFilter(categories_none=("Horror",), year_max=2000),
    ItemFilter(
        categories_any=("Horror", "Western", "Comedy"),
        categories_none=("Romance",),
        year_min=1955,
        year_max=2010,
    ),
    ItemFilter(categories_any=("No-Such-Genre",)),
]


@pytest.mark.parametrize("item_filter", FILTERS, ids=lambda f: str(f.to_where()))
def test_filter_matches_python_semantics_in_chroma(
    built_index: ItemIndex, catalog: list[IndexItem], item_filter: ItemFilter
) -> None:
    expected = {item.item_id for item in catalog if _expected(item, item_filter)}
    hits = built_index.search_text("a movie", k=len(catalog) + 5, filters=item_filter)
    assert {h.item_id for h in hits} == expected
    for hit in hits:  # the returned metadata agrees with the filter too
        assert not set(hit.categories) & set(item_filter.categories_none)


def test_items_without_categories_or_year(tmp_path: Path, embedder: Embedder) -> None:
    index = ItemIndex(tmp_path, embedder=embedder)
    index.sync(
        [
            IndexItem("bare", "an untitled film"),
            IndexItem("full", "a western", "W", ("Western",), 1970),
        ],
        show_progress=False,
    )

    def ids(f: ItemFilter) -> set[str]:
        return {h.item_id for h in index.search_text("film", k=5, filters=f)}

    assert ids(ItemFilter(categories_none=("Western",))) == {"bare"}
    assert ids(ItemFilter(categories_any=("Western",))) == {"full"}
    assert ids(ItemFilter(year_min=1900)) == {"full"}
