"""R's ``.`` ("every other column") is refused with a located FormulaError that says so (it
was looked up as a column named '.', "column '.' is not in the data"); a column really
named '.' is reached with backticks."""

from __future__ import annotations

import pytest

import mixedmodels as mm
from mixedmodels.formula.expr import tokenize


def test_dot_is_a_located_formula_error():
    sleep = mm.datasets.load("sleepstudy")
    with pytest.raises(mm.FormulaError, match="every other column") as caught:
        mm.lmer("Reaction ~ . + (1 | Subject)", sleep)
    assert caught.value.position == len("Reaction ~ ")


def test_backticked_dot_is_a_column_and_dotted_names_are_names():
    sleep = mm.datasets.load("sleepstudy")
    by_dot = mm.lmer("Reaction ~ `.` + (1 | Subject)", sleep.rename(columns={"Days": "."}))
    plain = mm.lmer("Reaction ~ Days + (1 | Subject)", sleep)
    assert by_dot.loglik == pytest.approx(plain.loglik, rel=1e-12)
    assert [t.text for t in tokenize("y ~ .x + x. + a.b + .5")][2:9] == [
        ".x", "+", "x.", "+", "a.b", "+", ".5",
    ]
