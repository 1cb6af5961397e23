"""Error types raised by the :mod:`retrieval` package.

Every error derives from :class:`RetrievalError` so callers (the agent, the CLI) can catch
retrieval failures with one ``except`` clause and show the message to the user as-is.
"""

from __future__ import annotations


class RetrievalError(Exception):
    """Base class for all errors raised by :mod:`retrieval`."""


class IndexModelMismatchError(RetrievalError):
    """The collection was built with a different embedding model than the one configured.

    Vectors from two different models live in unrelated spaces, so mixing them would silently
    return nonsense neighbours; opening such a collection is therefore refused.
    """

    def __init__(
        self,
        collection: str,
        location: str,
        index_model: str | None,
        index_dimension: int | None,
        embedder_model: str,
        embedder_dimension: int,
    ) -> None:
        self.collection = collection
        self.location = location
        self.index_model = index_model
        self.index_dimension = index_dimension
        self.embedder_model = embedder_model
        self.embedder_dimension = embedder_dimension
        if index_model is None:
            built_with = "an unknown embedding model (no ItemIndex model metadata)"
        else:
            built_with = f"embedding model '{index_model}' (dimension {index_dimension})"
        super().__init__(
            f"Chroma collection '{collection}' at {location} was built with {built_with}, "
            f"but the configured embedder is '{embedder_model}' (dimension "
            f"{embedder_dimension}). Its vectors are not comparable. Either configure the "
            f"original model again, index into a new collection name, or rebuild this "
            f"collection (ItemIndex(..., rebuild=True) / `--rebuild`), which re-embeds every item."
        )


class UnknownItemError(RetrievalError, KeyError):
    """One or more item ids are not present in the index.

    Subclasses :class:`KeyError` so ``except KeyError`` keeps working for dict-like callers.
    """

    def __init__(self, missing: list[str], collection: str) -> None:
        self.missing = missing
        self.collection = collection
        shown = ", ".join(repr(m) for m in missing[:5])
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        noun = "item id" if len(missing) == 1 else "item ids"
        super().__init__(
            f"Unknown {noun} {shown}{more} in collection '{collection}'; "
            f"was the catalog synced (ItemIndex.sync) after these items were added?"
        )

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message and wrap it in quotes.
        return str(self.args[0])


class IndexConnectionError(RetrievalError):
    """The Chroma server given by ``url`` could not be reached."""
