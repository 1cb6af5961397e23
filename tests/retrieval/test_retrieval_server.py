"""ItemIndex against a real `chroma run` server over HTTP."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrieval import (
    Embedder,
    IndexConnectionError,
    IndexItem,
    IndexModelMismatchError,
    ItemFilter,
    ItemIndex,
)
from retrieval.errors import UnknownItemError

from .catalog import OCTOPUS_ID, OCTOPUS_QUERY


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _chroma_executable() -> str | None:
    # Prefer the CLI installed alongside this interpreter (venvs), then PATH.
    beside = Path(sys.executable).parent / "chroma"
    return str(beside) if beside.exists() else shutil.which("chroma")


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = _chroma_executable()
    if exe is None:
        pytest.skip("the `chroma` CLI is not installed")
    data = tmp_path_factory.mktemp("chroma-server")
    port = _free_port()
    log = (data / "server.log").open("wb")
    proc = subprocess.Popen(
        [exe, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"chroma server exited early: {(data / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("chroma server did not answer its heartbeat within 30 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_index_and_query_over_http(
    chroma_url: str, embedder: Embedder, catalog: list[IndexItem]
) -> None:
    index = ItemIndex(url=chroma_url, embedder=embedder, collection="server-items")
    report = index.sync(catalog, show_progress=False)
    assert report.added == len(catalog) == index.count()

    assert index.search_text(OCTOPUS_QUERY, k=1)[0].item_id == OCTOPUS_ID
    hits = index.similar("m0", k=5, exclude_ids={"m1"})
    assert len(hits) == 5 and not {"m0", "m1"} & {h.item_id for h in hits}
    assert "Sci-Fi" in hits[0].categories
    filtered = index.search_text(
        "a movie", k=100, filters=ItemFilter(categories_any=("Western",), year_max=1990)
    )
    assert filtered and all(
        "Western" in h.categories and h.year is not None and h.year <= 1990 for h in filtered
    )
    assert index.get_embeddings(["m2", "m1"]).shape == (2, 384)
    with pytest.raises(UnknownItemError):
        index.similar("nope")

    # A second client sees the same data and the sync is a no-op.
    again = ItemIndex(url=chroma_url, embedder=embedder, collection="server-items")
    assert again.sync(catalog, show_progress=False).unchanged == len(catalog)


def test_model_mismatch_over_http(chroma_url: str, embedder: Embedder) -> None:
    ItemIndex(url=chroma_url, embedder=embedder, collection="server-mismatch")

    class Other(Embedder):
        def __init__(self) -> None:
            self.__dict__.update(embedder.__dict__)
            self._model_id = "other-model"

    with pytest.raises(IndexModelMismatchError, match="other-model"):
        ItemIndex(url=chroma_url, embedder=Other(), collection="server-mismatch")
    # rebuild=True drops it (and is harmless for a collection that does not exist yet).
    rebuilt = ItemIndex(
        url=chroma_url, embedder=Other(), collection="server-mismatch", rebuild=True
    )
    assert rebuilt.model_id == "other-model" and rebuilt.count() == 0
    fresh = ItemIndex(url=chroma_url, embedder=embedder, collection="server-fresh", rebuild=True)
    assert fresh.count() == 0


def test_unreachable_server(embedder: Embedder) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(IndexConnectionError, match="chroma run"):
        ItemIndex(url=url, embedder=embedder)
