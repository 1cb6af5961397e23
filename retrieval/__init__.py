"""Semantic item retrieval: sentence embeddings of catalog items in a Chroma index.

Importing this package is cheap: torch/sentence-transformers load when an :class:`Embedder` is
created and chromadb when an :class:`ItemIndex` is opened. The package exchanges only ids,
scalars and numpy arrays with its callers and never imports ``mtrec`` or ``agent``.
"""

from __future__ import annotations

from retrieval.embedder import DEFAULT_MODEL_ID, Embedder
from retrieval.errors import (
    IndexConnectionError,
    IndexModelMismatchError,
    RetrievalError,
    UnknownItemError,
)
from retrieval.filters import ItemFilter
from retrieval.item_index import ItemIndex
from retrieval.records import Hit, IndexItem, SyncReport

__all__ = [
    "DEFAULT_MODEL_ID",
    "Embedder",
    "Hit",
    "IndexConnectionError",
    "IndexItem",
    "IndexModelMismatchError",
    "ItemFilter",
    "ItemIndex",
    "RetrievalError",
    "SyncReport",
    "UnknownItemError",
]
