"""Shared fixtures for the retrieval tests: one real embedder and a small clustered catalog."""

from __future__ import annotations

import pytest

from retrieval import Embedder, IndexItem, ItemIndex

from .catalog import make_catalog


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real default embedder (all-MiniLM-L6-v2), loaded once per test session."""
    return Embedder()


@pytest.fixture(scope="session")
def catalog() -> list[IndexItem]:
    """The clustered test catalog."""
    return make_catalog()


@pytest.fixture(scope="module")
def built_index(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, catalog: list[IndexItem]
) -> ItemIndex:
    """A persistent index holding the whole catalog; shared read-only within a module."""
    index = ItemIndex(tmp_path_factory.mktemp("chroma"), embedder=embedder)
    index.sync(catalog, show_progress=False)
    return index
