"""``at=`` with text for a numeric covariate is an ArgumentError naming the covariate (a raw
``ValueError: could not convert string to float`` before); numbers still give the closed
form of the reference grid."""

from __future__ import annotations

import pytest

import mixedmodels as mm


def test_text_for_a_numeric_covariate_is_an_argument_error():
    fit = mm.lmer("Reaction ~ Days + (1 | Subject)", mm.datasets.load("sleepstudy"))
    with pytest.raises(mm.ArgumentError, match=r"at\['Days'\].*numeric covariate.*'a'"):
        mm.emmeans(fit, "Days", at={"Days": ["a"]})
    with pytest.raises(mm.ArgumentError, match=r"at\['Days'\]"):
        mm.emmeans(fit, "Days", at={"Days": [object()]})
    # the grid at Days = 3 is the fixed-effects line there (one covariate, no factors)
    table = mm.emmeans(fit, "Days", at={"Days": [3]})
    expected = fit.fixef["(Intercept)"] + 3 * fit.fixef["Days"]
    assert table["emmean"].iloc[0] == pytest.approx(expected, rel=1e-12)
