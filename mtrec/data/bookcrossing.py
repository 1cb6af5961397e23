"""Book-Crossing (Ziegler et al., WWW 2005), converted to a folder ``mtrec index`` reads.

The raw files (``BX-Book-Ratings.csv``, ``BX-Books.csv``, ``BX-Users.csv``) are ``;``-separated,
quoted, latin-1 text with HTML entities in titles and a few malformed book rows. Ratings are
explicit (1–10) or implicit (0: the user interacted with the book without rating it). There
are no timestamps, so only the random protocol applies.

The conversion keeps the k-core of the explicit ratings (every kept user and book has at least
``k`` explicit ratings among the kept ones), then adds the implicit events between kept users
and books as ``view`` events: explicit ratings feed the rating and like heads, both kinds feed
engagement. It writes UTF-8 ``interactions.csv``, ``items.csv``, ``users.csv`` and a
``dataset.toml`` manifest with the book profile and the data's terms.
"""

from __future__ import annotations

import csv
import html
import io
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mtrec.data.manifest import DatasetManifest, manifest_toml
from mtrec.data.tabular import ColumnMap

CITATION = (
    "Book-Crossing: Cai-Nicolas Ziegler, Sean M. McNee, Joseph A. Konstan, Georg Lausen. "
    "Improving Recommendation Lists Through Topic Diversification. WWW 2005. "
    "Collected by Cai-Nicolas Ziegler in 2004 from the Book-Crossing community "
    "(http://www2.informatik.uni-freiburg.de/~cziegler/BX/); free for research use, "
    "acknowledge the source when you publish."
)
RAW_FILES = ("BX-Book-Ratings.csv", "BX-Books.csv", "BX-Users.csv")
#: Years outside this range in BX-Books.csv are data-entry errors (0, 2037, ...).
YEARS = (1800, 2005)


@dataclass(frozen=True)
class ConversionStats:
    """What the conversion kept and dropped."""

    books_read: int
    malformed_book_rows: int
    ratings_read: int
    ratings_on_unknown_books: int
    users: int
    books: int
    explicit: int
    implicit: int


def _rows(text: str) -> Iterator[list[str]]:
    reader = csv.reader(io.StringIO(text), delimiter=";", quotechar='"')
    next(reader, None)  # header
    yield from reader


def kcore(pairs: list[tuple[str, str, int]], k: int) -> list[tuple[str, str, int]]:
    """The rows whose user and item both keep at least ``k`` rows, repeated until stable."""
    rows = pairs
    while True:
        users = Counter(u for u, _, _ in rows)
        items = Counter(i for _, i, _ in rows)
        kept = [r for r in rows if users[r[0]] >= k and items[r[1]] >= k]
        if len(kept) == len(rows):
            return kept
        rows = kept


def convert_book_crossing(
    read: Callable[[str], bytes],
    out: Path,
    k: int = 5,
    implicit: bool = True,
    say: Callable[[str], None] = lambda _: None,
) -> ConversionStats:
    """Convert the raw files to ``out`` (created; its files are replaced).

    Args:
        read: Returns the bytes of a raw file by name (e.g. from the wheel's zip).
        out: The folder to write.
        k: The k-core of explicit ratings.
        implicit: Add the implicit events (rating 0) between kept users and books.
        say: Progress messages.
    """
    say("reading BX-Books.csv")
    books: dict[str, list[str]] = {}
    malformed = 0
    for row in _rows(read("BX-Books.csv").decode("latin-1")):
        if len(row) != 8:  # stray quotes and backslashes split a few rows wrongly
            malformed += 1
            continue
        books[row[0].strip()] = row
    say("reading BX-Book-Ratings.csv")
    explicit, zeros, unknown, total = [], [], 0, 0
    for user, isbn, value in _rows(read("BX-Book-Ratings.csv").decode("latin-1")):
        total += 1
        isbn = isbn.strip()
        if isbn not in books:
            unknown += 1
            continue
        if value.strip() == "0":
            zeros.append((user.strip(), isbn))
        else:
            explicit.append((user.strip(), isbn, int(value)))
    say(f"keeping the {k}-core of {len(explicit):,} explicit ratings")
    core = kcore(explicit, k)
    users = {u for u, _, _ in core}
    items = {i for _, i, _ in core}
    extra = [(u, i) for u, i in zeros if u in users and i in items] if implicit else []
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(
        out / "interactions.csv",
        ["user_id", "item_id", "rating", "event"],
        [(u, i, v, "rating") for u, i, v in core] + [(u, i, "", "view") for u, i in extra],
    )
    _write_csv(
        out / "items.csv",
        ["item_id", "title", "author", "year", "publisher"],
        [_book(books[i]) for i in sorted(items)],
    )
    _write_users(read, out / "users.csv", users)
    manifest = DatasetManifest(
        name="book-crossing",
        format="table",
        interactions="interactions.csv",
        items="items.csv",
        users="users.csv",
        columns=ColumnMap(timestamp=None, text=None, categories=None, event="event"),
        profile={
            "item_noun": "book",
            "attributes": [
                {"name": "author", "kind": "exact"},
                {"name": "publisher", "kind": "exact"},
                {"name": "year", "kind": "range", "label": "publication year"},
            ],
        },
        citation=CITATION,
    )
    (out / "dataset.toml").write_text(manifest_toml(manifest), encoding="utf-8")
    return ConversionStats(
        books_read=len(books),
        malformed_book_rows=malformed,
        ratings_read=total,
        ratings_on_unknown_books=unknown,
        users=len(users),
        books=len(items),
        explicit=len(core),
        implicit=len(extra),
    )


def _book(row: list[str]) -> tuple[str, str, str, str, str]:
    isbn, title, author, year, publisher = (x.strip() for x in row[:5])
    y = int(year) if year.isdigit() and YEARS[0] <= int(year) <= YEARS[1] else ""
    return isbn, html.unescape(title), html.unescape(author), str(y), html.unescape(publisher)


def _write_users(read: Callable[[str], bytes], path: Path, users: set[str]) -> None:
    rows = []
    for row in _rows(read("BX-Users.csv").decode("latin-1")):
        if len(row) == 3 and row[0].strip() in users:
            age = row[2].strip()
            rows.append((row[0].strip(), row[1].strip(), age if age.isdigit() else ""))
    _write_csv(path, ["user_id", "location", "age"], rows)


def _write_csv(path: Path, header: list[str], rows: list[tuple[object, ...]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    tmp.replace(path)
