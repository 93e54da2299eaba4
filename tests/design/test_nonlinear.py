"""nlme's three formulas read as data: model, fixed and random parts."""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.design import nonlinear
from mixedmodels.design.nonlinear import (
    build_nlme_design,
    parse_fixed,
    parse_model,
    parse_random,
)
from mixedmodels.errors import ArgumentError, FormulaError
from tests.reference.nlme.cases import load


@pytest.mark.parametrize("text", [
    "pdDiag(Asym + xmid ~ 1) | Tree",
    "pdDiag(Asym + xmid ~ 1 | Tree)",
])
def test_diagonal_forms(text):
    spec = parse_random(text)
    assert spec.parameters == ("Asym", "xmid") and spec.group == "Tree" and spec.diagonal


def test_general_and_override():
    spec = parse_random("lKa + lCl ~ 1 | Subject")
    assert not spec.diagonal
    assert parse_random("lKa + lCl ~ 1 | Subject", covariance="diag").diagonal
    with pytest.raises(ArgumentError, match="covariance"):
        parse_random("a ~ 1 | g", covariance="blocky")


@pytest.mark.parametrize("text,message", [
    ("Asym ~ 1", "grouping factor"),
    ("Asym ~ age | Tree", "covariates are not supported"),
    ("pdFoo(Asym ~ 1) | Tree", "unknown covariance structure pdFoo"),
    ("Asym + Asym ~ 1 | Tree", "named twice"),
])
def test_random_errors(text, message):
    with pytest.raises(FormulaError, match=message):
        parse_random(text)


def test_fixed_formulas():
    assert parse_fixed("Asym + xmid ~ 1") == [("Asym", "1"), ("xmid", "1")]
    assert parse_fixed(["Asym ~ Variety", "xmid ~ 1"]) == [("Asym", "Variety"), ("xmid", "1")]
    with pytest.raises(FormulaError, match="two fixed-effects formulas"):
        parse_fixed(["Asym ~ 1", "Asym ~ x"])


def test_self_start_arguments_are_checked():
    with pytest.raises(FormulaError, match="takes 4 arguments"):
        parse_model("y ~ SSlogis(x, Asym, xmid)", ["Asym", "xmid"])
    with pytest.raises(FormulaError, match="must be a parameter name"):
        parse_model("y ~ SSlogis(x, 2*Asym, xmid, scal)", ["Asym", "xmid", "scal"])
    response, model = parse_model("y ~ SSlogis(log(x), A, m, s)", ["A", "m", "s"])
    assert response == "y" and model.parameters == ("A", "m", "s")


def test_covariate_design_names_and_values():
    soy = load("Soybean")
    design = build_nlme_design("weight ~ SSlogis(Time, Asym, xmid, scal)", soy,
                               "Asym + xmid + scal ~ Variety", "Asym ~ 1 | Plot")
    assert design.fixed_names == ["Asym.(Intercept)", "Asym.VarietyP", "xmid.(Intercept)",
                                  "xmid.VarietyP", "scal.(Intercept)", "scal.VarietyP"]
    np.testing.assert_array_equal(design.fixed_matrices[0][:, 1],
                                  (soy.Variety == "P").to_numpy(float))
    assert len(design.levels) == 48


def test_a_non_finite_covariate_is_named_by_its_column():
    """An infinite ``age`` in Orange: the error named SSlogis's argument ('input'), not the
    column; now the column, the count and the first row."""
    import mixedmodels as mm
    from mixedmodels.errors import DataError

    data = load("Orange").astype({"age": float})
    data.loc[[3, 7], "age"] = np.inf
    with pytest.raises(DataError, match=r"input \(from column 'age'\) is not finite in 2 "
                       r"row\(s\) \(first: row 3"):
        mm.nlme(data=data, model="circumference ~ SSlogis(age, Asym, xmid, scal)",
                fixed="Asym + xmid + scal ~ 1", random="Asym ~ 1 | Tree")


@pytest.mark.parametrize("model, parameters, random, affine", [
    ("y ~ SSlogis(age, Asym, xmid, scal)", "Asym + xmid + scal", ("Asym",), True),
    ("y ~ SSlogis(age, Asym, xmid, scal)", "Asym + xmid + scal", ("Asym", "xmid"), False),
    ("y ~ SSasympOff(age, Asym, lrc, c0)", "Asym + lrc + c0", ("Asym",), True),
    ("y ~ a * age + b * exp(-age) + c", "a + b + c", ("a", "b", "c"), True),
    ("y ~ a * b * age + c", "a + b + c", ("a",), True),
    ("y ~ a * b * age + c", "a + b + c", ("a", "b"), False),  # bilinear: not jointly
    ("y ~ a^2 * age + c", "a + c", ("a",), False),
    ("y ~ abs(a) * age + c", "a + c", ("a",), False),
])
def test_affine_in_the_random_parameters(model, parameters, random, affine):
    # affine exactly when the second derivatives in the random parameters vanish: checked
    # numerically too (the model's values along a line through random parameters are
    # linear: f(x + 2h) - 2 f(x + h) + f(x) = 0)
    _, function = parse_model(model, parameters.split(" + "))
    assert function.affine_in(random) is affine
    age = np.linspace(0.5, 4.0, 7)
    x = np.full(len(function.parameters), -0.75)  # the line crosses 0 (abs's kink)
    h = np.zeros_like(x)
    h[[function.parameters.index(p) for p in random]] = 1.0
    values = [function.on({"input": age, "age": age})(x + k * h)[0] for k in range(3)]
    second = values[2] - 2 * values[1] + values[0]
    # rounding of values of order 10: 1e-12 absolute when affine
    assert bool(np.max(np.abs(second)) < 1e-12) is affine


def _design_arrays(design) -> list:
    return [design.y, *design.covariates.values(), *design.fixed_matrices, design.groups,
            design.rows]


def test_parsed_formulas_are_kept_but_the_data_are_read_anew():
    """The formulas are parsed once per text; each call reads the data again: a copy of
    CO2 with changed values and dtypes (uptake scaled, conc as float, Plant and Type as
    pyarrow strings with other labels) gives the design a cold cache gives, and that
    design's values are the changed data's (y, the covariate, the Type column)."""
    co2 = load("CO2")
    args = ("uptake ~ SSasympOff(conc, Asym, lrc, c0)", )
    fixed = ["Asym ~ Type", "lrc + c0 ~ 1"]
    first = build_nlme_design(args[0], co2, fixed, "Asym ~ 1 | Plant")
    changed = co2.copy()
    changed["uptake"] = co2["uptake"] * 2.0
    changed["conc"] = co2["conc"].astype(float) + 0.5
    changed["Type"] = co2["Type"].map({"Quebec": "Q", "Mississippi": "M"}).astype(
        "string[pyarrow]")
    changed["Plant"] = ("p" + co2["Plant"].astype(str)).astype("string[pyarrow]")
    warm = build_nlme_design(args[0], changed, fixed, "Asym ~ 1 | Plant")
    nonlinear._cached_formulas.cache_clear()
    nonlinear._parse_model.cache_clear()
    cold = build_nlme_design(args[0], changed, fixed, "Asym ~ 1 | Plant")
    for a, b in zip(_design_arrays(warm), _design_arrays(cold), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert warm.fixed_names == cold.fixed_names == ["Asym.(Intercept)", "Asym.TypeQ", "lrc",
                                                    "c0"]
    assert warm.levels == cold.levels
    np.testing.assert_array_equal(warm.y, 2.0 * first.y)
    np.testing.assert_array_equal(warm.covariates["input"], first.covariates["input"] + 0.5)
    np.testing.assert_array_equal(warm.fixed_matrices[0][:, 1],
                                  (co2["Type"] == "Quebec").to_numpy(float))
    np.testing.assert_array_equal(warm.groups, first.groups)  # the same grouping, relabelled
    assert warm.levels == ["p" + level for level in first.levels]
    assert changed["uptake"].tolist() == (co2["uptake"] * 2.0).tolist()  # (not modified)
    assert str(changed["conc"].dtype) == "float64"


def test_formula_errors_are_raised_at_every_call():
    orange = load("Orange")
    for _ in range(2):
        with pytest.raises(FormulaError, match="not a model parameter"):
            build_nlme_design("circumference ~ SSlogis(age, Asym, xmid, scal)", orange,
                              "Asym + xmid + scal ~ 1", "R0 ~ 1 | Tree")
        with pytest.raises(FormulaError, match="must be a string"):
            build_nlme_design("circumference ~ SSlogis(age, Asym, xmid, scal)", orange,
                              ["Asym + xmid + scal ~ 1", 3], "Asym ~ 1 | Tree")
