"""The agent: LLM reranking, grounded explanations, the Python API, CLI and services.

``from agent import Recommender`` is the entry point for Python users. Nothing imports
``agent``; it composes ``mtrec`` (the model) and ``retrieval`` (the item index).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.recommender import Recommender

__all__ = ["Recommender"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `mtrec --help` does not pay for torch and chromadb imports.
    if name == "Recommender":
        from agent.recommender import Recommender

        return Recommender
    raise AttributeError(name)
