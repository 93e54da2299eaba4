"""Evaluation and symbolic differentiation of model expressions.

References: numpy evaluating the same arithmetic, closed-form derivatives, and central
finite differences (step 1e-6, error ~1e-9 relative for these smooth functions: tolerance
1e-6).
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.errors import FormulaError
from mixedmodels.formula.derivative import (
    UNARY_FUNCTIONS,
    check_arithmetic,
    differentiate,
    evaluate,
    text_of,
)
from mixedmodels.formula.expr import parse_expression

ENV = {"a": np.array([0.7, 1.3, 2.1]), "b": np.array([0.4, 0.9, 1.6]), "x": np.array(
    [0.5, 1.5, 2.5])}


def _numeric(text: str, name: str, h: float = 1e-6) -> np.ndarray:
    tree = parse_expression(text)
    up, down = dict(ENV), dict(ENV)
    up[name] = ENV[name] + h
    down[name] = ENV[name] - h
    return (evaluate(tree, up) - evaluate(tree, down)) / (2 * h)


EXPRESSIONS = [
    "a/(1+exp((b-x)/a))",
    "a*x^2 - b/x + 3",
    "a^b + x^a",
    "-a*(b - x)*(x + 2)",
    "Dose*exp(a+b-x)*(exp(-exp(a)*x)-exp(-exp(b)*x))/(exp(b)-exp(a))",
    "log(a*x) + sqrt(b + x) - log10(x) + log2(a) + log1p(b) + expm1(a)",
    "sin(a*x) + cos(b) + tan(x/4) + atan(a) + sinh(b) + cosh(x/3) + tanh(a*b)",
    "abs(a - 1) * x",
    "a*exp(-b*a^x)",
    "(a - b)^3 / (x + 1)^2",
]


@pytest.mark.parametrize("text", EXPRESSIONS)
@pytest.mark.parametrize("name", ["a", "b", "x"])
def test_derivative_matches_finite_differences(text, name):
    env = dict(ENV, Dose=np.array([3.0, 4.0, 5.0]))
    ENV["Dose"] = env["Dose"]
    d = differentiate(parse_expression(text), name)
    got = np.broadcast_to(evaluate(d, env), (3,))
    np.testing.assert_allclose(got, _numeric(text, name), rtol=1e-6, atol=1e-8)


def test_closed_forms():
    a, x = ENV["a"], ENV["x"]
    logistic = parse_expression("A/(1+exp((m-x)/s))")
    env = {"A": 2.0, "m": 1.0, "s": 0.5, "x": x}
    e = np.exp((1.0 - x) / 0.5)
    np.testing.assert_allclose(evaluate(differentiate(logistic, "A"), env), 1 / (1 + e))
    np.testing.assert_allclose(evaluate(differentiate(logistic, "m"), env),
                               -2.0 * e / 0.5 / (1 + e) ** 2)
    power = parse_expression("a^3")
    np.testing.assert_allclose(evaluate(differentiate(power, "a"), {"a": a}), 3 * a**2)


def test_folding_keeps_trees_small():
    assert text_of(differentiate(parse_expression("3*a + b"), "a")) == "3"
    assert text_of(differentiate(parse_expression("a*x"), "a")) == "x"
    assert text_of(differentiate(parse_expression("b*x"), "a")) == "0"
    assert text_of(differentiate(parse_expression("exp(a)"), "a")) == "exp(a)"


def test_evaluate_matches_numpy():
    tree = parse_expression("a^2/(b+1) - -x + pi")
    want = ENV["a"] ** 2 / (ENV["b"] + 1) + ENV["x"] + np.pi
    np.testing.assert_allclose(evaluate(tree, ENV), want, rtol=1e-15)


def test_every_function_can_be_differentiated():
    for func in UNARY_FUNCTIONS:
        differentiate(parse_expression(f"{func}(a*x)"), "a")


@pytest.mark.parametrize("text,message", [
    ("a + system(b)", "unknown function system"),
    ("a < b", "operator '<'"),
    ("a %in% b", "operator '%in%'"),
    ("log(a, 2)", "exactly one argument"),
    ('a + "b"', "string"),
])
def test_outside_the_language(text, message):
    with pytest.raises(FormulaError, match=message):
        check_arithmetic(parse_expression(text), text)


def test_unknown_name_is_located():
    with pytest.raises(FormulaError, match="unknown name 'zz'"):
        evaluate(parse_expression("a + zz"), ENV, "a + zz")
