"""Shared fixtures. Expensive things (datasets, models) are session-scoped."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Nothing in the suite may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The real ml-100k atomic files, fetched the way users fetch them (`mtrec data get`)."""
    from mtrec.data.download import get_dataset

    return get_dataset("ml-100k", quiet=True)


@pytest.fixture(scope="session")
def ml100k(ml100k_dir: Path):
    from mtrec.data import load_dataset

    return load_dataset(ml100k_dir, format="atomic")


@pytest.fixture(scope="session")
def synthetic():
    """A small synthetic dataset with planted category preferences."""
    from mtrec.data import generate_synthetic

    return generate_synthetic(
        n_items=300, n_users=240, n_interactions=14_000, n_categories=6, seed=7
    )


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
