"""RecBole atomic files: ``NAME.inter``, ``NAME.item``, ``NAME.user`` with typed headers.

A header cell is ``field:type`` with type ``token``, ``token_seq``, ``float`` or
``float_seq``; fields are tab separated and ``token_seq`` values are space separated.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mtrec.data.errors import DataError, RowSink
from mtrec.data.frames import build_dataset, parse_year, read_delimited
from mtrec.data.schema import Dataset

_TYPES = {"token", "token_seq", "float", "float_seq"}
# Which atomic fields play which canonical role; the first present name wins.
_TITLE = ("movie_title", "title", "name", "item_name")
_YEAR = ("release_year", "year")
_CATEGORIES = ("class", "genre", "genres", "categories", "category")
_TEXT = ("text", "description", "desc", "overview", "tags")


def _read_atomic(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    df = read_delimited(path, "\t")
    renamed: dict[str, str] = {}
    for col in df.columns:
        if col.startswith("_"):
            continue
        name, sep, ftype = col.partition(":")
        if not sep or ftype not in _TYPES:
            hint = " (is the file tab separated?)" if ("," in col or ";" in col) else ""
            raise DataError(
                path, f"header cell {col!r} is not 'field:type' with a RecBole type{hint}", 1
            )
        renamed[col] = name
    df = df.rename(columns=renamed)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(path, f"missing column(s) {missing} (found {list(renamed.values())})", 1)
    return df


def _first(df: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in df.columns), None)


def load_atomic(
    directory: str | Path,
    name: str | None = None,
    lenient: bool = False,
    sink: RowSink | None = None,
) -> Dataset:
    """Load RecBole atomic files from a directory.

    Args:
        directory: Directory holding ``NAME.inter`` (required), ``NAME.item`` and ``NAME.user``.
        name: Dataset name; defaults to the directory name.
        lenient: Skip bad rows (counted in ``sink.report``) instead of raising.
        sink: Where bad rows go; a new one when None.

    Raises:
        DataError: a file is missing or malformed (strict mode), naming file and line.
    """
    directory = Path(directory)
    name = name or directory.name
    sink = sink or RowSink(lenient)
    inter_path = directory / f"{name}.inter"
    if not inter_path.is_file():
        raise DataError(inter_path, "no such file (a RecBole dataset needs NAME.inter)")
    inter = _read_atomic(inter_path, ("user_id", "item_id"))
    inter = inter.rename(columns={"rating": "value"})
    if "value" not in inter.columns:
        inter["value"] = ""
    inter["event"] = ["rating" if v != "" else "view" for v in inter["value"]]
    if "timestamp" not in inter.columns:
        inter["timestamp"] = ""

    item_path = directory / f"{name}.item"
    if item_path.is_file():
        items = _read_atomic(item_path, ("item_id",))
        title, year, cats, text = (
            _first(items, _TITLE),
            _first(items, _YEAR),
            _first(items, _CATEGORIES),
            _first(items, _TEXT),
        )
        items = items.rename(
            columns={k: v for k, v in {title: "title", year: "year", text: "text"}.items() if k}
        )
        items["categories"] = [tuple(s.split()) for s in items[cats]] if cats else [()] * len(items)
        if cats:
            items = items.drop(columns=[cats])
        if "year" in items.columns:
            items["year"] = [parse_year(y) for y in items["year"]]
    else:
        # No item file: the catalog is the set of items seen in interactions.
        first = inter.assign(item_id=inter["item_id"].str.strip()).drop_duplicates("item_id")
        items = pd.DataFrame(
            {
                "item_id": first["item_id"].to_numpy(),
                "_line": first["_line"].to_numpy(),
                "_path": str(inter_path),
            }
        )
        items["categories"] = [()] * len(items)

    user_path = directory / f"{name}.user"
    users = _read_atomic(user_path, ("user_id",)) if user_path.is_file() else None
    return build_dataset(
        name,
        items,
        inter,
        users,
        sink,
        source=inter_path,
        title_column=title if item_path.is_file() else None,
        category_column=cats if item_path.is_file() else None,
    )
