"""Turn loader DataFrames into a validated ``Dataset``.

Every loader reads its format into three pandas frames with canonical columns and a
``_line`` column (the 1-based source line, for error messages), then calls
``build_dataset``, so that validation is written once:

* items: ``item_id, title, text, categories (tuple), year`` plus attribute columns;
* interactions: ``user_id, item_id, event, value, timestamp``;
* users: ``user_id`` plus attribute columns.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mtrec.data.errors import DataError, RowSink
from mtrec.data.profile import infer_profile
from mtrec.data.schema import Dataset, EventType, Item, User

#: Item free text longer than this is cut (a 1 MB description must not reach a prompt or an index).
MAX_TEXT_CHARS = 4000
#: Ratings outside this closed range are rejected.
RATING_RANGE = (0.0, 10.0)
#: Timestamps further than this in the future (seconds) are rejected.
FUTURE_SLACK_S = 86_400.0

_ITEM_CORE = ("item_id", "title", "text", "categories", "year", "_line", "_path")
_USER_CORE = ("user_id", "_line", "_path")


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """Read a whole text file, turning a decode error into a ``DataError`` with its line."""
    if not path.is_file():
        raise DataError(path, "no such file")
    raw = path.read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            path, f"not valid {encoding} text (byte 0x{raw[e.start]:02x} at offset {e.start})", line
        ) from None


def read_delimited(
    path: Path,
    sep: str,
    names: list[str] | None = None,
    encoding: str = "utf-8",
    required: tuple[str, ...] = (),
    quoted: bool | None = None,
) -> pd.DataFrame:
    """Read a delimited file as strings, with a ``_line`` column and column checks.

    Args:
        path: The file.
        sep: Field separator (a literal string, e.g. ``"\\t"``, ``"::"``, ``","``).
        names: Column names for a file without a header row; None reads the header.
        encoding: Text encoding.
        required: Columns that must be present (after header parsing).
        quoted: Honour CSV quotes; default only for ``","`` (MovieLens and RecBole files are
            unquoted and hold stray quote characters in titles).

    Raises:
        DataError: empty file, bad encoding, wrong delimiter or missing columns.
    """
    text = read_text(path, encoding)
    if not text.strip():
        raise DataError(path, "file is empty")
    header = 0 if names is None else None
    engine = "c" if len(sep) == 1 else "python"
    try:
        df = pd.read_csv(
            io.StringIO(text),
            sep=sep if len(sep) == 1 else _regex_literal(sep),
            header=header,
            names=names,
            dtype=str,
            keep_default_na=False,
            engine=engine,
            quoting=0 if (quoted if quoted is not None else sep == ",") else 3,
            index_col=False,
        )
    except pd.errors.ParserError as e:
        raise DataError(path, f"cannot parse as {sep!r}-separated text: {e}") from None
    first_data_line = 1 if names is not None else 2
    df["_line"] = np.arange(first_data_line, first_data_line + len(df))
    df["_path"] = str(path)
    missing = [c for c in required if c not in df.columns]
    if missing:
        found = [c for c in df.columns if not c.startswith("_")]
        hint = ""
        if len(found) == 1 and sep not in found[0]:
            hint = f"; is the field separator {sep!r}?"
        raise DataError(path, f"missing column(s) {missing} (found {found}){hint}", 1)
    return df


def _regex_literal(sep: str) -> str:
    import re

    return re.escape(sep)


def parse_year(raw: str) -> int | None:
    """A 4-digit year from a cell such as ``"1995"`` or ``"01-Jan-1995"``; None otherwise."""
    digits = "".join(ch if ch.isdigit() else " " for ch in str(raw)).split()
    for d in reversed(digits):
        if len(d) == 4:
            return int(d)
    return None


def build_dataset(
    name: str,
    items: pd.DataFrame,
    interactions: pd.DataFrame,
    users: pd.DataFrame | None,
    sink: RowSink,
    now: float | None = None,
    source: str | Path | None = None,
    title_column: str | None = None,
    category_column: str | None = None,
) -> Dataset:
    """Validate canonical frames and build a ``Dataset``.

    ``source`` names the file an error about the whole dataset points at (default: the item
    file, else the dataset name). ``title_column`` and ``category_column`` name the source
    columns of titles and categories: they tell the profile what the items are
    (``infer_profile``).

    Checks: duplicate item/user ids, unknown items in interactions, unparsable, NaN or
    out-of-range ratings, negative or future timestamps, over-long item text (cut to
    ``MAX_TEXT_CHARS``, not an error). In strict mode the first problem raises
    ``DataError`` naming file and line; in lenient mode bad rows are skipped and counted.
    """
    now = time.time() if now is None else now
    item_records: list[Item] = []
    seen_items: set[str] = set()
    for row in items.to_dict("records"):
        iid = str(row["item_id"]).strip()
        if not iid:
            sink.bad(row["_path"], row["_line"], "empty item id")
            continue
        if iid in seen_items:
            sink.bad(row["_path"], row["_line"], "duplicate item id", iid)
            continue
        seen_items.add(iid)
        text = str(row.get("text") or "")
        if len(text) > MAX_TEXT_CHARS:
            text = text[:MAX_TEXT_CHARS]
        attrs = {
            k: v
            for k, v in row.items()
            if k not in _ITEM_CORE and v is not None and v == v and str(v) != ""
        }
        year = row.get("year")
        item_records.append(
            Item(
                item_id=iid,
                title=str(row.get("title") or iid)[:500],
                text=text,
                categories=tuple(row.get("categories") or ()),
                year=int(year) if year is not None and year == year else None,
                attributes=attrs,
            )
        )

    user_records: list[User] = []
    seen_users: set[str] = set()
    if users is not None:
        for row in users.to_dict("records"):
            uid = str(row["user_id"]).strip()
            if uid in seen_users:
                sink.bad(row["_path"], row["_line"], "duplicate user id", uid)
                continue
            seen_users.add(uid)
            attrs = {k: v for k, v in row.items() if k not in _USER_CORE and str(v) != ""}
            user_records.append(User(uid, attrs))

    u_idx, i_idx, ev, val, ts = _validate_interactions(
        interactions, item_records, user_records, sink, now
    )
    if not item_records:
        where = items["_path"].iloc[0] if len(items) else (source or name)
        raise DataError(where, "no valid items (is the file only a header?)")
    return Dataset(
        name,
        item_records,
        user_records,
        u_idx,
        i_idx,
        ev,
        val,
        ts,
        infer_profile(item_records, val, title_column, category_column),
    )


def _validate_interactions(
    inter: pd.DataFrame,
    items: list[Item],
    users: list[User],
    sink: RowSink,
    now: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised checks of the interaction frame; appends unseen users to ``users``.

    Returns:
        ``(user_idx, item_idx, event, value, timestamp)`` arrays of the kept rows.
    """
    n = len(inter)
    uid = inter["user_id"].astype(str).str.strip()
    iid = inter["item_id"].astype(str).str.strip()
    event_raw = inter["event"].astype(str).str.strip().str.lower().replace("", "rating")
    value_raw = inter["value"].astype(str).str.strip()
    stamp_raw = inter["timestamp"].astype(str).str.strip().replace("", "0")
    value = pd.to_numeric(value_raw, errors="coerce").to_numpy(dtype=np.float64)
    stamp = pd.to_numeric(stamp_raw, errors="coerce").to_numpy(dtype=np.float64)
    codes = {e.value: e.code for e in EventType}
    event = event_raw.map(codes)
    item_index = {it.item_id: i for i, it in enumerate(items)}
    item_pos = iid.map(item_index)
    has_value = (value_raw != "").to_numpy()
    lo, hi = RATING_RANGE
    # Each check: (mask of bad rows, reason, the offending cell). First failing check wins.
    checks = [
        ((uid == "").to_numpy(), "empty user id", uid),
        (item_pos.isna().to_numpy(), "interaction on unknown item", iid),
        (event.isna().to_numpy(), "unknown event type", event_raw),
        (has_value & ~np.isfinite(value), "unparsable or non-finite rating", value_raw),
        (has_value & ((value < lo) | (value > hi)), f"rating out of range [{lo}, {hi}]", value_raw),
        (
            ~has_value & (event == EventType.RATING.code).to_numpy(),
            "rating event without a value",
            value_raw,
        ),
        (~np.isfinite(stamp), "unparsable timestamp", stamp_raw),
        (stamp < 0, "negative timestamp", stamp_raw),
        (stamp > now + FUTURE_SLACK_S, "timestamp in the future", stamp_raw),
    ]
    bad = np.zeros(n, dtype=bool)
    paths, lines = inter["_path"].to_numpy(), inter["_line"].to_numpy()
    for mask, reason, cells in checks:
        fresh = np.flatnonzero(mask & ~bad)
        for r in fresh:
            sink.bad(paths[r], int(lines[r]), reason, repr(cells.iloc[r]))
        bad |= mask
    keep = ~bad
    user_index = {u.user_id: i for i, u in enumerate(users)}
    for u in pd.unique(uid[keep]):
        if u not in user_index:
            user_index[u] = len(users)
            users.append(User(u))
    u_idx = uid[keep].map(user_index).to_numpy(dtype=np.int64)
    i_idx = item_pos[keep].to_numpy(dtype=np.int64)
    ev = event[keep].to_numpy(dtype=np.int8)
    val = np.where(has_value[keep], value[keep], np.nan).astype(np.float32)
    return u_idx, i_idx, ev, val, stamp[keep]
