"""Catalog: filters over item arrays, shared categories, suspicious catalog text."""

from __future__ import annotations

import numpy as np
import pytest

from agent.schema import Filters


def test_filters_keep_categories_years_and_drop_excluded_ids(catalog) -> None:
    ok = catalog.allowed(Filters(categories=["comedy"], year_min=1993), exclude=["3"])
    kept = {catalog.ds.items[i].item_id for i in np.flatnonzero(ok)}
    assert kept == {"6", "9"}  # Comedy = 0, 3, 6, 9; 0 is before 1993; 3 is excluded


def test_exclude_categories_and_year_max(catalog) -> None:
    ok = catalog.allowed(Filters(exclude_categories=["Drama"], year_max=1995))
    kept = {catalog.ds.items[i].item_id for i in np.flatnonzero(ok)}
    assert kept == {"2", "3", "5"}  # item 0 is Comedy and Drama: dropped


def test_no_filters_allow_everything(catalog) -> None:
    assert catalog.allowed(None).all() and catalog.allowed(Filters()).all()


def test_unknown_category_names_the_known_ones(catalog) -> None:
    with pytest.raises(ValueError, match=r"unknown categories \['Polka'\].*Comedy"):
        catalog.allowed(Filters(categories=["Polka"]))


def test_unknown_excluded_id_is_a_key_error(catalog) -> None:
    with pytest.raises(KeyError):
        catalog.allowed(None, exclude=["no-such-item"])


def test_shared_categories_are_the_users_top_three(catalog) -> None:
    counts = np.array([5, 0, 1])  # Comedy x5, Horror x1, never Drama
    assert catalog.shared_categories(0, counts) == ["Comedy"]  # item 0: Comedy + Drama
    assert catalog.shared_categories(2, counts) == ["Horror"]
    assert catalog.shared_categories(1, counts) == []
    assert catalog.shared_categories(0, None) == []


def test_instruction_like_catalog_text_is_flagged(catalog) -> None:
    assert catalog.suspicious[11] and catalog.suspicious.sum() == 1


def test_item_filter_speaks_the_index_terms(catalog) -> None:
    f = catalog.item_filter(Filters(categories=["Drama"], year_min=1990))
    assert f.categories_any == ("Drama",) and f.year_min == 1990
    assert catalog.item_filter(Filters()) is None
