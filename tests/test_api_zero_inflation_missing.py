"""A missing value in a column only the zero-inflation formula reads: glmmTMB drops the row
(its ``na.action`` covers every formula), as mm.glmer drops rows with missing values in
any other column the model reads, with a RowsDroppedWarning (one count in the warning).
It was a DataError ("the zero-inflation formula '~z' reads a missing or non-finite value
on a row the model uses")."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import RowsDroppedWarning


def _data() -> pd.DataFrame:
    rng = np.random.default_rng(27)
    g = np.repeat(np.arange(20), 8)
    x, z = rng.normal(size=g.size), rng.uniform(size=g.size)
    structural = rng.uniform(size=g.size) < 1 / (1 + np.exp(1 - 1.5 * z))
    y = np.where(structural, 0, rng.poisson(np.exp(1 + 0.4 * x + rng.normal(0, 0.4, 20)[g])))
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": g.astype(str)})


def test_missing_zero_inflation_covariate_drops_its_rows():
    data = _data()
    holed = data.assign(z=data.z.where(~data.index.isin([3, 50, 77])))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = mm.glmer("y ~ x + (1 | g)", holed, "poisson", zi="~ z")
    dropped = [w for w in caught if issubclass(w.category, RowsDroppedWarning)]
    assert len(dropped) == 1 and "3 row" in str(dropped[0].message)
    expected = mm.glmer("y ~ x + (1 | g)", data.drop(index=[3, 50, 77]), "poisson", zi="~ z")
    assert fit.nobs == expected.nobs == len(data) - 3
    assert fit.loglik == pytest.approx(expected.loglik, rel=1e-10)
    np.testing.assert_allclose(fit.fixef, expected.fixef, rtol=1e-8)
