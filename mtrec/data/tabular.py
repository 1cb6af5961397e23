"""A generic reader for CSV, JSONL and Parquet files with a column mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from mtrec.data.errors import DataError, RowSink
from mtrec.data.frames import build_dataset, parse_year, read_delimited, read_text
from mtrec.data.schema import Dataset


class ColumnMap(BaseModel):
    """Which source column holds which field. Unmapped item/user columns become attributes.

    ``rating`` holds the event value; ``event`` (optional) the event type
    (view/click/rating/like/dislike/purchase/seen); without it, rows with a value are
    ratings and rows without one are views.
    """

    user: str = "user_id"
    item: str = "item_id"
    rating: str | None = "rating"
    timestamp: str | None = "timestamp"
    event: str | None = None
    title: str = "title"
    text: str | None = "text"
    categories: str | None = "categories"
    category_sep: str = "|"
    year: str | None = "year"


def read_table(
    path: str | Path,
    required: tuple[str, ...] = (),
    sep: str | None = None,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read CSV/TSV, JSONL or Parquet (by extension) as strings with ``_line``/``_path``.

    Args:
        path: The file.
        required: Columns that must be there (a missing one is an error listing the file's).
        sep: Separator of a delimited file (default: tab for ``.tsv``, else comma); quoted
            fields are read as CSV for any separator but tab.
        encoding: Text encoding of a delimited or JSONL file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        sep = sep or ("\t" if suffix == ".tsv" else ",")
        return read_delimited(path, sep, encoding=encoding, required=required, quoted=sep != "\t")
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(read_text(path, encoding).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, f"invalid JSON: {e.msg}", n) from None
            if not isinstance(obj, dict):
                raise DataError(path, "each line must be a JSON object", n)
            obj["_line"] = n
            rows.append(obj)
        if not rows:
            raise DataError(path, "file is empty")
        df = pd.DataFrame(rows)
    elif suffix == ".parquet":
        if not path.is_file():
            raise DataError(path, "no such file")
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types for a broken file
            raise DataError(path, f"not a readable Parquet file: {e}") from None
        if df.empty:
            raise DataError(path, "file is empty")
        df["_line"] = range(1, len(df) + 1)  # row number, 1-based
    else:
        raise DataError(path, f"unknown table format {suffix!r} (use .csv, .tsv, .jsonl, .parquet)")
    df["_path"] = str(path)
    missing = [c for c in required if c not in df.columns]
    if missing:
        found = [c for c in df.columns if not c.startswith("_")]
        raise DataError(path, f"missing column(s) {missing} (found {found})", 1)
    for c in df.columns:
        if c not in ("_line", "_path"):
            df[c] = ["" if v is None or (isinstance(v, float) and v != v) else v for v in df[c]]
    return df


def _mapped(cm: ColumnMap, fields: tuple[str, ...]) -> tuple[str, ...]:
    """The source columns a map names for ``fields`` that must therefore exist.

    The canonical defaults are optional (a file without a ``rating`` column has no ratings);
    a column the user named explicitly must be there.
    """
    defaults = ColumnMap()
    out = []
    for f in fields:
        col = getattr(cm, f)
        if col and (f in ("user", "item") or col != getattr(defaults, f)):
            out.append(col)
    return tuple(out)


def _as_seq(value: object, sep: str) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value if str(v))
    return tuple(s.strip() for s in str(value).split(sep) if s.strip())


def load_tabular(
    interactions: str | Path,
    items: str | Path | None = None,
    users: str | Path | None = None,
    columns: ColumnMap | None = None,
    name: str | None = None,
    lenient: bool = False,
    sink: RowSink | None = None,
    sep: str | None = None,
    encoding: str = "utf-8",
) -> Dataset:
    """Load a dataset from generic tables.

    Args:
        interactions: CSV/TSV/JSONL/Parquet file with one interaction per row.
        items: Optional item table; without it the catalog is the items in ``interactions``.
        users: Optional user table (``columns.user`` plus attributes).
        columns: The column mapping (defaults to canonical names).
        name: Dataset name (default: the interactions file stem).
        lenient: Skip bad rows instead of raising.
        sink: Where bad rows go.
        sep: Separator of delimited files (see ``read_table``).
        encoding: Text encoding of delimited and JSONL files.

    Raises:
        DataError: a file is missing or malformed, or a mapped column is not in it (the
            message lists the file's columns).
    """
    cm = columns or ColumnMap()
    sink = sink or RowSink(lenient)
    inter = read_table(
        interactions, required=_mapped(cm, ("user", "item", "rating", "timestamp", "event")),
        sep=sep, encoding=encoding,
    )  # fmt: skip
    out = pd.DataFrame(
        {
            "user_id": inter[cm.user].astype(str),
            "item_id": inter[cm.item].astype(str),
            "_line": inter["_line"],
            "_path": inter["_path"],
        }
    )
    out["value"] = inter[cm.rating].astype(str) if cm.rating in inter.columns else ""
    out["timestamp"] = inter[cm.timestamp].astype(str) if cm.timestamp in inter.columns else ""
    if cm.event and cm.event in inter.columns:
        out["event"] = inter[cm.event].astype(str)
    else:
        out["event"] = ["rating" if v != "" else "view" for v in out["value"]]

    if items is not None:
        it = read_table(
            items, required=_mapped(cm, ("item", "title", "text", "categories", "year")),
            sep=sep, encoding=encoding,
        )  # fmt: skip
        it = it.rename(columns={cm.item: "item_id"})
        it["item_id"] = it["item_id"].astype(str)
        it["title"] = it[cm.title].astype(str) if cm.title in it.columns else it["item_id"]
        it["text"] = it[cm.text].astype(str) if cm.text and cm.text in it.columns else ""
        has_cats = cm.categories and cm.categories in it.columns
        it["categories"] = (
            [_as_seq(v, cm.category_sep) for v in it[cm.categories]] if has_cats else [()] * len(it)
        )
        has_year = cm.year and cm.year in it.columns
        it["year"] = [parse_year(str(y)) for y in it[cm.year]] if has_year else None
        drop = {c for c in (cm.title, cm.text, cm.categories, cm.year) if c}
        drop -= {"item_id", "title", "text", "categories", "year"}
        it = it.drop(columns=[c for c in drop if c in it.columns])
    else:
        # No item table: the catalog is the items in the interactions, each with the line
        # that first names it (for error messages).
        first = out.assign(item_id=out["item_id"].str.strip()).drop_duplicates("item_id")
        it = pd.DataFrame(
            {
                "item_id": first["item_id"].to_numpy(),
                "title": first["item_id"].to_numpy(),
                "_line": first["_line"].to_numpy(),
                "_path": str(interactions),
            }
        )
        it["categories"] = [()] * len(it)

    us = None
    if users is not None:
        us = read_table(users, required=(cm.user,), sep=sep, encoding=encoding)
        us = us.rename(columns={cm.user: "user_id"})
    return build_dataset(
        name or Path(interactions).stem,
        it,
        out,
        us,
        sink,
        source=interactions,
        title_column=cm.title if items is not None else None,
        category_column=cm.categories if items is not None else None,
    )
