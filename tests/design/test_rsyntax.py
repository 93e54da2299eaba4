"""R's expression language in formulas against R's own model.matrix (names and values,
reference/design/model_matrices.json made by make_names_reference.R)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.design.matrices import MatrixBuilder
from mixedmodels.design.rsyntax import variables_of
from mixedmodels.formula import deparse, parse_expression

REFERENCE = json.loads(
    (Path(__file__).parent.parent / "reference" / "design" / "model_matrices.json").read_text()
)


@pytest.mark.parametrize("ref", REFERENCE, ids=[r["rhs"] for r in REFERENCE])
def test_model_matrix_matches_r(ref):
    """Names exactly; values to 1e-10 relative (the same closed forms in both)."""
    data = mm.datasets.load(ref["data"])
    for name, expr in (ref.get("derive") or {}).items():
        data[name] = data.eval(expr)
    builder = MatrixBuilder(
        ref["rhs"].replace("^", "**"), contrasts=_short(ref.get("contrasts") or {})
    )
    X = builder.build(data)
    assert builder.column_names == ref["columns"]
    np.testing.assert_allclose(X, np.array(ref["matrix"], dtype=float), rtol=1e-10, atol=1e-12)


def _short(contrasts: dict) -> dict:
    return {k: v.removeprefix("contr.") for k, v in contrasts.items()}


def test_new_data_is_encoded_with_the_fitted_levels():
    data = mm.datasets.load("sleepstudy")
    builder = MatrixBuilder("factor(Days)")
    full = builder.build(data)
    rows = data.iloc[[3, 17, 5]]
    np.testing.assert_array_equal(builder.build(rows), full[[3, 17, 5]])


@pytest.mark.parametrize(
    "code, expected",
    [
        ("x / 2", "x/2"),
        ("I(x ** 2)", "I(x^2)"),
        ("I((x - 1) ** 2)", "I((x - 1)^2)"),
        ("x - (1 - y)", "x - (1 - y)"),
        ("(-x) ** 2", "(-x)^2"),
        ("-x ** 2", "-x^2"),
        ("poly(x, 2, raw=TRUE)", "poly(x, 2, raw = TRUE)"),
        ("log(1 + `total.fruits`)", "log(1 + total.fruits)"),
        ("log(`my var`)", "log(`my var`)"),
        ("as.factor(x)", "as.factor(x)"),
        ("x %% 2 + x %in% y", "x%%2 + x %in% y"),
        ("1e-4 * x + 100000", "1e-04 * x + 1e+05"),
        ("x * 2.0", "x * 2"),
        ("x == 1", "x == 1"),
    ],
)
def test_deparse_follows_r(code, expected):
    """R's deparse spacing and parentheses (checked in R 4.2: deparse(quote(x / 2)) is
    "x/2", deparse(quote((x - 1)^2)) keeps its parentheses)."""
    assert deparse(parse_expression(code)) == expected


def test_dotted_names_are_columns_and_numbers_stay_numbers():
    assert variables_of("log(1.5 + total.fruits) + x + .5 * as.factor(z)") == [
        "total.fruits",
        "x",
        "z",
    ]


def test_variables_are_what_r_all_vars_gives():
    assert variables_of("sin(2 * pi * Time) + poly(x, 2, raw = TRUE)") == ["Time", "x"]
    assert variables_of("log(1 + total.fruits) + `odd name`") == ["total.fruits", "odd name"]
    assert variables_of("C(f, contr.sum) + np.log(z)") == ["f", "z"]


def test_offset_in_the_formula_equals_the_offset_argument():
    df = mm.datasets.load("sleepstudy")
    a = mm.lmer("Reaction ~ Days + offset(2 * Days) + (1|Subject)", df)
    b = mm.lmer("Reaction ~ Days + (1|Subject)", df, offset=2 * df.Days.to_numpy())
    np.testing.assert_allclose(a.fixef, b.fixef, rtol=1e-10)
    np.testing.assert_allclose(a.fitted, b.fitted, rtol=1e-10)


def test_offset_in_the_formula_is_applied_to_new_data():
    """lme4's predict(newdata) evaluates formula offsets on the new rows."""
    df = mm.datasets.load("sleepstudy")
    fit = mm.lmer("Reaction ~ Days + offset(2 * Days) + (1|Subject)", df)
    rows = df.iloc[[0, 11, 42]]
    np.testing.assert_allclose(fit.predict(rows), fit.fitted[[0, 11, 42]], rtol=1e-12)
    marginal = fit.predict(rows, include_random=False)
    x = rows.Days.to_numpy()
    expected = fit.fixef.iloc[0] + fit.fixef.iloc[1] * x + 2 * x
    np.testing.assert_allclose(marginal, expected, rtol=1e-12)


def test_unknown_function_names_the_expression():
    df = pd.DataFrame({"y": np.arange(6.0), "x": np.arange(6.0), "g": list("aabbcc")})
    with pytest.raises(mm.FormulaError, match="nosuchfun"):
        mm.lmer("y ~ nosuchfun(x) + (1|g)", df)
