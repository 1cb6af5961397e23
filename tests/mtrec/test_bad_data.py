"""Bad data files not covered in test_loaders: each fails with file and line, or is capped."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtrec.data import DataError, load_dataset
from mtrec.data.frames import MAX_TEXT_CHARS
from mtrec.data.tabular import load_tabular


def _w(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    ("name", "content", "message", "line"),
    [
        ("semi.csv", "user_id;item_id;rating\n1;2;3\n", r"is the field separator ','\?", 1),
        ("commas.tsv", "user_id,item_id,rating\n1,2,3\n", r"is the field separator '\\t'\?", 1),
        ("latin1.csv", b"user_id,item_id\n1,caf\xe9\n", "not valid utf-8", 2),
        ("utf16.csv", "user_id,item_id\n1,2\n".encode("utf-16"), "not valid utf-8", 1),
        ("list.jsonl", '{"user_id": "1", "item_id": "2"}\n[1, 2]\n', "must be a JSON object", 2),
        ("bad.jsonl", '{"user_id": "1", "item_id": "2"}\n{"user_id": \n', "invalid JSON", 2),
        ("broken.parquet", b"PAR1 not really parquet", "not a readable Parquet file", None),
        ("nan.csv", "user_id,item_id,rating\n1,2,NaN\n", "non-finite rating", 2),
        ("inf.csv", "user_id,item_id,rating,timestamp\n1,2,4,inf\n", "unparsable timestamp", 2),
        ("header.csv", "user_id,item_id,rating\n", "no valid items", None),
        ("blank.jsonl", "\n\n  \n", "empty", None),
        ("table.xlsx", "x", "unknown table format", None),
    ],
)
def test_bad_table_files(tmp_path, name, content, message, line):
    path = _w(tmp_path / name, content)
    with pytest.raises(DataError, match=message) as e:
        load_dataset(path)
    assert name in str(e.value) and e.value.line == line


def test_duplicate_user_id_in_user_table(tmp_path):
    inter = _w(tmp_path / "inter.csv", "user_id,item_id,rating\n1,a,4\n")
    users = _w(tmp_path / "users.csv", "user_id,age\n1,20\n1,30\n")
    with pytest.raises(DataError, match="duplicate user id") as e:
        load_tabular(inter, users=users)
    assert "users.csv:3" in str(e.value)


def test_one_megabyte_description_in_a_table_is_capped(tmp_path):
    inter = _w(tmp_path / "inter.csv", "user_id,item_id,rating\n1,a,4\n")
    items = _w(tmp_path / "items.csv", "item_id,title,text\na,A," + "word " * 210_000 + "\n")
    ds = load_tabular(inter, items)
    assert len(ds.item("a").text) == MAX_TEXT_CHARS and len(ds.item("a").document()) < 5000
