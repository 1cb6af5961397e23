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
def test_where_clause_in_chroma_matches_python_semantics(
    built_index: ItemIndex, catalog: list[IndexItem], item_filter: ItemFilter
) -> None:
    expected = {item.item_id for item in catalog if _expected(item, item_filter)}
    # ids(filters) hands the where clause straight to Chroma.
    assert set(built_index.ids(item_filter)) == expected
    # matches() is the Python twin used to post-filter nearest neighbours.
    metas = {item.item_id: item.to_metadata() for item in catalog}
    assert {i for i, m in metas.items() if item_filter.matches(m)} == expected


@pytest.mark.parametrize("item_filter", FILTERS, ids=lambda f: str(f.to_where()))
def test_filtered_search_returns_the_filtered_top_k(
    built_index: ItemIndex, catalog: list[IndexItem], item_filter: ItemFilter
) -> None:
    expected = {item.item_id for item in catalog if _expected(item, item_filter)}
    everything = built_index.search_text("a space adventure", k=len(catalog))
    ranking = [h.item_id for h in everything if h.item_id in expected]

    hits = built_index.search_text("a space adventure", k=len(catalog) + 5, filters=item_filter)
    assert [h.item_id for h in hits] == ranking
    for hit in hits:  # the returned metadata agrees with the filter too
        assert not set(hit.categories) & set(item_filter.categories_none)

    # Small k: broad filters are answered from the unfiltered probe, selective ones fall back
    # to Chroma's where clause; both must give the same top k.
    k = 3
    top = built_index.search_text("a space adventure", k=k, filters=item_filter)
    assert [h.item_id for h in top] == ranking[:k]


def test_selective_filter_uses_the_where_fallback(
    built_index: ItemIndex, catalog: list[IndexItem]
) -> None:
    westerns = {item.item_id for item in catalog if "Western" in item.categories}
    ranking = [h.item_id for h in built_index.search_text("astronauts in a starship", k=100)]
    k = 3
    # Precondition: the unfiltered probe (4k nearest) holds fewer than k Westerns, so returning
    # k Westerns proves the Chroma where-clause path ran.
    assert len([i for i in ranking[: 4 * k] if i in westerns]) < k
    hits = built_index.search_text(
        "astronauts in a starship", k=k, filters=ItemFilter(categories_any=("Western",))
    )
    assert [h.item_id for h in hits] == [i for i in ranking if i in westerns][:k]


def test_filter_with_exclusions(built_index: ItemIndex) -> None:
    horror = ItemFilter(categories_any=("Horror",))
    first = built_index.search_text("ghosts", k=4, filters=horror)
    skip = {h.item_id for h in first[:2]}
    second = built_index.search_text("ghosts", k=4, filters=horror, exclude_ids=skip)
    assert [h.item_id for h in second[:2]] == [h.item_id for h in first[2:]]
    assert not skip & {h.item_id for h in second}


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
