"""Level labels: numbers labelled as R's as.character writes them, whatever their storage,
so fit-time and new-data values match by value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mixedmodels.design.grouping import (
    codes_for_levels,
    factor_labels,
    group_codes,
    group_codes_only,
    label_table,
    level_labels,
    value_labels,
)


@pytest.mark.parametrize(
    "column, expected",
    [
        (pd.Series([308, 309, 308]), ["308", "309", "308"]),
        (pd.Series([308.0, 309.0, np.nan]), ["308", "309", None]),
        (pd.Series([0.5, 1e-5, 2.25]), ["0.5", "1e-05", "2.25"]),
        (pd.Series(pd.array([308, None, 309], dtype="Int64")), ["308", None, "309"]),
        (pd.Series(pd.Categorical([2.0, 1.0, 2.0])), ["2", "1", "2"]),
        (pd.Series([True, False, True]), ["TRUE", "FALSE", "TRUE"]),
        (pd.Series(["a", None, "b"]), ["a", None, "b"]),
        (pd.Series([1, "x", 2.0], dtype=object), ["1", "x", "2"]),
    ],
)
def test_value_labels(column, expected):
    assert list(value_labels(column)) == expected


def test_level_labels_of_float_levels_drop_the_trailing_zero():
    _, levels = group_codes(pd.DataFrame({"g": [3.0, 1.0, 3.0]}), ("g",))
    assert level_labels(levels) == ["1", "3"]


def test_codes_match_by_value_across_dtypes():
    levels = ["308", "309", "310"]
    for values in ([309, 308, 311], [309.0, 308.0, 311.0], ["309", "308", "311"]):
        codes = codes_for_levels(pd.DataFrame({"g": values}), ("g",), levels)
        assert codes.tolist() == [1, 0, -1]


def test_interaction_codes_match_by_value():
    fit_data = pd.DataFrame({"a": [1, 1, 2], "b": ["x", "y", "x"]})
    codes, levels = group_codes(fit_data, ("a", "b"))
    labels = level_labels(levels)
    assert labels == ["1:x", "1:y", "2:x"]
    new = pd.DataFrame({"a": [2.0, 1.0, 2.0, np.nan], "b": ["x", "y", "y", "x"]})
    assert codes_for_levels(new, ("a", "b"), labels).tolist() == [2, 1, -1, -1]


def test_label_table_maps_labels_to_the_values_seen():
    table = label_table(pd.Series(pd.Categorical(["b", "a", None], categories=["c", "a", "b"])))
    assert table == {"a": "a", "b": "b"}  # the unused category c is not a level
    assert label_table(pd.Series([2.0, 1.0, 2.0])) == {"2": 2.0, "1": 1.0}


@pytest.mark.parametrize("factors", [("a",), ("a", "b"), ("b", "a", "c")])
def test_codes_without_labels_are_group_codes(factors):
    rng = np.random.default_rng(4)
    data = pd.DataFrame(
        {
            "a": rng.integers(0, 4, 50),
            "b": pd.Categorical(rng.choice(["x", "y", "z"], 50), categories=["z", "y", "x", "w"]),
            "c": rng.choice([0.5, 1.5], 50),
        }
    )
    codes, _ = group_codes(data, factors)
    assert np.array_equal(group_codes_only(data, factors), codes)


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "Int64"])
def test_integer_group_codes_are_pandas_sorted_factorization(dtype):
    # integer columns take numpy's unique (a fast path): codes and levels (values and
    # dtype) must be pandas' sorted factorization, the path every other column takes
    values = np.random.default_rng(3).integers(0, 40, 500)
    frame = pd.DataFrame({"g": pd.array(values, dtype=dtype)})
    codes, levels = group_codes(frame, ("g",))
    expected_codes, uniques = pd.factorize(frame["g"], sort=True)
    np.testing.assert_array_equal(codes, expected_codes)
    assert codes.dtype == np.int64
    assert levels.equals(pd.Index(uniques)) and levels.dtype == pd.Index(uniques).dtype


@pytest.mark.parametrize(
    "column",
    [
        pd.Series([3, 1, 2, 1, 3, 10]),
        pd.Series(np.array([7, 2, 7, 0], dtype=np.uint8)),
        pd.Series(["b", "a", "é", "Z", "ä", "a"]),
        pd.Series(["b", "a", "é", "Z", "a"], dtype="string[python]"),
        pd.Series(["b", "a", "é", "Z", "a"], dtype="string[pyarrow]"),
        pd.Series(["x", None, "y", "x"], dtype="string[pyarrow]"),
        pd.Series([1.5, 0.5, 1.5]),
        pd.Series(pd.Categorical(["q", "p", "q"], categories=["q", "p", "r"])),
        pd.Series([True, False, True]),
    ],
)
def test_factor_labels_is_group_codes_and_level_labels(column):
    """factor_labels (one sort of the values for integer and text columns) is
    group_codes' codes and level_labels' labels, for every kind of column."""
    codes, labels = factor_labels(column)
    expected_codes, levels = group_codes(pd.DataFrame({"g": column}), ("g",))
    assert codes.dtype == expected_codes.dtype
    np.testing.assert_array_equal(codes, expected_codes)
    assert labels == level_labels(levels)
