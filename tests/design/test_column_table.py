"""The fixed cost of a design (issue 8): each used column read from pandas once, one
factorize per grouping factor, one pass of the finiteness checks.

References: the pieces that :func:`build_design` assembles through one shared
:class:`ColumnTable` against the same pieces built one at a time from the plain DataFrame of
the rows used (each builder reading the frame itself: the representation the table stands
in for), compared exactly; the one-pass check against the two detailed checks it replaces
(same rows, same counts, the same error message)."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.design import build_design
from mixedmodels.design.evaluate import ColumnTable, column_value
from mixedmodels.design.grouping import group_codes
from mixedmodels.design.matrices import MatrixBuilder, response_vector
from mixedmodels.design.validate import (
    MAX_MAGNITUDE,
    MIN_MAGNITUDE,
    check_finite_columns,
    checked_nan_rows,
    nan_cells,
    plain_columns,
)
from mixedmodels.errors import DataError


class CountingFrame(pd.DataFrame):
    """A DataFrame that counts the column reads made through ``frame[name]``."""

    _metadata = ["reads"]

    @property
    def _constructor(self):
        return CountingFrame

    def __getitem__(self, key):
        if isinstance(key, str):
            self.reads[key] += 1
        return super().__getitem__(key)


def _mixed_frame(n: int = 60, seed: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n // 6), 6)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n) + g * 0.3,
            "x": rng.normal(size=n),
            "k": rng.integers(0, 5, size=n),  # int64: numbers, or factor(k)
            "f": pd.Categorical(rng.choice(list("abc"), size=n), categories=list("abcz")),
            "s": rng.choice(["lo", "mid", "hi"], size=n),  # text: a factor
            "b": rng.random(n) > 0.5,  # logical
            "g": pd.Categorical(g),
            "h": rng.choice(["p", "q", "r", "t"], size=n),
        }
    )


FORMULAS = [
    "y ~ x + (1 | g)",
    "y ~ x * f + (x | g)",
    "y ~ f:s + b + (1 | g) + (1 | h)",
    "y ~ I(x^2) + log(k + 1) + (1 | g:h)",
    "y ~ poly(x, 2) + factor(k) + (0 + x | g)",
    "y ~ 0 + s + x:b + (1 | g) + (x || h)",
    "y ~ scale(x) * b + C(f, contr.sum) + (1 | g)",
    "log(y + 10) ~ k + (k | g)",
]


def _reference_pieces(formula: str, rows: pd.DataFrame):
    """y, X (all columns, before the rank check), each term's Z and grouping codes, built
    from the DataFrame one builder at a time."""
    parsed = mm.design.model.parse_formula(formula)
    y = response_vector(rows, parsed.response)
    X = MatrixBuilder(parsed.fixed).build(rows)
    random = []
    for spec in parsed.random:
        z = MatrixBuilder(spec.expr).build(rows)
        codes, levels = group_codes(rows, spec.group_factors)
        random.append(((spec.group_name, spec.expr), z, codes, list(levels)))
    return y, X, random


def _by_term(design):
    """The design's terms by grouping factor and left-hand side (``(x || h)`` is two terms
    of one grouping factor); lme4's order of the terms does not matter here."""
    return {(t.group_name, t.spec.expr): t for t in design.terms}


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("variant", ["plain", "nullable", "missing"])
def test_shared_table_builds_what_the_frame_builds(formula, variant):
    data = _mixed_frame()
    if variant == "nullable":  # converted to numpy columns once (plain_columns)
        data = data.astype({"x": "Float64", "k": "Int64", "b": "boolean", "s": "string"})
    if variant == "missing":  # rows dropped: the table of the rows used is built anew
        data = data.copy()
        data.loc[[3, 17], "x"] = np.nan
        data.loc[25, "s"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        design = build_design(formula, data)
    needed = mm.design.model.required_variables(design.formula)
    rows = plain_columns(data.loc[design.row_index, needed], needed)
    y, X, random = _reference_pieces(formula, rows)
    np.testing.assert_array_equal(design.y, y)
    np.testing.assert_array_equal(design.X, X[:, design.fixed_keep])
    terms = _by_term(design)
    assert len(terms) == len(random)
    for key, z, codes, levels in random:
        term = terms[key]
        np.testing.assert_array_equal(term.z, z)
        np.testing.assert_array_equal(term.codes, codes)
        assert list(term.level_index) == levels


def test_each_used_column_is_read_once():
    frame = CountingFrame(mm.datasets.load("sleepstudy"))
    frame.reads = Counter()
    design = build_design("Reaction ~ Days + (Days | Subject)", frame)
    assert dict(frame.reads) == {"Reaction": 1, "Days": 1, "Subject": 1}
    # the numbers are those of the plain frame
    plain = build_design("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    np.testing.assert_array_equal(design.X, plain.X)
    np.testing.assert_array_equal(design.terms[0].z, plain.terms[0].z)
    np.testing.assert_array_equal(design.terms[0].codes, plain.terms[0].codes)


def test_table_values_are_the_columns_values_and_cached():
    data = _mixed_frame()
    table = ColumnTable(data)
    for name in data.columns:
        got = table.value(name)
        assert table.value(name) is got  # converted once
        expected = column_value(data[name], name)
        assert type(got) is type(expected)
        for attr in ("values", "codes", "levels"):
            if hasattr(expected, attr):
                np.testing.assert_array_equal(getattr(got, attr), getattr(expected, attr))
    assert len(table) == len(data)
    with pytest.raises(DataError, match="more than one column named 'x'"):
        ColumnTable(pd.concat([data[["x"]], data[["x"]]], axis=1))["x"]


def _two_step(matrix, names, index):
    counts: dict[str, int] = {}
    try:
        check_finite_columns(matrix, names, "fixed-effect column", index)
    except DataError as exc:
        return ("error", str(exc)), counts
    return ("rows", nan_cells(matrix, names, counts).tolist()), counts


def _one_pass(matrix, names, index):
    counts: dict[str, int] = {}
    try:
        rows = checked_nan_rows(matrix, names, "fixed-effect column", index, counts)
    except DataError as exc:
        return ("error", str(exc)), counts
    return ("rows", rows.tolist()), counts


@pytest.mark.parametrize(
    "fill",
    [
        None,
        (2, 1, np.nan),
        (0, 0, np.inf),
        (4, 2, -np.inf),
        (1, 1, 2 * MAX_MAGNITUDE),
        (3, 0, np.nan),
        ("column", 2, 0.0),
        ("column", 1, MIN_MAGNITUDE / 10),
        ("column", 0, MIN_MAGNITUDE),
    ],
)
def test_one_pass_check_is_the_two_checks(fill):
    rng = np.random.default_rng(4)
    matrix = rng.normal(size=(6, 3))
    if fill is not None:
        row, col, value = fill
        if row == "column":
            matrix[:, col] = value
        else:
            matrix[row, col] = value
    names = ["(Intercept)", "x", "f2"]
    index = pd.RangeIndex(6)
    assert _one_pass(matrix, names, index) == _two_step(matrix, names, index)
    vector = matrix[:, 1].copy()
    assert _one_pass(vector, ["x"], index) == _two_step(vector, ["x"], index)


def test_one_pass_check_of_an_empty_matrix():
    empty = np.empty((5, 0))
    assert _one_pass(empty, [], None) == _two_step(empty, [], None)
