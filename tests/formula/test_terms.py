"""Term expansion against R's terms() (reference/formula/terms.json, made by
make_terms_reference.R): labels in R's order and the intercept, exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixedmodels.errors import FormulaError
from mixedmodels.formula.expr import parse_expression
from mixedmodels.formula.terms import expand_terms

REFERENCE = json.loads(
    (Path(__file__).parent.parent / "reference" / "formula" / "terms.json").read_text()
)


@pytest.mark.parametrize("ref", REFERENCE, ids=[r["rhs"] for r in REFERENCE])
def test_terms_match_r(ref):
    structure = expand_terms(parse_expression(ref["rhs"]))
    assert [structure.label(t) for t in structure.terms] == ref["labels"]
    assert structure.intercept is ref["intercept"]


@pytest.mark.parametrize(
    "rhs, words, position",
    [
        ("x + 2", "the number 2", 4),
        ("x + .", "'.'", 4),
        ("(a + b)^x", "whole number", 7),
        ("a:1", "both sides", 1),
    ],
)
def test_terms_that_r_refuses_are_located_errors(rhs, words, position):
    with pytest.raises(FormulaError) as info:
        expand_terms(parse_expression(rhs), rhs)
    assert words in str(info.value)
    assert info.value.position == position
