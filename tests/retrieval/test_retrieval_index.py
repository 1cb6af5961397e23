"""ItemIndex queries on a built catalog: similarity, text search, exclusion, k, unknown ids."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval import Embedder, Hit, IndexItem, ItemIndex, UnknownItemError

from .catalog import GENRES, OCTOPUS_ID, OCTOPUS_QUERY


def test_counts_ids_and_binding(built_index: ItemIndex, catalog: list[IndexItem]) -> None:
    assert built_index.count() == len(catalog)
    assert set(built_index.ids()) == {item.item_id for item in catalog}
    assert built_index.model_id == "all-MiniLM-L6-v2"
    assert built_index.dimension == 384


def test_similar_items_share_the_genre(built_index: ItemIndex, catalog: list[IndexItem]) -> None:
    genre_items = [item for item in catalog if item.categories[0] in GENRES]
    shared = 0
    for item in genre_items:
        hits = built_index.similar(item.item_id, k=5)
        assert len(hits) == 5
        assert item.item_id not in {h.item_id for h in hits}
        # The nearest neighbour is always from the same genre; the top-5 nearly always.
        assert item.categories[0] in hits[0].categories, (item, hits[0])
        shared += sum(item.categories[0] in h.categories for h in hits)
    assert shared / (5 * len(genre_items)) >= 0.9


def test_scores_are_cosine_similarities(built_index: ItemIndex) -> None:
    hits = built_index.similar("m3", k=10)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    vectors = built_index.get_embeddings(["m3", *(h.item_id for h in hits)])
    expected = vectors[1:] @ vectors[0]
    np.testing.assert_allclose(scores, expected, atol=1e-4)


def test_text_search_finds_the_obvious_item(built_index: ItemIndex) -> None:
    hits = built_index.search_text(OCTOPUS_QUERY, k=3)
    assert hits[0].item_id == OCTOPUS_ID
    assert hits[0].title == "Deep Terror"
    assert hits[0].categories == ("Adventure",)
    assert hits[0].year == 1985
    assert hits[0].score > hits[1].score + 0.2


def test_text_search_by_genre_vocabulary(built_index: ItemIndex) -> None:
    hits = built_index.search_text("ghosts and demons terrify a family", k=5)
    assert all("Horror" in h.categories for h in hits)


def test_hit_carries_extra_metadata(built_index: ItemIndex) -> None:
    hit = built_index.search_text("cowboy outlaws saloon", k=1)[0]
    assert isinstance(hit, Hit)
    assert set(hit.metadata) == {"popularity", "rank"}  # managed keys are not repeated
    n = int(hit.item_id[1:])
    assert hit.metadata == {"popularity": n % 5, "rank": float(n)}


def test_exclude_ids_overfetches(built_index: ItemIndex) -> None:
    first = built_index.similar("m0", k=5)
    excluded = [h.item_id for h in first[:3]]
    second = built_index.similar("m0", k=5, exclude_ids=excluded)
    assert len(second) == 5
    assert not {h.item_id for h in second} & set(excluded)
    assert [h.item_id for h in second[:2]] == [h.item_id for h in first[3:]]
    # Excluding ids that are not in the index is harmless.
    assert len(built_index.search_text("space", k=4, exclude_ids={"nope", "m1"})) == 4


def test_k_larger_than_collection_returns_all(
    built_index: ItemIndex, catalog: list[IndexItem]
) -> None:
    assert len(built_index.search_text("film", k=10_000)) == len(catalog)
    assert len(built_index.similar("m5", k=10_000)) == len(catalog) - 1


@pytest.mark.parametrize("bad_k", [0, -3, 2.5, True])
def test_bad_k_is_rejected(built_index: ItemIndex, bad_k: object) -> None:
    with pytest.raises(ValueError, match="k must be a positive integer"):
        built_index.search_text("space", k=bad_k)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be a positive integer"):
        built_index.similar("m1", k=bad_k)  # type: ignore[arg-type]


def test_unknown_item(built_index: ItemIndex) -> None:
    with pytest.raises(UnknownItemError, match="'nope'") as info:
        built_index.similar("nope", k=3)
    assert isinstance(info.value, KeyError)  # usable as a plain KeyError
    assert "collection 'items'" in str(info.value)
    with pytest.raises(KeyError, match="'ghost-1', 'ghost-2'"):
        built_index.get_embeddings(["m1", "ghost-1", "ghost-2"])


def test_get_embeddings_order_and_values(
    built_index: ItemIndex, catalog: list[IndexItem], embedder: Embedder
) -> None:
    by_id = {item.item_id: item for item in catalog}
    ids = ["m7", "m2", OCTOPUS_ID, "m7"]
    stored = built_index.get_embeddings(ids)
    assert stored.shape == (4, 384) and stored.dtype == np.float32
    fresh = embedder.encode([by_id[i].text for i in ids])
    np.testing.assert_allclose(stored, fresh, atol=1e-5)
    assert built_index.get_embeddings([]).shape == (0, 384)


def test_search_vector_validates_input(built_index: ItemIndex, embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="384"):
        built_index.search_vector(np.ones(10, dtype=np.float32))
    with pytest.raises(ValueError, match="non-zero"):
        built_index.search_vector(np.zeros(384, dtype=np.float32))
    query = embedder.encode_one(OCTOPUS_QUERY)
    # Scale and a (1, d) shape do not matter in cosine space.
    assert built_index.search_vector(3 * query[None, :], k=1)[0].item_id == OCTOPUS_ID
    with pytest.raises(ValueError, match="empty"):
        built_index.search_text("   ")


def test_exclusion_list_longer_than_k(built_index: ItemIndex) -> None:
    # More excluded ids than k takes the path that fetches metadata after excluding.
    ranking = built_index.similar("m10", k=100)
    excluded = {h.item_id for h in ranking[:12]} | {"not-indexed"}
    hits = built_index.similar("m10", k=3, exclude_ids=excluded)
    assert hits == ranking[12:15]
    assert all(h.title and h.categories and h.year for h in hits)
