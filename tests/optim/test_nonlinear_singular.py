"""A singular linear-algebra step inside the Lindstrom-Bates alternation is a
ConvergenceError of the package, not a raw numpy LinAlgError (a logistic curve fitted to
the negated Orange circumferences raised "LinAlgError: the fixed effects' system is not
positive definite")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import ConvergenceError

ORANGE = Path(__file__).parents[1] / "reference" / "nlme" / "data" / "Orange.csv"
ARGS = dict(fixed="Asym + xmid + scal ~ 1", random="Asym ~ 1 | Tree")
MODEL = "circumference ~ SSlogis(age, Asym, xmid, scal)"


@pytest.mark.parametrize("method", ["ML", "Laplace"])
def test_degenerate_nonlinear_fit_is_a_package_error(method):
    orange = pd.read_csv(ORANGE)
    falling = orange.assign(circumference=-orange.circumference)
    with pytest.raises(ConvergenceError, match="could not be fitted") as caught:
        mm.nlme(MODEL, falling, method=method, **ARGS)
    assert isinstance(caught.value.__cause__, np.linalg.LinAlgError)
    assert falling.circumference.equals(-orange.circumference)  # input untouched
