"""Parsed formulas, expressions and expanded terms are kept by text: the kept result is
the one a fresh parse gives (the uncached functions are the reference), and an error is
raised on every call, never remembered as a result."""

from __future__ import annotations

import pytest

from mixedmodels.errors import FormulaError
from mixedmodels.formula.expr import _parse_text, parse_expression
from mixedmodels.formula.parser import _parse_formula_text, parse_formula
from mixedmodels.formula.terms import _terms_of_text, expand_terms, terms_of_text

FORMULAS = [
    "Reaction ~ Days + (Days | Subject)",
    "y ~ x * f + I(x^2) + (1 | g/h) + (0 + x || g)",
    "log(y) ~ poly(x, 2) + offset(log(t)) + diag(x | g)",
]
RHS = ["Days * f + I(Days^2)", "(a + b + c)^2 - a:b", "0 + f:x + log(x)", "b %in% a"]


@pytest.mark.parametrize("text", FORMULAS)
def test_parse_formula_kept_equals_fresh(text):
    first = parse_formula(text)
    assert parse_formula(text) is first  # kept
    assert first == _parse_formula_text.__wrapped__(text)  # same as a fresh parse


@pytest.mark.parametrize("text", RHS)
def test_expression_and_terms_kept_equal_fresh(text):
    node = parse_expression(text)
    assert parse_expression(text) is node
    assert node == _parse_text.__wrapped__(text)
    structure = terms_of_text(text)
    assert terms_of_text(text) is structure
    assert structure == expand_terms(_parse_text.__wrapped__(text), text)
    assert structure == _terms_of_text.__wrapped__(text)


@pytest.mark.parametrize("bad", ["y ~ x + (1 | g", "y ~ x$a + (1 | g)", "y ~ os.system(x)"])
def test_errors_are_raised_every_time(bad):
    for _ in range(2):
        with pytest.raises(FormulaError):
            parse_formula(bad)


def test_non_strings_are_formula_errors_not_type_errors():
    for bad in (["y ~ x"], None, 3):
        with pytest.raises(FormulaError):
            parse_formula(bad)
        with pytest.raises(FormulaError):
            parse_expression(bad)
        with pytest.raises(FormulaError):
            terms_of_text(bad)
