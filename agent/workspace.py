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
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from filelock import FileLock, Timeout

from agent.errors import ConfigFileError, WorkspaceError
from agent.files import write_text_atomic
from agent.settings import CONFIG_FILE, Settings, default_workspace, load_settings
from mtrec.data import Dataset, LoadReport, load_dataset
from mtrec.data.manifest import DatasetManifest
from mtrec.data.profile import DomainProfile

if TYPE_CHECKING:
    from retrieval import Embedder, IndexItem, ItemIndex

MANIFEST = "workspace.json"


@dataclass(frozen=True)
class DatasetSpec:
    """How the workspace's data is read, so every command reads it the same way.

    Attributes:
        source: A dataset name, folder or file (as ``load_dataset`` takes it).
        format: The loader (``auto`` detects).
        lenient: Skip malformed rows (``mtrec index --lenient``); training reads alike.
        manifest: A ``DatasetManifest`` given by flags (``--interactions``, ``--columns``,
            ...) instead of a ``dataset.toml``.
        profile: Domain profile fields given by ``mtrec index`` flags.
    """

    source: str
    format: str = "auto"
    lenient: bool = False
    manifest: dict[str, Any] | None = None
    profile: dict[str, Any] = field(default_factory=dict)

    def load(self, report: LoadReport | None = None) -> Dataset:
        """The dataset, read as this spec says (with the spec's profile fields applied).

        Raises:
            DataError: malformed data (file and line named). ValueError: a bad profile field.
        """
        manifest = DatasetManifest.model_validate(self.manifest) if self.manifest else None
        ds = load_dataset(
            self.source, self.format, lenient=self.lenient, report=report, manifest=manifest
        )
        ds.profile = ds.profile.merged(self.profile)
        return ds


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

    def set_dataset(self, spec: DatasetSpec, profile: DomainProfile | None = None) -> None:
        """Record how the data is read and the domain profile it was indexed with."""
        self.ensure()
        data: dict[str, Any] = {"dataset": asdict(spec)}
        if profile is not None:
            data["profile"] = profile.model_dump(exclude_none=True)
        write_text_atomic(self.root / MANIFEST, json.dumps(data, indent=2), mode=0o644)
        self.__dict__.pop("dataset", None)

    @cached_property
    def dataset(self) -> Dataset:
        """The dataset, read as it was indexed, with the workspace's profile: the one
        ``mtrec index`` stored, overridden by ``mtrec.toml``'s ``[profile]`` table."""
        ds = self.dataset_spec().load()
        stored = json.loads((self.root / MANIFEST).read_text()).get("profile")
        profile = DomainProfile.model_validate(stored) if stored else ds.profile
        try:
            ds.profile = profile.merged(self.settings.profile)
        except ValueError as e:
            raise ConfigFileError(f"{self.root / CONFIG_FILE} [profile]: {e}") from None
        return ds

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
            text=it.document(ds.profile),
            title=it.title,
            categories=it.categories,
            year=it.year,
        )
        for it in ds.items
    ]


def workspace_info(ws: Workspace) -> dict[str, Any]:
    """What ``mtrec info`` shows: the data, its profile and attributes, the source's
    citation, the index and the trained model (plain data, for ``--json``)."""
    import numpy as np

    spec = ws.dataset_spec()
    ds = ws.dataset
    p = ds.profile
    attributes = []
    for a in p.attributes:
        if a.kind == "range":
            raw = (
                [it.year for it in ds.items if it.year]
                if a.name == "year"
                else [it.attributes.get(a.name) for it in ds.items]
            )
            x = np.array([float(v) for v in raw if _is_number(v)])
            summary = f"{x.min():g}–{x.max():g}" if len(x) else "no values"
        else:
            distinct = {
                str(it.attributes.get(a.name)) for it in ds.items if it.attributes.get(a.name)
            }
            summary = f"{len(distinct)} distinct"
        attributes.append({**a.model_dump(), "summary": summary})
    citation = None
    folder = Path(spec.source)
    if spec.manifest:
        citation = spec.manifest.get("citation")
    elif not folder.exists():
        from mtrec.data.download import SOURCES

        citation = SOURCES[spec.source].citation if spec.source in SOURCES else None
    from mtrec.config import MTRecConfig
    from mtrec.model.checkpoint import latest_checkpoint

    metrics, weights = {}, {}
    checkpoint = latest_checkpoint(ws.model_dir)  # its small JSON files only, not the weights
    if checkpoint is not None:
        path = checkpoint / "metrics.json"
        metrics = json.loads(path.read_text()) if path.is_file() else {}
        config = checkpoint / "config.json"
        if config.is_file():
            # The score's weights, chosen on validation after training (mtrec.selection).
            fusion = MTRecConfig.model_validate_json(config.read_text()).fusion
            weights = {
                "neighbour_weight": fusion.neighbour,
                "neighbour_decay": fusion.neighbour_decay,
                "like_weight": fusion.like,
                "rating_weight": fusion.rating,
            }
    return {
        "workspace": str(ws.root),
        "source": asdict(spec),
        "dataset": {
            **ds.summary(),
            "timestamps": ds.has_timestamps,
        },
        "profile": {
            **p.model_dump(),
            "items": p.items,
            "categories": p.categories,
            "rating_scale": p.rating_scale,
        },
        "attributes": attributes,
        "citation": citation,
        "index": str(ws.settings.chroma_url or ws.chroma_dir),
        "model": {
            **{k: metrics[k] for k in ("protocol", "best_epoch", "valid_ndcg@10") if k in metrics},
            **weights,
        }
        or None,
    }


def _is_number(v: object) -> bool:
    try:
        float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True
