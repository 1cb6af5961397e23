"""ItemIndex against a real `chroma run` server over HTTP."""

from __future__ import annotations

import pytest

from retrieval import (
    Embedder,
    IndexConnectionError,
    IndexItem,
    IndexModelMismatchError,
    ItemFilter,
    ItemIndex,
)
from retrieval.errors import UnknownItemError
from tests.conftest import free_port

from .catalog import OCTOPUS_ID, OCTOPUS_QUERY


def test_index_and_query_over_http(
    chroma_url: str, embedder: Embedder, catalog: list[IndexItem]
) -> None:
    index = ItemIndex(url=chroma_url, embedder=embedder, collection="server-items")
    report = index.sync(catalog, show_progress=False)
    assert report.added == len(catalog) == index.count()

    assert index.search_text(OCTOPUS_QUERY, k=1)[0].item_id == OCTOPUS_ID
    hits = index.similar("m0", k=5, exclude_ids={"m1"})
    assert len(hits) == 5 and not {"m0", "m1"} & {h.item_id for h in hits}
    assert "Sci-Fi" in hits[0].categories
    filtered = index.search_text(
        "a movie", k=100, filters=ItemFilter(categories_any=("Western",), year_max=1990)
    )
    assert filtered and all(
        "Western" in h.categories and h.year is not None and h.year <= 1990 for h in filtered
    )
    assert index.get_embeddings(["m2", "m1"]).shape == (2, 384)
    with pytest.raises(UnknownItemError):
        index.similar("nope")

    # A second client sees the same data and the sync is a no-op.
    again = ItemIndex(url=chroma_url, embedder=embedder, collection="server-items")
    assert again.sync(catalog, show_progress=False).unchanged == len(catalog)


def test_model_mismatch_over_http(chroma_url: str, embedder: Embedder) -> None:
    ItemIndex(url=chroma_url, embedder=embedder, collection="server-mismatch")

    class Other(Embedder):
        def __init__(self) -> None:
            self.__dict__.update(embedder.__dict__)
            self._model_id = "other-model"

    with pytest.raises(IndexModelMismatchError, match="other-model"):
        ItemIndex(url=chroma_url, embedder=Other(), collection="server-mismatch")
    # rebuild=True drops it (and is harmless for a collection that does not exist yet).
    rebuilt = ItemIndex(
        url=chroma_url, embedder=Other(), collection="server-mismatch", rebuild=True
    )
    assert rebuilt.model_id == "other-model" and rebuilt.count() == 0
    fresh = ItemIndex(url=chroma_url, embedder=embedder, collection="server-fresh", rebuild=True)
    assert fresh.count() == 0


def test_unreachable_server(embedder: Embedder) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(IndexConnectionError, match="chroma run"):
        ItemIndex(url=url, embedder=embedder)
