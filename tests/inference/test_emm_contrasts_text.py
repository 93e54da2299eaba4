"""Custom contrast coefficients that are not numbers: an ArgumentError (a raw "could not
convert string to float" ValueError before); numeric ones give the closed form."""

from __future__ import annotations

import pytest

import mixedmodels as mm


def test_text_coefficients_are_an_argument_error():
    machines = mm.datasets.load("Machines")
    fit = mm.lmer("score ~ Machine + (1 | Worker)", machines)
    emm = mm.emmeans(fit, "Machine")
    with pytest.raises(mm.ArgumentError, match="custom contrasts must be numbers, 3 per"):
        emm.contrast({"a": ["x", 1, 0]})
    table = emm.contrast({"B - A": [-1, 1, 0]})
    # treatment coding: the B - A contrast is the MachineB coefficient
    assert table["estimate"].iloc[0] == pytest.approx(fit.fixef["MachineB"], rel=1e-10)
