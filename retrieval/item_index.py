"""Persistent vector index of catalog items on Chroma."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from retrieval.errors import (
    IndexConnectionError,
    IndexModelMismatchError,
    RetrievalError,
    UnknownItemError,
)
from retrieval.filters import ItemFilter
from retrieval.records import HASH_KEY, Hit, IndexItem, SyncReport

if TYPE_CHECKING:
    from retrieval.embedder import Embedder

#: Collection metadata keys binding a collection to the model that produced its vectors.
MODEL_KEY = "embedding_model"
DIMENSION_KEY = "embedding_dimension"

# Unfiltered candidates ranked per wanted hit before falling back to Chroma's where filter.
_PROBE_FACTOR = 4

# Page size for scans over the whole collection (ids / hashes): bounds memory on big catalogs.
_SCAN_PAGE = 20_000


def _chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


class ItemIndex:
    """Item vectors in a Chroma collection, kept in sync with a catalog.

    Exactly one of ``path`` (embedded, on-disk Chroma) or ``url`` (a ``chroma run`` server) must
    be given. The collection records the embedder's model id and dimension; opening it with a
    different embedder raises :class:`IndexModelMismatchError` unless ``rebuild=True``.

    Args:
        path: Directory of an embedded persistent Chroma database.
        url: Chroma server URL such as ``http://127.0.0.1:8000``.
        embedder: Produces the item and query vectors.
        collection: Chroma collection name (3-512 chars of ``[a-zA-Z0-9._-]``).
        rebuild: Drop any existing collection of that name first (e.g. after a model change).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        url: str | None = None,
        *,
        embedder: Embedder,
        collection: str = "items",
        rebuild: bool = False,
    ) -> None:
        if (path is None) == (url is None):
            raise ValueError("give exactly one of path= (embedded Chroma) or url= (Chroma server)")
        self._embedder = embedder
        self._name = collection
        self._client, self._location = self._connect(path, url)
        # Chroma caps the records per call; stay below it for upserts, deletes and id lookups.
        self._max_batch = int(self._client.get_max_batch_size())
        if rebuild:
            self._drop()
        self._collection = self._open()

    # ------------------------------------------------------------------ connection / collection

    @staticmethod
    def _connect(path: str | Path | None, url: str | None) -> tuple[Any, str]:
        # Imported here: chromadb takes ~0.7 s to import and most users of `retrieval` need it
        # only once an index is opened.
        import chromadb
        from chromadb.config import Settings

        major, minor = (int(part) for part in chromadb.__version__.split(".")[:2])
        if (major, minor) < (1, 5):
            # Categories are stored as array metadata, which Chroma added in 1.5.0.
            raise RetrievalError(
                f"retrieval needs chromadb>=1.5 (array metadata), found {chromadb.__version__}"
            )
        settings = Settings(anonymized_telemetry=False)  # never phone home
        if path is not None:
            location = str(Path(path).expanduser())
            return chromadb.PersistentClient(path=location, settings=settings), location
        assert url is not None
        parsed = urlparse(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"url must look like http://HOST:PORT, got {url!r}")
        port = parsed.port or (443 if parsed.scheme == "https" else 8000)
        try:
            client = chromadb.HttpClient(
                host=parsed.hostname,
                port=port,
                ssl=parsed.scheme == "https",
                settings=settings,
            )
        except ValueError as exc:  # chromadb reports an unreachable server as ValueError
            raise IndexConnectionError(
                f"Could not reach a Chroma server at {url}: {exc} "
                f"(start one with `chroma run --path DIR --host {parsed.hostname} --port {port}`)"
            ) from exc
        return client, url

    def _drop(self) -> None:
        from chromadb.errors import NotFoundError

        with contextlib.suppress(NotFoundError):  # nothing to drop yet
            self._client.delete_collection(self._name)

    def _open(self) -> Any:
        from chromadb.errors import NotFoundError

        model_id = self._embedder.model_id
        try:
            # An existing collection says its own width: the embedder need not be loaded.
            collection = self._client.get_collection(self._name, embedding_function=None)
        except NotFoundError:
            collection = self._client.get_or_create_collection(
                self._name,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={MODEL_KEY: model_id, DIMENSION_KEY: self._embedder.dimension},
                # Vectors are always supplied by us; this stops Chroma loading its own ONNX model.
                embedding_function=None,
            )
        # The collection keeps the model it was originally built with.
        meta = collection.metadata or {}
        dim = self._embedder.known_dimension
        if meta.get(MODEL_KEY) != model_id or (dim is not None and meta.get(DIMENSION_KEY) != dim):
            raise IndexModelMismatchError(
                collection=self._name,
                location=self._location,
                index_model=meta.get(MODEL_KEY),
                index_dimension=meta.get(DIMENSION_KEY),
                embedder_model=model_id,
                embedder_dimension=dim if dim is not None else self._embedder.dimension,
            )
        self._stored_dimension = int(meta.get(DIMENSION_KEY) or self._embedder.dimension)
        # configuration_json is the raw stored config; the `configuration` property would emit
        # a DeprecationWarning about the (deliberately absent) embedding function.
        config = getattr(collection, "configuration_json", None) or {}
        space = (config.get("hnsw") or {}).get("space", "cosine")
        if space != "cosine":
            raise RetrievalError(
                f"collection '{self._name}' uses distance space {space!r}, expected 'cosine'; "
                f"rebuild it (ItemIndex(..., rebuild=True))"
            )
        return collection

    # ------------------------------------------------------------------ properties

    @property
    def model_id(self) -> str:
        """Embedding model id the collection is bound to."""
        return self._embedder.model_id

    @property
    def dimension(self) -> int:
        """Vector width ``d`` (the collection's; the embedder is not loaded for it)."""
        return self._stored_dimension

    @property
    def collection_name(self) -> str:
        """Name of the Chroma collection."""
        return self._name

    def count(self) -> int:
        """Number of indexed items."""
        return int(self._collection.count())

    def ids(self, filters: ItemFilter | None = None) -> list[str]:
        """Indexed item ids, optionally only those matching ``filters``.

        Args:
            filters: Evaluated by Chroma as a ``where`` clause.

        Returns:
            Item ids in Chroma's storage order.
        """
        where = filters.to_where() if filters is not None else None
        return [item_id for item_id, _ in self._scan(include=[], where=where)]

    def _scan(
        self, include: list[str], where: dict[str, Any] | None = None
    ) -> Iterator[tuple[str, dict[str, Any] | None]]:
        # Paged to keep each response bounded; pages are stable because nothing is written
        # between them.
        offset = 0
        while True:
            page = self._collection.get(
                where=where, limit=_SCAN_PAGE, offset=offset, include=include
            )
            ids = page["ids"]
            metas = page.get("metadatas") or [None] * len(ids)
            yield from zip(ids, metas, strict=True)
            if len(ids) < _SCAN_PAGE:
                return
            offset += len(ids)

    # ------------------------------------------------------------------ writing

    def sync(
        self,
        items: Sequence[IndexItem],
        show_progress: bool = True,
        batch_size: int = 1000,
    ) -> SyncReport:
        """Make the collection hold exactly ``items``, embedding only what changed.

        Each stored item carries the sha256 of its text and metadata; items whose hash is
        unchanged are skipped, new/changed ones are embedded and upserted in batches, and
        stored items absent from ``items`` are deleted.

        Args:
            items: The full catalog. Item ids must be unique.
            show_progress: Show a rich progress bar while embedding.
            batch_size: Items embedded and upserted per round trip.

        Returns:
            Counts of added/updated/unchanged/deleted items and the elapsed seconds.
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        start = time.perf_counter()
        wanted: dict[str, IndexItem] = {}
        for item in items:
            if item.item_id in wanted:
                raise ValueError(f"duplicate item_id {item.item_id!r} in sync() input")
            wanted[item.item_id] = item

        # Only the hashes are needed, so skip embeddings (by far the largest field).
        stored = {
            item_id: (meta or {}).get(HASH_KEY) for item_id, meta in self._scan(["metadatas"])
        }
        to_delete = [item_id for item_id in stored if item_id not in wanted]
        to_embed: list[tuple[IndexItem, dict[str, Any]]] = []
        added = updated = unchanged = 0
        for item_id, item in wanted.items():
            digest = item.content_hash()
            if item_id not in stored:
                added += 1
            elif stored[item_id] != digest:
                updated += 1
            else:
                unchanged += 1
                continue  # metadata is only built for items that get written
            to_embed.append((item, item.to_metadata(digest)))

        for chunk in _chunks(to_delete, self._max_batch):
            self._collection.delete(ids=list(chunk))
        if to_embed:
            self._embed_and_upsert(to_embed, show_progress, min(batch_size, self._max_batch))
        return SyncReport(
            added=added,
            updated=updated,
            unchanged=unchanged,
            deleted=len(to_delete),
            seconds=time.perf_counter() - start,
        )

    def _embed_and_upsert(
        self,
        pending: list[tuple[IndexItem, dict[str, Any]]],
        show_progress: bool,
        batch_size: int,
    ) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("[bold]Embedding items"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            disable=not show_progress,
        ) as progress:
            task = progress.add_task("embed", total=len(pending))
            # Upsert batch i on a worker thread while batch i+1 is being embedded: both torch
            # and Chroma's Rust core release the GIL, so Chroma's write/HNSW time overlaps.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chroma-upsert") as pool:
                inflight: Future[None] | None = None
                inflight_n = 0
                for chunk in _chunks(pending, batch_size):
                    vectors = self._embedder.encode([item.text for item, _ in chunk])
                    if inflight is not None:
                        inflight.result()  # re-raises upsert errors; keeps one batch in flight
                        progress.advance(task, inflight_n)
                    inflight, inflight_n = pool.submit(self._upsert, chunk, vectors), len(chunk)
                if inflight is not None:
                    inflight.result()
                    progress.advance(task, inflight_n)

    def _upsert(
        self, chunk: Sequence[tuple[IndexItem, dict[str, Any]]], vectors: np.ndarray
    ) -> None:
        self._collection.upsert(
            ids=[item.item_id for item, _ in chunk],
            embeddings=vectors,
            metadatas=[meta for _, meta in chunk],
        )

    def clear(self) -> None:
        """Drop the collection and recreate it empty, bound to the current embedder."""
        self._drop()
        self._collection = self._open()

    def rebuild(self, items: Sequence[IndexItem], show_progress: bool = True) -> SyncReport:
        """Drop everything and index ``items`` from scratch.

        Args:
            items: The full catalog.
            show_progress: Show a rich progress bar while embedding.

        Returns:
            The sync report (every item counts as added).
        """
        self.clear()
        return self.sync(items, show_progress=show_progress)

    # ------------------------------------------------------------------ reading

    def get_embeddings(self, ids: Sequence[str]) -> np.ndarray:
        """Fetch stored vectors.

        Args:
            ids: ``n`` item ids (duplicates allowed).

        Returns:
            float32 array of shape ``(n, d)``, rows in the order of ``ids``.

        Raises:
            UnknownItemError: If any id is not indexed.
        """
        if isinstance(ids, str):
            raise TypeError("get_embeddings() takes a sequence of ids, not a single string")
        ids = list(ids)
        out = np.empty((len(ids), self.dimension), dtype=np.float32)
        if not ids:
            return out
        unique = list(dict.fromkeys(ids))
        found: dict[str, np.ndarray] = {}
        for chunk in _chunks(unique, self._max_batch):
            page = self._collection.get(ids=list(chunk), include=["embeddings"])
            # Chroma returns rows in storage order and silently drops unknown ids.
            found.update(zip(page["ids"], page["embeddings"], strict=True))
        missing = [item_id for item_id in unique if item_id not in found]
        if missing:
            raise UnknownItemError(missing, self._name)
        for row, item_id in enumerate(ids):
            out[row] = found[item_id]
        return out

    def search_vector(
        self,
        vector: np.ndarray,
        k: int = 10,
        filters: ItemFilter | None = None,
        exclude_ids: Collection[str] = (),
    ) -> list[Hit]:
        """Nearest items to a query vector.

        Args:
            vector: Query of shape ``(d,)`` or ``(1, d)``; need not be normalised.
            k: Number of hits wanted (fewer if the collection/filter has fewer items).
            filters: Optional metadata restrictions.
            exclude_ids: Item ids never to return (e.g. items the user already saw).

        Returns:
            Up to ``k`` hits, best (highest cosine similarity) first.
        """
        self._check_k(k)
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dimension:
            raise ValueError(
                f"query vector has {query.shape[0]} dimensions, index expects {self.dimension}"
            )
        if not np.all(np.isfinite(query)) or not np.any(query):
            raise ValueError("query vector must be finite and non-zero for cosine search")
        if isinstance(exclude_ids, str):
            exclude_ids = (exclude_ids,)
        excluded = set(exclude_ids)
        where = filters.to_where() if filters is not None else None
        if filters is not None and where is not None:
            # Chroma's metadata pre-filter costs ~0.1-0.3 s at 100k items whatever k is, while an
            # unfiltered ANN query takes ~2 ms. So first rank a few times k unfiltered neighbours
            # and filter them here; the first k that pass ARE the filtered top k. Only when too
            # few pass (a selective filter) fall back to Chroma's where clause.
            probe, exhaustive = self._nearest(query, _PROBE_FACTOR * k, excluded, None)
            hits = [
                Hit.from_chroma(item_id, dist, meta)
                for item_id, dist, meta in probe
                if filters.matches(meta)
            ][:k]
            if len(hits) == k or exhaustive:
                return hits
        ranked, _ = self._nearest(query, k, excluded, where)
        return [Hit.from_chroma(item_id, dist, meta) for item_id, dist, meta in ranked]

    def _nearest(
        self, query: np.ndarray, m: int, excluded: set[str], where: dict[str, Any] | None
    ) -> tuple[list[tuple[str, float, dict[str, Any]]], bool]:
        """Up to ``m`` nearest (id, cosine distance, metadata) triples, best first, excluded ids
        removed.

        Returns:
            The triples and whether Chroma returned fewer rows than asked (nothing more exists).
        """
        # Chroma cannot exclude ids inside the ANN search, so over-fetch by the worst case and
        # drop excluded ids here; Chroma caps n_results at the collection size itself.
        n = m + len(excluded)
        # Metadata costs ~55 us per returned row: with a small over-fetch one call carrying it is
        # cheapest; with a big exclusion list fetch it afterwards for the survivors only.
        inline = len(excluded) <= m
        result = self._collection.query(
            query_embeddings=query[None, :],
            n_results=n,
            where=where,
            include=["distances", "metadatas"] if inline else ["distances"],
        )
        ids, dists = result["ids"][0], result["distances"][0]
        metas = result["metadatas"][0] if inline else [None] * len(ids)
        kept = [
            (i, float(d), meta)
            for i, d, meta in zip(ids, dists, metas, strict=True)
            if i not in excluded
        ][:m]
        if not inline:
            fetched = self._metadatas([i for i, _, _ in kept])
            # An id can vanish between the two calls if another writer deletes it; drop it then.
            kept = [(i, d, fetched[i]) for i, d, _ in kept if i in fetched]
        return [(i, d, meta or {}) for i, d, meta in kept], len(ids) < n

    def _metadatas(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(ids, self._max_batch):
            page = self._collection.get(ids=list(chunk), include=["metadatas"])
            out.update((i, m or {}) for i, m in zip(page["ids"], page["metadatas"], strict=True))
        return out

    def search_text(
        self,
        query: str,
        k: int = 10,
        filters: ItemFilter | None = None,
        exclude_ids: Collection[str] = (),
    ) -> list[Hit]:
        """Items whose text is semantically closest to ``query``.

        Args:
            query: Free-text query (embedded with the index's embedder).
            k: Number of hits wanted.
            filters: Optional metadata restrictions.
            exclude_ids: Item ids never to return.

        Returns:
            Up to ``k`` hits, best first.
        """
        self._check_k(k)
        return self.search_vector(self.embed_text(query), k, filters, exclude_ids)

    def embed_text(self, text: str) -> np.ndarray:
        """(dimension,) the unit-norm embedding of a free text, as queries are embedded.

        Embed a query once and pass the vector to ``search_vector`` and to a dot product with
        ``get_embeddings`` (a query costs ~9 ms to embed on 2 CPU cores).

        Raises:
            ValueError: the text is empty.
        """
        if not text.strip():
            raise ValueError("search query is empty")
        return self._embedder.encode_one(text)

    def similar(
        self,
        item_id: str,
        k: int = 10,
        filters: ItemFilter | None = None,
        exclude_ids: Collection[str] = (),
    ) -> list[Hit]:
        """Items most similar to an indexed item (the item itself is never returned).

        Args:
            item_id: An indexed item id.
            k: Number of hits wanted.
            filters: Optional metadata restrictions.
            exclude_ids: Further item ids never to return.

        Returns:
            Up to ``k`` hits, best first.

        Raises:
            UnknownItemError: If ``item_id`` is not indexed.
        """
        self._check_k(k)
        vector = self.get_embeddings([item_id])[0]
        if isinstance(exclude_ids, str):
            exclude_ids = (exclude_ids,)
        return self.search_vector(vector, k, filters, {item_id, *exclude_ids})

    @staticmethod
    def _check_k(k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ValueError(f"k must be a positive integer number of results, got {k!r}")

    def __repr__(self) -> str:
        return (
            f"ItemIndex(location={self._location!r}, collection={self._name!r}, "
            f"model_id={self.model_id!r})"
        )
