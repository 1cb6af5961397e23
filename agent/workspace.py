"""The workspace: one directory that holds everything a run makes.

Layout::

    WORKSPACE/
      workspace.json   which dataset (source, format) the workspace was built from
      mtrec.toml       optional settings (see ``agent.settings``)
      chroma/          the embedded Chroma item index (unless a server URL is configured)
      model/           multi-task model checkpoints (``LATEST`` names the current one)
      feedback.sqlite  append-only feedback events
      .lock            held while indexing or training, so two processes never interleave
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from filelock import FileLock, Timeout

from agent.errors import WorkspaceError
from agent.files import write_text_atomic
from agent.settings import Settings, default_workspace, load_settings
from mtrec.data import Dataset, load_dataset

if TYPE_CHECKING:
    from retrieval import Embedder, IndexItem, ItemIndex

MANIFEST = "workspace.json"


@dataclass(frozen=True)
class DatasetSpec:
    source: str
    format: str = "auto"


class Workspace:
    """A workspace directory and lazy access to what is in it.

    Args:
        root: The directory (created on first write). Default: ``$MTREC_WORKSPACE`` or
            ``./mtrec-workspace``.
        settings: Settings; read from the workspace and environment when None.
    """

    def __init__(self, root: str | Path | None = None, settings: Settings | None = None) -> None:
        self.root = Path(root) if root is not None else default_workspace()
        if self.root.exists() and not self.root.is_dir():
            raise WorkspaceError(f"workspace {self.root} exists and is not a directory")
        self.settings = settings or load_settings(self.root)

    # ---- paths --------------------------------------------------------------------------
    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def chroma_dir(self) -> Path:
        return self.root / "chroma"

    @property
    def feedback_path(self) -> Path:
        return self.root / "feedback.sqlite"

    def ensure(self) -> Workspace:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    @contextmanager
    def lock(self, what: str, timeout: float = 0.0) -> Iterator[None]:
        """Hold the workspace lock while ``what`` runs.

        Raises:
            WorkspaceError: another process holds it (after ``timeout`` seconds).
        """
        self.ensure()
        lock = FileLock(str(self.root / ".lock"))
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise WorkspaceError(
                f"another mtrec process is {what.split()[0]}ing or training in {self.root}; "
                "wait for it to finish"
            ) from None
        try:
            yield
        finally:
            lock.release()

    # ---- dataset --------------------------------------------------------------------------
    def dataset_spec(self) -> DatasetSpec:
        manifest = self.root / MANIFEST
        if not manifest.is_file():
            raise WorkspaceError(
                f"no dataset in workspace {self.root}; run `mtrec index --dataset ml-100k "
                f"-w {self.root}` (or `mtrec demo`) first"
            )
        data = json.loads(manifest.read_text())
        return DatasetSpec(**data["dataset"])

    def set_dataset(self, spec: DatasetSpec) -> None:
        self.ensure()
        write_text_atomic(
            self.root / MANIFEST, json.dumps({"dataset": spec.__dict__}, indent=2), mode=0o644
        )
        self.__dict__.pop("dataset", None)

    @cached_property
    def dataset(self) -> Dataset:
        spec = self.dataset_spec()
        return load_dataset(spec.source, format=spec.format)

    # ---- retrieval --------------------------------------------------------------------------
    @cached_property
    def embedder(self) -> Embedder:
        from retrieval import Embedder

        return Embedder(self.settings.embedding_model)

    def index(self, rebuild: bool = False, create: bool = False) -> ItemIndex:
        """Open the item index (embedded in the workspace, or the configured server).

        Args:
            rebuild: Drop the collection first.
            create: Allow opening an index that does not exist yet (``mtrec index`` only);
                otherwise a workspace that was never indexed is an error, not a new empty
                index.
        """
        from retrieval import ItemIndex

        if not create:
            self.dataset_spec()  # raises with "run mtrec index" when never indexed

        if self.settings.chroma_url:
            return ItemIndex(url=self.settings.chroma_url, embedder=self.embedder, rebuild=rebuild)
        return ItemIndex(path=self.chroma_dir, embedder=self.embedder, rebuild=rebuild)

    def text_embeddings(self, ds: Dataset) -> np.ndarray:
        """(n_items, d) item text embeddings from the index, rows in the dataset's dense order.

        Raises:
            WorkspaceError: the index does not hold the whole catalog.
        """
        index = self.index()
        if index.count() != ds.n_items:
            raise WorkspaceError(
                f"the item index holds {index.count()} items but the dataset has "
                f"{ds.n_items}; run `mtrec index -w {self.root}`"
            )
        return index.get_embeddings(ds.item_ids)


def index_items(ds: Dataset) -> list[IndexItem]:
    """The retrieval layer's records for a dataset's catalog (ids, text, metadata)."""
    from retrieval import IndexItem

    return [
        IndexItem(
            item_id=it.item_id,
            text=it.document(),
            title=it.title,
            categories=it.categories,
            year=it.year,
        )
        for it in ds.items
    ]
