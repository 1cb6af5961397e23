"""Loaders: real ml-100k, every supported format, and malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mtrec.data import DataError, EventType, LoadReport, load_dataset
from mtrec.data.download import get_dataset, is_cached
from mtrec.data.tabular import ColumnMap


def test_ml100k_atomic_real_files(ml100k):
    assert ml100k.n_items == 1682
    assert ml100k.n_users == 943
    assert ml100k.n_interactions == 100_000
    toy = ml100k.item("1")
    assert toy.title == "Toy Story" and toy.year == 1995
    assert toy.categories == ("Animation", "Children's", "Comedy")
    assert ml100k.users[ml100k.user_index("1")].attributes["occupation"] == "technician"
    assert set(ml100k.value) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_get_dataset_is_cached_second_time(ml100k_dir):
    assert is_cached("ml-100k")
    assert get_dataset("ml-100k") == ml100k_dir
    assert {p.name for p in ml100k_dir.iterdir()} >= {"ml-100k.inter", "ml-100k.item"}


def test_unknown_dataset_name():
    with pytest.raises(KeyError, match="unknown dataset"):
        get_dataset("ml-999")


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def test_ml100k_raw_layout(tmp_path):
    d = tmp_path / "ml-100k"
    _write(d / "u.data", "1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t1\t4\t881250951\n")
    flags = "|".join(["0"] * 19)
    _write(
        d / "u.item",
        f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags[:-1]}1\n"
        f"2|GoldenEye (1995)|01-Jan-1995||http://x|0|1|{'|'.join(['0'] * 17)}\n",
        encoding="latin-1",
    )
    ds = load_dataset(d)
    assert ds.n_items == 2 and ds.n_interactions == 3
    assert ds.item("1").title == "Toy Story" and ds.item("1").year == 1995
    assert ds.item("1").categories == ("Western",)
    assert ds.item("2").categories == ("Action",)


def test_ml1m_layout(tmp_path):
    d = tmp_path / "ml-1m"
    _write(d / "ratings.dat", "1::10::5::978300760\n2::10::3::978302109\n", "latin-1")
    _write(d / "movies.dat", "10::GoldenEye (1995)::Action|Adventure|Thriller\n", "latin-1")
    _write(d / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n", "latin-1")
    ds = load_dataset(d)
    assert ds.item("10").categories == ("Action", "Adventure", "Thriller")
    assert ds.users[ds.user_index("2")].attributes["age"] == "56"


def test_ml_latest_tags_join_item_text(tmp_path):
    d = tmp_path / "ml-latest-small"
    _write(
        d / "movies.csv",
        "movieId,title,genres\n1,Toy Story (1995),Animation|Comedy\n"
        '2,"Jumanji, The (1995)",Adventure\n',
    )
    _write(
        d / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,3.5,964981247\n"
    )
    _write(d / "tags.csv", "userId,movieId,tag,timestamp\n2,1,pixar,1\n3,1,Pixar,2\n3,1,fun,3\n")
    ds = load_dataset(d)
    assert ds.item("1").text == "Tags: pixar, fun"
    assert ds.item("2").title == "Jumanji, The"
    assert "pixar" in ds.item("1").document()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_generic_tables_with_column_map(tmp_path, suffix):
    inter = pd.DataFrame(
        {
            "who": ["a", "a", "b"],
            "what": ["x", "y", "x"],
            "stars": [5.0, 2.0, 4.0],
            "when": [1, 2, 3],
            "kind": ["rating", "rating", "rating"],
        }
    )
    items = pd.DataFrame({"what": ["x", "y"], "name": ["Ex", "Why"], "tags": ["A|B", "B"]})
    paths = []
    for name, df in (("inter", inter), ("items", items)):
        p = tmp_path / f"{name}{suffix}"
        if suffix == ".csv":
            df.to_csv(p, index=False)
        elif suffix == ".jsonl":
            p.write_text("\n".join(json.dumps(r) for r in df.to_dict("records")))
        else:
            df.to_parquet(p)
        paths.append(p)
    cm = ColumnMap(
        user="who",
        item="what",
        rating="stars",
        timestamp="when",
        event="kind",
        title="name",
        categories="tags",
    )
    from mtrec.data.tabular import load_tabular

    ds = load_tabular(paths[0], paths[1], columns=cm)
    assert ds.n_items == 2 and ds.n_users == 2 and ds.n_interactions == 3
    assert ds.item("x").categories == ("A", "B") and ds.item("x").title == "Ex"
    assert EventType.from_code(int(ds.event[0])) is EventType.RATING


# ---- malformed files: strict mode names file and line; lenient mode skips and counts ----
ATOMIC_HEAD = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
ITEM_HEAD = "item_id:token\tmovie_title:token_seq\tclass:token_seq\n"


def _atomic(
    tmp_path: Path,
    inter_rows: str,
    item_rows: str = "1\tA\tDrama\n2\tB\tComedy\n",
    inter_head: str = ATOMIC_HEAD,
) -> Path:
    d = tmp_path / "bad"
    _write(d / "bad.inter", inter_head + inter_rows)
    _write(d / "bad.item", ITEM_HEAD + item_rows)
    return d


@pytest.mark.parametrize(
    ("rows", "message", "line"),
    [
        ("1\t1\tfive\t10\n", "unparsable or non-finite rating", 2),
        ("1\t1\t4\t10\n1\t1\tnan\t10\n", "non-finite rating", 3),
        ("1\t1\t11\t10\n", "rating out of range", 2),
        ("1\t1\t4\t-5\n", "negative timestamp", 2),
        ("1\t1\t4\t99999999999\n", "timestamp in the future", 2),
        ("1\t1\t4\t10\n1\t7\t4\t10\n", "interaction on unknown item", 3),
    ],
)
def test_bad_interaction_rows(tmp_path, rows, message, line):
    d = _atomic(tmp_path, rows)
    with pytest.raises(DataError, match=message) as e:
        load_dataset(d)
    assert e.value.line == line
    assert "bad.inter" in str(e.value)


def test_lenient_mode_skips_and_reports(tmp_path):
    d = _atomic(tmp_path, "1\t1\t4\t10\n1\t9\t4\t10\n2\t2\tx\t10\n2\t2\t3\t11\n")
    report = LoadReport()
    ds = load_dataset(d, lenient=True, report=report)
    assert ds.n_interactions == 2
    assert report.total_skipped == 2
    assert report.skipped["interaction on unknown item"] == 1
    assert any("bad.inter:3" in line for line in report.lines())


def test_duplicate_item_id(tmp_path):
    d = _atomic(tmp_path, "1\t1\t4\t10\n", item_rows="1\tA\tDrama\n1\tB\tComedy\n")
    with pytest.raises(DataError, match="duplicate item id") as e:
        load_dataset(d)
    assert e.value.line == 3


def test_wrong_delimiter_is_named(tmp_path):
    d = _atomic(tmp_path, "1,1,4,10\n", inter_head="user_id:token,item_id:token,rating:float\n")
    with pytest.raises(DataError, match="tab separated"):
        load_dataset(d)


def test_missing_column(tmp_path):
    d = _atomic(tmp_path, "1\t4\n", inter_head="user_id:token\trating:float\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['item_id'\]"):
        load_dataset(d)


def test_empty_file(tmp_path):
    d = tmp_path / "bad"
    _write(d / "bad.inter", "")
    with pytest.raises(DataError, match="empty"):
        load_dataset(d)


def test_bad_encoding_names_line(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "bad.inter").write_bytes(ATOMIC_HEAD.encode() + b"1\t1\t4\t10\n2\t\xff\t4\t10\n")
    with pytest.raises(DataError, match="not valid utf-8") as e:
        load_dataset(d)
    assert e.value.line == 3


def test_huge_description_is_capped(tmp_path):
    from mtrec.data.frames import MAX_TEXT_CHARS

    d = tmp_path / "big"
    _write(d / "big.inter", ATOMIC_HEAD + "1\t1\t4\t10\n")
    _write(
        d / "big.item", "item_id:token\ttitle:token_seq\ttext:token_seq\n1\tA\t" + "x" * 1_000_000
    )
    ds = load_dataset(d)
    assert len(ds.item("1").text) == MAX_TEXT_CHARS


def test_missing_path_is_clear(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        load_dataset(tmp_path / "nope")


def test_with_interactions_appends_rows_and_new_users(synthetic):
    from mtrec.data import Interaction

    extra = [
        Interaction("new-user", "3", EventType.LIKE, 5.0, 1.7e9),
        Interaction("0", "4", EventType.SEEN, None, 1.7e9),
    ]
    ds, rows = synthetic.with_interactions(extra)
    assert ds.n_interactions == synthetic.n_interactions + 2
    assert list(rows) == [synthetic.n_interactions, synthetic.n_interactions + 1]
    assert ds.has_user("new-user") and ds.n_users == synthetic.n_users + 1
    assert ds.item_idx[rows[0]] == ds.item_index("3") and ds.value[rows[0]] == 5.0
    with pytest.raises(KeyError, match="unknown item"):
        synthetic.with_interactions([Interaction("0", "no-such", EventType.LIKE)])


def test_a_mapped_column_missing_from_the_file_lists_the_files_columns(tmp_path) -> None:
    from mtrec.data.errors import DataError
    from mtrec.data.tabular import ColumnMap, load_tabular

    path = tmp_path / "orders.csv"
    path.write_text("customer,sku,stars\nc1,s1,5\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_tabular(path, columns=ColumnMap(user="customer", item="sku", rating="score"))
    message = str(info.value)
    assert "orders.csv" in message and "'score'" in message
    assert "customer" in message and "stars" in message


def test_a_manifest_reads_its_own_separator_encoding_and_profile(tmp_path) -> None:
    from mtrec.data import load_dataset

    (tmp_path / "r.csv").write_bytes("u;isbn;note\nu1;b1;9\nu2;b1;3\nu1;b2;7\n".encode("latin-1"))
    (tmp_path / "b.csv").write_bytes(
        "isbn;name;writer;price\nb1;Caf\xe9 Stories;Ana;12.5\nb2;Night;Ana;7\n".encode("latin-1")
    )
    (tmp_path / "dataset.toml").write_text(
        'name = "mini"\ninteractions = "r.csv"\nitems = "b.csv"\nsep = ";"\n'
        'encoding = "latin-1"\n\n[columns]\nuser = "u"\nitem = "isbn"\nrating = "note"\n'
        'title = "name"\ntimestamp = ""\n\n[profile]\nitem_noun = "book"\n',
        encoding="utf-8",
    )
    ds = load_dataset(tmp_path)
    assert ds.name == "mini" and ds.n_items == 2 and ds.item("b1").title == "Café Stories"
    assert ds.profile.item_noun == "book" and ds.profile.items == "books"
    assert (ds.profile.rating_min, ds.profile.rating_max) == (3.0, 9.0)
    kinds = {a.name: a.kind for a in ds.profile.attributes}
    assert kinds == {"writer": "exact", "price": "range"}
    assert not ds.has_timestamps
