"""The dataset manifest: ``dataset.toml`` in a folder says how to read the files beside it.

A catalog with its own file layout and column names is read with no code::

    name = "shop"
    format = "table"              # "table" (CSV/TSV/JSONL/Parquet) or "atomic" (RecBole)
    interactions = "orders.csv"
    items = "products.csv"        # optional: titles, text, categories, attributes
    users = "customers.csv"       # optional
    sep = ","                     # CSV separator ("\\t", ";", ...); by extension if unset
    encoding = "utf-8"

    [columns]                     # which column holds what (see mtrec.data.tabular.ColumnMap)
    user = "customer"
    item = "sku"
    rating = "stars"
    title = "name"
    text = "description"
    categories = "department"

    [profile]                     # the domain profile's fields (mtrec.data.profile)
    item_noun = "product"
    category_noun = "department"

The same fields can be given as ``mtrec index`` flags; the workspace stores the manifest it
used, so every later command reads the data the same way (``lenient`` included).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mtrec.data.errors import DataError
from mtrec.data.tabular import ColumnMap

MANIFEST_FILE = "dataset.toml"


class DatasetManifest(BaseModel):
    """How to read one dataset (``dataset.toml``); file paths are relative to ``root``.

    Attributes:
        name: The dataset's name (default: the folder's).
        format: ``table`` or ``atomic``.
        interactions: The interactions file (``table``).
        items: The item table, if any (``table``).
        users: The user table, if any (``table``).
        columns: Which column holds which field (``table``).
        sep: Field separator of delimited files (default: by extension).
        encoding: Text encoding of delimited files.
        lenient: Skip malformed rows (reported) instead of stopping at the first.
        profile: Domain profile fields that override what is inferred from the data.
        citation: Where the data comes from and on what terms (shown by ``mtrec info``).
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    format: Literal["table", "atomic"] = "table"
    interactions: str | None = None
    items: str | None = None
    users: str | None = None
    columns: ColumnMap = Field(default_factory=ColumnMap)
    sep: str | None = None
    encoding: str = "utf-8"
    lenient: bool = False
    profile: dict[str, Any] = Field(default_factory=dict)
    citation: str | None = None


def read_manifest(path: str | Path) -> DatasetManifest:
    """Read a ``dataset.toml`` (or the one inside a folder).

    Raises:
        DataError: unreadable TOML or fields that do not fit (named with the file).
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(path, f"cannot read the manifest: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise DataError(path, f"not valid TOML: {e}") from None
    try:
        return DatasetManifest.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in e.errors(include_url=False)
        )
        raise DataError(path, problems) from None


def manifest_toml(manifest: DatasetManifest) -> str:
    """The manifest as ``dataset.toml`` text (what ``mtrec data get`` writes)."""
    lines = []
    data = manifest.model_dump(exclude_none=True, exclude_defaults=True)
    tables = {k: data.pop(k) for k in ("columns", "profile") if k in data}
    for key, value in data.items():
        lines.append(f"{key} = {_toml_value(value)}")
    for table, values in tables.items():
        scalars = {k: v for k, v in values.items() if not isinstance(v, list)}
        lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in scalars.items()]
        for key, rows in ((k, v) for k, v in values.items() if isinstance(v, list)):
            for row in rows:
                lines += ["", f"[[{table}.{key}]]"]
                lines += [f"{k} = {_toml_value(v)}" for k, v in row.items() if v is not None]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'
