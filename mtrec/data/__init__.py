"""Data layer: the domain model, loaders for public and generic formats, and generators."""

from __future__ import annotations

from mtrec.data.errors import DataError, LoadReport, RowSink
from mtrec.data.loading import load_dataset
from mtrec.data.schema import Dataset, EventType, Interaction, Item, User
from mtrec.data.synthetic import generate_synthetic

__all__ = [
    "DataError",
    "Dataset",
    "EventType",
    "Interaction",
    "Item",
    "LoadReport",
    "RowSink",
    "User",
    "generate_synthetic",
    "load_dataset",
]
