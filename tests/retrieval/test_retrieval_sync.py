"""Incremental sync, persistence, rebuild and model-mismatch refusal on embedded Chroma."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from retrieval import (
    Embedder,
    IndexItem,
    IndexModelMismatchError,
    ItemIndex,
    RetrievalError,
)


class CountingEmbedder(Embedder):
    """The real embedder, recording every text it is asked to embed (no second model load)."""

    def __init__(self, inner: Embedder) -> None:
        self.__dict__.update(inner.__dict__)
        self.encoded: list[str] = []

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        self.encoded.extend(texts)
        return super().encode(texts, show_progress)


class RenamedEmbedder(Embedder):
    """Pretends to be another model (different id and/or dimension) for mismatch tests."""

    def __init__(self, inner: Embedder, model_id: str, dimension: int | None = None) -> None:
        self.__dict__.update(inner.__dict__)
        self._model_id = model_id
        self._dimension = dimension if dimension is not None else inner.dimension


@pytest.fixture
def counting(embedder: Embedder) -> CountingEmbedder:
    return CountingEmbedder(embedder)


def test_incremental_sync(
    tmp_path: Path, counting: CountingEmbedder, catalog: list[IndexItem]
) -> None:
    index = ItemIndex(tmp_path, embedder=counting)
    first = index.sync(catalog, show_progress=False)
    assert (first.added, first.updated, first.unchanged, first.deleted) == (len(catalog), 0, 0, 0)
    assert len(counting.encoded) == len(catalog)

    counting.encoded.clear()
    again = index.sync(catalog, show_progress=False)
    assert (again.added, again.updated, again.unchanged, again.deleted) == (0, 0, len(catalog), 0)
    assert counting.encoded == []  # nothing re-embedded

    by_id = {item.item_id: item for item in catalog}
    changed_text = dataclasses.replace(by_id["m1"], text="A cooking show about sourdough bread.")
    changed_meta = dataclasses.replace(by_id["m2"], year=2021)  # metadata-only change
    new_item = IndexItem("m_new", "A chess grandmaster plays a tournament.", "Gambit", ("Drama",))
    removed = {"m3", "m4"}
    edited = [
        {"m1": changed_text, "m2": changed_meta}.get(item.item_id, item)
        for item in catalog
        if item.item_id not in removed
    ] + [new_item]

    counting.encoded.clear()
    report = index.sync(edited, show_progress=False)
    assert (report.added, report.updated, report.deleted) == (1, 2, 2)
    assert report.unchanged == len(catalog) - 4
    assert report.embedded == 3
    assert sorted(counting.encoded) == sorted([changed_text.text, changed_meta.text, new_item.text])

    assert index.count() == len(edited)
    assert not removed & set(index.ids())
    np.testing.assert_allclose(
        index.get_embeddings(["m1"])[0], counting.encode_one(changed_text.text), atol=1e-5
    )
    assert index.search_text("sourdough bread baking", k=1)[0].item_id == "m1"
    hit = index.search_text("chess grandmaster", k=1)[0]
    assert (hit.item_id, hit.title, hit.categories) == ("m_new", "Gambit", ("Drama",))
    year_hit = next(h for h in index.similar("m1", k=len(edited)) if h.item_id == "m2")
    assert year_hit.year == 2021


def test_index_persists_across_instances(
    tmp_path: Path, counting: CountingEmbedder, catalog: list[IndexItem]
) -> None:
    ItemIndex(tmp_path, embedder=counting).sync(catalog[:10], show_progress=False)
    counting.encoded.clear()
    reopened = ItemIndex(tmp_path, embedder=counting)
    assert reopened.count() == 10
    report = reopened.sync(catalog[:10], show_progress=False)
    assert report.unchanged == 10 and counting.encoded == []


def test_sync_with_empty_catalog_deletes_everything(
    tmp_path: Path, embedder: Embedder, catalog: list[IndexItem]
) -> None:
    index = ItemIndex(tmp_path, embedder=embedder)
    index.sync(catalog[:5], show_progress=False)
    assert index.sync([], show_progress=False).deleted == 5
    assert index.count() == 0
    assert index.search_text("anything", k=3) == []


def test_small_batches_and_progress_bar(
    tmp_path: Path, counting: CountingEmbedder, catalog: list[IndexItem]
) -> None:
    index = ItemIndex(tmp_path, embedder=counting)
    report = index.sync(catalog, show_progress=True, batch_size=16)  # 4 batches
    assert report.added == len(catalog) == index.count()


def test_sync_rejects_duplicates_and_bad_batch(tmp_path: Path, embedder: Embedder) -> None:
    index = ItemIndex(tmp_path, embedder=embedder)
    with pytest.raises(ValueError, match="duplicate item_id 'a'"):
        index.sync([IndexItem("a", "x"), IndexItem("a", "y")], show_progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        index.sync([IndexItem("a", "x")], batch_size=0)


def test_model_mismatch_is_refused(
    tmp_path: Path, embedder: Embedder, catalog: list[IndexItem]
) -> None:
    ItemIndex(tmp_path, embedder=embedder).sync(catalog[:5], show_progress=False)
    other = RenamedEmbedder(embedder, "other-model")
    with pytest.raises(IndexModelMismatchError) as info:
        ItemIndex(tmp_path, embedder=other)
    message = str(info.value)
    assert "all-MiniLM-L6-v2" in message and "other-model" in message
    assert "--rebuild" in message and "new collection" in message
    assert isinstance(info.value, RetrievalError)

    # Same name but a different width is just as incompatible.
    with pytest.raises(IndexModelMismatchError, match="dimension 8"):
        ItemIndex(tmp_path, embedder=RenamedEmbedder(embedder, embedder.model_id, 8))

    # A separate collection for the other model is fine and leaves the original untouched.
    side = ItemIndex(tmp_path, embedder=other, collection="items-other")
    assert side.count() == 0
    assert ItemIndex(tmp_path, embedder=embedder).count() == 5


def test_rebuild_switches_the_model(
    tmp_path: Path, embedder: Embedder, catalog: list[IndexItem]
) -> None:
    ItemIndex(tmp_path, embedder=embedder).sync(catalog[:5], show_progress=False)
    other = RenamedEmbedder(embedder, "other-model")
    rebuilt = ItemIndex(tmp_path, embedder=other, rebuild=True)
    assert rebuilt.count() == 0 and rebuilt.model_id == "other-model"
    assert rebuilt.sync(catalog[:3], show_progress=False).added == 3
    # Now the original model is the odd one out.
    with pytest.raises(IndexModelMismatchError, match="other-model"):
        ItemIndex(tmp_path, embedder=embedder)


def test_clear_and_rebuild_methods(
    tmp_path: Path, counting: CountingEmbedder, catalog: list[IndexItem]
) -> None:
    index = ItemIndex(tmp_path, embedder=counting)
    index.sync(catalog[:6], show_progress=False)
    index.clear()
    assert index.count() == 0
    counting.encoded.clear()
    report = index.rebuild(catalog[:6], show_progress=False)
    assert report.added == 6 and len(counting.encoded) == 6 and index.count() == 6


def test_non_cosine_collection_is_refused(tmp_path: Path, embedder: Embedder) -> None:
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(
        path=str(tmp_path), settings=Settings(anonymized_telemetry=False)
    )
    client.create_collection(
        "items",
        configuration={"hnsw": {"space": "l2"}},
        metadata={"embedding_model": embedder.model_id, "embedding_dimension": embedder.dimension},
        embedding_function=None,
    )
    with pytest.raises(RetrievalError, match="'l2'"):
        ItemIndex(tmp_path, embedder=embedder)
    assert ItemIndex(tmp_path, embedder=embedder, rebuild=True).count() == 0


def test_foreign_collection_is_refused(tmp_path: Path, embedder: Embedder) -> None:
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(
        path=str(tmp_path), settings=Settings(anonymized_telemetry=False)
    )
    client.create_collection("items", embedding_function=None)
    with pytest.raises(IndexModelMismatchError, match="unknown embedding model"):
        ItemIndex(tmp_path, embedder=embedder)


def test_exactly_one_location(tmp_path: Path, embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ItemIndex(embedder=embedder)
    with pytest.raises(ValueError, match="exactly one"):
        ItemIndex(tmp_path, url="http://127.0.0.1:8000", embedder=embedder)


def test_index_item_validation_and_hash() -> None:
    base = IndexItem("a", "text", "T", ["X", "Y"], 1999, {"k": 1})  # type: ignore[arg-type]
    assert base.categories == ("X", "Y")
    assert (
        base.content_hash()
        == IndexItem("a", "text", "T", ("X", "Y"), 1999, {"k": 1}).content_hash()
    )
    for changed in (
        dataclasses.replace(base, text="text!"),
        dataclasses.replace(base, title="T2"),
        dataclasses.replace(base, categories=("X",)),
        dataclasses.replace(base, year=2000),
        dataclasses.replace(base, extra={"k": 2}),
    ):
        assert changed.content_hash() != base.content_hash()
    with pytest.raises(ValueError, match="reserved"):
        IndexItem("a", "t", extra={"year": 1})
    with pytest.raises(TypeError, match="str/int/float/bool"):
        IndexItem("a", "t", extra={"tags": ["x"]})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="year"):
        IndexItem("a", "t", year="1999")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="item_id"):
        IndexItem("", "t")


def test_an_unchanged_catalog_never_loads_the_model(
    tmp_path: Path, embedder: Embedder, catalog: list[IndexItem]
) -> None:
    ItemIndex(tmp_path, embedder=embedder).sync(catalog, show_progress=False)
    fresh = Embedder()  # as a new `mtrec index` process makes it
    assert fresh.known_dimension is None
    index = ItemIndex(tmp_path, embedder=fresh)
    report = index.sync(catalog, show_progress=False)
    assert report.unchanged == len(catalog) and report.embedded == 0
    assert index.get_embeddings([catalog[0].item_id]).shape == (1, 384)
    assert fresh.known_dimension is None, "the embedding model was loaded for nothing"
    index.search_text("a query", 3)  # a query needs it
    assert fresh.known_dimension == 384
