"""``predict(newdata)`` of a fit whose offset came through the ``offset=`` argument.

An offset written in the formula (``offset(lexpo)``) is read from newdata, so predictions
on the fitted rows equal the fitted values.  One given as ``offset="lexpo"`` (a column) or
as an array was silently left out: the predictions on the fitted rows differed from the
fitted values by the offset, with no warning.  lme4 evaluates the ``offset`` argument in
newdata.  Now a column name is read from newdata (ColumnNotFoundError when it is absent, a
missing value makes that row NaN); an array cannot describe new rows, so predict(newdata) is
an ArgumentError asking for the offset as a column name or in the formula."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm


def _data():
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(15), 8)
    x = rng.normal(size=g.size)
    lexpo = np.log(rng.uniform(0.5, 3.0, g.size))
    y = rng.poisson(np.exp(0.2 + 0.4 * x + lexpo + rng.normal(0, 0.4, 15)[g]))
    return pd.DataFrame({"y": y, "x": x, "lexpo": lexpo, "g": g.astype(str)})


def test_formula_offset_is_applied_to_new_rows():
    data = _data()
    fit = mm.glmer("y ~ x + offset(lexpo) + (1 | g)", data, "poisson")
    np.testing.assert_allclose(fit.predict(data, type="response"), fit.fitted, rtol=1e-10)


@pytest.mark.parametrize("family", ["poisson", "gaussian"])
def test_offset_argument_by_column_is_read_from_newdata(family):
    data = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mm.MixedModelsWarning)
        if family == "gaussian":
            data = data.assign(y=np.log1p(data.y))
            fit = mm.lmer("y ~ x + (1 | g)", data, offset="lexpo")
        else:
            fit = mm.glmer("y ~ x + (1 | g)", data, family, offset="lexpo")
    kind = {} if family == "gaussian" else {"type": "response"}
    # the fitted rows as new data: the same numbers (identity)
    np.testing.assert_allclose(fit.predict(data, **kind), fit.fitted, rtol=1e-10)


def test_offset_argument_as_array_is_not_silently_dropped():
    data = _data()
    fit = mm.glmer("y ~ x + (1 | g)", data, "poisson", offset=data.lexpo.to_numpy())
    # values describe the fitted rows only: refused, naming the argument
    with pytest.raises(mm.ArgumentError, match="offset="):
        fit.predict(data, type="response")
    # the fitted rows themselves keep their offset (identity with the fitted values)
    np.testing.assert_allclose(fit.predict(type="response"), fit.fitted, rtol=1e-10)


def test_offset_column_absent_from_newdata_is_named():
    data = _data()
    fit = mm.glmer("y ~ x + (1 | g)", data, "poisson", offset="lexpo")
    with pytest.raises(mm.ColumnNotFoundError, match="lexpo"):
        fit.predict(data.drop(columns="lexpo"))
    # a missing offset value makes that row's prediction NaN, the others unchanged
    holed = data.assign(lexpo=data.lexpo.where(data.index != 5))
    got = fit.predict(holed)
    assert np.isnan(got[5])
    keep = np.arange(len(data)) != 5
    np.testing.assert_allclose(got[keep], fit.predict(data)[keep], rtol=1e-12)
