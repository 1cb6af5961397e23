"""Property-based tests of the loaders: any file content gives a Dataset or a DataError.

Hypothesis writes random CSV, TSV, JSONL and RecBole atomic files (well-formed rows mixed
with garbage bytes, NaN/inf, out-of-range values, huge fields, stray quotes and delimiters)
and loads them strictly and leniently. The only acceptable outcomes are a valid ``Dataset``
or a ``DataError`` that names the file (and, when it gives a line, a line that exists).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mtrec.data import DataError, Dataset, LoadReport, load_dataset
from mtrec.data.frames import MAX_TEXT_CHARS

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ---- cells ----------------------------------------------------------------------------------
def _huge(n: int) -> str:
    return "x" * n


_good_id = st.integers(0, 30).map(str)
_number = st.one_of(
    st.integers(-5, 12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "", " ", "1e400", "5.0", "3", "0x10", "1_0"]),
)
_stamp = st.one_of(
    st.integers(-10, 2_000_000_000).map(str),
    st.sampled_from(["99999999999", "-1", "", "1.7e9", "nan", "yesterday", "1e308"]),
)
_garbage = st.one_of(
    st.text(max_size=20),
    st.sampled_from(['"', '""', "'", "\t", ",", ";", "|", "::", "\\", "\r", "\x00", "\u2028"]),
    st.integers(100_000, 1_100_000).map(_huge),  # a huge field (up to 1.1 MB)
)
_cell = st.one_of(_good_id, _number, _stamp, _garbage)


def _row(n_cols: int) -> st.SearchStrategy[list[str]]:
    return st.lists(_cell, min_size=max(0, n_cols - 1), max_size=n_cols + 1)


def _good_rows(n: int) -> st.SearchStrategy[list[list[str]]]:
    """Rows that are valid interactions (user, item 0..4, rating 1..5, timestamp)."""
    return st.lists(
        st.tuples(
            st.integers(0, 9).map(str),
            st.integers(0, 4).map(str),
            st.integers(1, 5).map(str),
            st.integers(0, 1_700_000_000).map(str),
        ).map(list),
        min_size=0,
        max_size=n,
    )


@st.composite
def delimited_file(draw: st.DrawFn, sep: str, header: list[str]) -> bytes:
    """Header (maybe damaged), then a shuffle of good rows, random rows and raw garbage."""
    lines: list[bytes] = []
    head = list(header)
    if draw(st.integers(0, 4)) == 0:  # damage the header now and then
        head = draw(st.lists(st.sampled_from([*header, "x", "", "user_id:token"]), max_size=5))
    lines.append(sep.join(head).encode())
    body: list[bytes] = [sep.join(r).encode("utf-8", "surrogatepass") for r in draw(_good_rows(8))]
    if draw(st.integers(0, 3)):  # three files in four carry noise
        body += [
            sep.join(r).encode("utf-8", "surrogatepass")
            for r in draw(st.lists(_row(len(header)), max_size=4))
        ]
        body += draw(st.lists(st.binary(max_size=30), max_size=2))  # bytes, maybe not UTF-8
    order = draw(st.permutations(range(len(body)))) if body else []
    lines += [body[i] for i in order]
    end = draw(st.sampled_from([b"\n", b"\r\n", b""]))
    return b"\n".join(lines) + end


# ---- the property -----------------------------------------------------------------------------
def _check(source: Path, files: dict[str, bytes], lenient: bool) -> None:
    report = LoadReport()
    try:
        ds = load_dataset(source, lenient=lenient, report=report)
    except DataError as e:
        event(f"DataError ({'lenient' if lenient else 'strict'})")
        assert e.path and Path(e.path).name in str(e), str(e)
        named = Path(e.path).name
        assert named in files or Path(e.path) == source, (named, list(files))
        if e.line is not None and named in files:
            # pandas, like editors, also ends a line at a bare "\r".
            n_lines = len(files[named].splitlines()) + 1
            assert 1 <= e.line <= n_lines, (e.line, n_lines, str(e))
        return
    event(f"Dataset ({'lenient' if lenient else 'strict'})")
    _valid(ds)
    if not lenient:
        assert report.total_skipped == 0


def _valid(ds: Dataset) -> None:
    """Everything the rest of the system relies on holds."""
    assert ds.n_items >= 1
    n = ds.n_interactions
    assert all(len(a) == n for a in (ds.item_idx, ds.event, ds.value, ds.timestamp))
    if n:
        assert ds.item_idx.min() >= 0 and ds.item_idx.max() < ds.n_items
        assert ds.user_idx.min() >= 0 and ds.user_idx.max() < ds.n_users
        assert np.isfinite(ds.timestamp).all() and (ds.timestamp >= 0).all()
        finite = ds.value[~np.isnan(ds.value)]
        assert ((finite >= 0) & (finite <= 10)).all()
    assert len(set(ds.item_ids)) == ds.n_items
    for it in ds.items:
        assert it.item_id.strip() and len(it.text) <= MAX_TEXT_CHARS
        assert len(it.title) <= 500


INTER_HEAD = ["user_id", "item_id", "rating", "timestamp"]
ITEM_HEAD = ["item_id", "title", "categories", "text"]


@SETTINGS
@given(
    sep=st.sampled_from([",", "\t"]),
    inter=st.data(),
    with_items=st.booleans(),
    lenient=st.booleans(),
)
def test_delimited_tables_load_or_fail_clearly(tmp_path_factory, sep, inter, with_items, lenient):
    d = tmp_path_factory.mktemp("tab")
    suffix = ".csv" if sep == "," else ".tsv"
    files = {f"inter{suffix}": inter.draw(delimited_file(sep, INTER_HEAD))}
    for name, data in files.items():
        (d / name).write_bytes(data)
    source = d / f"inter{suffix}"
    # load_dataset on a file reads only the interactions table; items come from it.
    _check(source, files, lenient)
    if with_items:
        from mtrec.data.tabular import load_tabular

        items = inter.draw(delimited_file(sep, ITEM_HEAD))
        (d / f"items{suffix}").write_bytes(items)
        files[f"items{suffix}"] = items
        try:
            ds = load_tabular(source, d / f"items{suffix}", lenient=lenient)
        except DataError as e:
            assert Path(e.path).name in files and Path(e.path).name in str(e)
        else:
            _valid(ds)


_json_value = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**20), 10**20),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=10),
        st.integers(100_000, 1_100_000).map(_huge),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)


@st.composite
def jsonl_file(draw: st.DrawFn) -> bytes:
    lines: list[bytes] = []
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.integers(0, 5))
        if kind <= 2:  # a plausible row, maybe with odd values
            row = {
                "user_id": draw(st.one_of(_good_id, _json_value)),
                "item_id": draw(st.one_of(st.integers(0, 4).map(str), _json_value)),
                "rating": draw(st.one_of(st.integers(1, 5), _json_value)),
                "timestamp": draw(st.one_of(st.integers(0, 1_700_000_000), _json_value)),
            }
            if draw(st.booleans()):
                row.pop(draw(st.sampled_from(sorted(row))))
            lines.append(json.dumps(row, allow_nan=True).encode())
        elif kind == 3:
            lines.append(json.dumps(draw(_json_value), allow_nan=True).encode())
        elif kind == 4:
            lines.append(draw(st.binary(max_size=30)))
        else:
            lines.append(b"")
    return b"\n".join(lines)


@SETTINGS
@given(data=jsonl_file(), lenient=st.booleans())
def test_jsonl_loads_or_fails_clearly(tmp_path_factory, data, lenient):
    d = tmp_path_factory.mktemp("jsonl")
    (d / "inter.jsonl").write_bytes(data)
    _check(d / "inter.jsonl", {"inter.jsonl": data}, lenient)


ATOMIC_INTER = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
ATOMIC_ITEM = ["item_id:token", "movie_title:token_seq", "class:token_seq", "text:token_seq"]


@SETTINGS
@given(data=st.data(), lenient=st.booleans())
def test_atomic_files_load_or_fail_clearly(tmp_path_factory, data, lenient):
    d = tmp_path_factory.mktemp("atomic") / "ds"
    d.mkdir()
    files = {
        "ds.inter": data.draw(delimited_file("\t", ATOMIC_INTER)),
        "ds.item": data.draw(delimited_file("\t", ATOMIC_ITEM)),
    }
    for name, content in files.items():
        (d / name).write_bytes(content)
    _check(d, files, lenient)


@SETTINGS
@given(
    rows=_good_rows(30).filter(bool),
    nan_at=st.integers(0, 29),
    what=st.sampled_from(["nan", "inf", "-1", "11", "99999999999", "-5", "", "x"]),
)
def test_one_bad_cell_is_named_with_its_line(tmp_path_factory, rows, nan_at, what):
    """A single bad rating or timestamp in good data fails on exactly that line."""
    d = tmp_path_factory.mktemp("one")
    at = nan_at % len(rows)
    col = 2 if what in ("nan", "inf", "-1", "11", "x") else 3
    rows[at][col] = what
    text = ",".join(INTER_HEAD) + "\n" + "\n".join(",".join(r) for r in rows) + "\n"
    path = d / "inter.csv"
    path.write_text(text)
    try:
        ds = load_dataset(path)
    except DataError as e:
        assert e.line == at + 2, (e.line, at, str(e))
        assert "inter.csv" in str(e)
    else:
        # Only "" is allowed in these columns (no rating -> view event; no timestamp -> 0).
        assert what == "" and math.isfinite(float(ds.timestamp.max()))
