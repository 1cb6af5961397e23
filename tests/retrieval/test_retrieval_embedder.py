"""Embedder: shapes, normalisation, stable model ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import retrieval
from retrieval import DEFAULT_MODEL_ID, Embedder
from retrieval.embedder import default_model_path


def test_encode_shape_dtype_and_unit_norm(embedder: Embedder) -> None:
    texts = ["A cowboy rides at dawn.", "Astronauts explore Mars.", "", "x" * 2000]
    vectors = embedder.encode(texts)
    assert vectors.shape == (4, embedder.dimension) == (4, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_encode_empty_and_one(embedder: Embedder) -> None:
    empty = embedder.encode([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    one = embedder.encode_one("A haunted house")
    assert one.shape == (384,)
    np.testing.assert_allclose(one, embedder.encode(["A haunted house"])[0], atol=1e-5)


def test_encode_rejects_bare_string(embedder: Embedder) -> None:
    with pytest.raises(TypeError, match="encode_one"):
        embedder.encode("not a list")


def test_embeddings_are_semantic(embedder: Embedder) -> None:
    dog, puppy, stocks = embedder.encode(["a dog", "a puppy", "the stock market crashed"])
    assert float(dog @ puppy) > float(dog @ stocks) + 0.2


def test_default_model_id(embedder: Embedder) -> None:
    assert embedder.model_id == DEFAULT_MODEL_ID == "all-MiniLM-L6-v2"
    assert embedder.device in ("cpu", "cuda") or embedder.device.startswith("cuda")


def test_model_id_is_stable_for_paths_and_names(tmp_path: Path) -> None:
    # _stable_id decides what gets written into index metadata; checked without loading models.
    assert Embedder._stable_id(str(default_model_path())) == DEFAULT_MODEL_ID
    assert Embedder._stable_id("sentence-transformers/all-MiniLM-L6-v2") == DEFAULT_MODEL_ID
    custom = tmp_path / "my-finetuned-minilm"
    custom.mkdir()
    assert Embedder._stable_id(str(custom)) == "my-finetuned-minilm"
    assert Embedder._stable_id("sentence-transformers/all-mpnet-base-v2") == (
        "sentence-transformers/all-mpnet-base-v2"
    )


def test_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        Embedder(batch_size=0)


def test_package_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, retrieval; "
        "heavy = [m for m in ('torch', 'chromadb', 'sentence_transformers') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    root = Path(retrieval.__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""
