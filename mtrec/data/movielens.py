"""MovieLens raw formats: ml-100k (``u.data``), ml-1m (``*.dat``), ml-latest(-small) CSV."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from mtrec.data.errors import RowSink
from mtrec.data.frames import build_dataset, parse_year, read_delimited
from mtrec.data.schema import Dataset

_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})(?:[-–]\d{0,4})?\)\s*$")
_ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


#: MovieLens titles are movies and its categories are genres: what its profile is told.
MOVIELENS_COLUMNS = {"title_column": "movie_title", "category_column": "genres"}


def split_title_year(title: str) -> tuple[str, int | None]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", 1995)``."""
    m = _TITLE_YEAR.match(title.strip())
    return (m.group(1), int(m.group(2))) if m else (title.strip(), None)


def _rating_frame(df: pd.DataFrame) -> pd.DataFrame:
    df = df.rename(columns={"rating": "value"})
    df["event"] = "rating"
    return df


def load_ml100k_raw(
    directory: str | Path, lenient: bool = False, sink: RowSink | None = None
) -> Dataset:
    """Load ml-100k from the GroupLens layout: ``u.data``, ``u.item``, ``u.user``."""
    d = Path(directory)
    sink = sink or RowSink(lenient)
    inter = read_delimited(
        d / "u.data", "\t", names=["user_id", "item_id", "rating", "timestamp"], required=()
    )
    genre_cols = [f"g{i}" for i in range(len(_ML100K_GENRES))]
    items = read_delimited(
        d / "u.item",
        "|",
        names=["item_id", "title", "release_date", "video_date", "url", *genre_cols],
        encoding="latin-1",
    )
    parsed = [split_title_year(t) for t in items["title"]]
    items["title"] = [t for t, _ in parsed]
    items["year"] = [
        y or parse_year(r) for (_, y), r in zip(parsed, items["release_date"], strict=True)
    ]
    items["categories"] = [
        tuple(g for g, flag in zip(_ML100K_GENRES, flags, strict=True) if flag == "1")
        for flags in items[genre_cols].itertuples(index=False)
    ]
    items = items.drop(columns=[*genre_cols, "video_date", "url"])
    users = None
    if (d / "u.user").is_file():
        users = read_delimited(
            d / "u.user", "|", names=["user_id", "age", "gender", "occupation", "zip_code"]
        )
    return build_dataset("ml-100k", items, _rating_frame(inter), users, sink, **MOVIELENS_COLUMNS)


def load_ml1m(directory: str | Path, lenient: bool = False, sink: RowSink | None = None) -> Dataset:
    """Load ml-1m (or ml-10m) ``ratings.dat``, ``movies.dat``, ``users.dat`` (``::`` separated)."""
    d = Path(directory)
    sink = sink or RowSink(lenient)
    inter = read_delimited(
        d / "ratings.dat",
        "::",
        names=["user_id", "item_id", "rating", "timestamp"],
        encoding="latin-1",
    )
    items = read_delimited(
        d / "movies.dat", "::", names=["item_id", "title", "genres"], encoding="latin-1"
    )
    items = _movielens_titles(items)
    users = None
    if (d / "users.dat").is_file():
        users = read_delimited(
            d / "users.dat",
            "::",
            names=["user_id", "gender", "age", "occupation", "zip_code"],
            encoding="latin-1",
        )
    return build_dataset(
        d.name or "ml-1m", items, _rating_frame(inter), users, sink, **MOVIELENS_COLUMNS
    )


def _movielens_titles(items: pd.DataFrame) -> pd.DataFrame:
    parsed = [split_title_year(t) for t in items["title"]]
    items["title"] = [t for t, _ in parsed]
    items["year"] = [y for _, y in parsed]
    items["categories"] = [
        tuple(g for g in s.split("|") if g and g != "(no genres listed)") for s in items["genres"]
    ]
    return items.drop(columns=["genres"])


def load_ml_latest(
    directory: str | Path, lenient: bool = False, sink: RowSink | None = None
) -> Dataset:
    """Load ml-latest / ml-latest-small CSV; ``tags.csv`` tags join each item's text."""
    d = Path(directory)
    sink = sink or RowSink(lenient)
    inter = read_delimited(d / "ratings.csv", ",", required=("userId", "movieId", "rating"))
    inter = inter.rename(columns={"userId": "user_id", "movieId": "item_id"})
    if "timestamp" not in inter.columns:
        inter["timestamp"] = ""
    items = read_delimited(d / "movies.csv", ",", required=("movieId", "title", "genres"))
    items = _movielens_titles(items.rename(columns={"movieId": "item_id"}))
    items["text"] = ""
    tags_path = d / "tags.csv"
    if tags_path.is_file():
        tags = read_delimited(tags_path, ",", required=("movieId", "tag"))
        joined: dict[str, list[str]] = {}
        for mid, tag in zip(tags["movieId"], tags["tag"], strict=True):
            t = tag.strip()
            if t and t.lower() not in (x.lower() for x in joined.setdefault(mid, [])):
                joined[mid].append(t)
        items["text"] = [
            "Tags: " + ", ".join(joined[i]) if i in joined else "" for i in items["item_id"]
        ]
    return build_dataset(
        d.name or "ml-latest", items, _rating_frame(inter), None, sink, **MOVIELENS_COLUMNS
    )


def detect_movielens(directory: Path) -> str | None:
    """The MovieLens layout found in a directory, or None."""
    if (directory / "u.data").is_file():
        return "ml-100k-raw"
    if (directory / "ratings.dat").is_file():
        return "ml-1m"
    if (directory / "ratings.csv").is_file() and (directory / "movies.csv").is_file():
        return "ml-latest"
    return None
