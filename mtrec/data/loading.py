"""One entry point that loads any supported dataset by name or path."""

from __future__ import annotations

from pathlib import Path

from mtrec.data.atomic import load_atomic
from mtrec.data.download import SOURCES, get_dataset
from mtrec.data.errors import DataError, LoadReport, RowSink
from mtrec.data.manifest import MANIFEST_FILE, DatasetManifest, read_manifest
from mtrec.data.movielens import detect_movielens, load_ml1m, load_ml100k_raw, load_ml_latest
from mtrec.data.schema import Dataset
from mtrec.data.synthetic import generate_synthetic
from mtrec.data.tabular import ColumnMap, load_tabular

FORMATS = ("auto", "atomic", "ml-100k-raw", "ml-1m", "ml-latest", "table", "synthetic")


def load_dataset(
    source: str | Path,
    format: str = "auto",
    lenient: bool = False,
    columns: ColumnMap | None = None,
    report: LoadReport | None = None,
    manifest: DatasetManifest | None = None,
) -> Dataset:
    """Load a dataset.

    Args:
        source: A known name (``"ml-100k"``, ``"book-crossing"``: fetched into the cache when
            missing), a directory (with a ``dataset.toml`` manifest, RecBole atomic files or a
            MovieLens layout), a table file (CSV/TSV/JSONL/Parquet of interactions), or
            ``"synthetic:N_ITEMS:N_USERS:N_INTER"``.
        format: One of ``FORMATS``; ``auto`` detects from the source.
        lenient: Skip bad rows (counted into ``report``) instead of raising.
        columns: Column mapping for ``table`` sources.
        report: Collects what a lenient load skipped.
        manifest: How to read ``source`` (a folder, or the folder of its files); overrides a
            ``dataset.toml`` there.

    Raises:
        DataError: the source is missing or malformed (names file and line).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    text = str(source)
    if format == "synthetic" or text.startswith("synthetic"):
        parts = [int(p) for p in text.split(":")[1:]] if ":" in text else []
        return generate_synthetic(*parts)
    path = get_dataset(text) if format == "auto" and text in SOURCES else Path(source)
    if manifest is None and path.is_dir() and (path / MANIFEST_FILE).is_file():
        manifest = read_manifest(path)
    if manifest is not None:
        return load_with_manifest(path, manifest, lenient, report)
    sink = RowSink(lenient, report)
    if not path.exists():
        known = ", ".join(SOURCES)
        raise DataError(path, f"no such file or directory (known dataset names: {known})")
    if path.is_file():
        if format not in ("auto", "table"):
            raise DataError(path, f"format {format!r} expects a directory")
        return load_tabular(path, columns=columns, sink=sink)
    if format == "auto":
        format = detect_movielens(path) or ("atomic" if any(path.glob("*.inter")) else "")
        if not format:
            raise DataError(
                path,
                "cannot tell the dataset format (no .inter, u.data, "
                "ratings.dat or ratings.csv here); pass --format",
            )
    if format == "atomic":
        inter = sorted(path.glob("*.inter"))
        name = inter[0].stem if inter else path.name
        return load_atomic(path, name=name, sink=sink)
    loader = {"ml-100k-raw": load_ml100k_raw, "ml-1m": load_ml1m, "ml-latest": load_ml_latest}
    if format in loader:
        return loader[format](path, sink=sink)
    raise DataError(path, f"format {format!r} expects a file")


def load_with_manifest(
    root: str | Path,
    manifest: DatasetManifest,
    lenient: bool = False,
    report: LoadReport | None = None,
) -> Dataset:
    """Load the files a manifest names (relative to ``root``, a folder or a file in one) and
    apply its profile.

    Raises:
        DataError: a named file is missing or malformed.
    """
    root = Path(root)
    folder = root if root.is_dir() else root.parent
    sink = RowSink(lenient or manifest.lenient, report)
    if manifest.format == "atomic":
        inter = sorted(folder.glob("*.inter"))
        name = manifest.name or (inter[0].stem if inter else folder.name)
        ds = load_atomic(folder, name=name, sink=sink)
    else:
        if manifest.interactions is None:
            raise DataError(folder / MANIFEST_FILE, "a table manifest names its interactions file")
        ds = load_tabular(
            folder / manifest.interactions,
            items=folder / manifest.items if manifest.items else None,
            users=folder / manifest.users if manifest.users else None,
            columns=manifest.columns,
            name=manifest.name or folder.name,
            sink=sink,
            sep=manifest.sep,
            encoding=manifest.encoding,
        )
    try:
        ds.profile = ds.profile.merged(manifest.profile)
    except ValueError as e:
        raise DataError(folder / MANIFEST_FILE, f"[profile]: {e}") from None
    return ds
