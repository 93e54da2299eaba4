"""lmlist (lme4's lmList): rows are dropped for missing values in the formula's variables
only, and counted.  Per-group coefficients are checked against the closed-form simple
regression ``slope = cov(x, y) / var(x)``, ``intercept = mean(y) - slope mean(x)``
(rtol 1e-10: the same numbers by another route)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.errors import ColumnNotFoundError, DataError, RowsDroppedWarning


def closed_form(df):
    out = {}
    for name, g in df.groupby("Subject", observed=True):
        x, y = g.Days.to_numpy(float), g.Reaction.to_numpy(float)
        slope = np.cov(x, y)[0, 1] / np.var(x, ddof=1)
        out[str(name)] = (y.mean() - slope * x.mean(), slope)
    return out


def test_nan_in_a_column_whose_name_is_inside_the_formula_text_is_ignored():
    """Before, 'Da' (a substring of 'Days') had all rows dropped for its NaN."""
    df = mm.datasets.load("sleepstudy").assign(Da=np.nan, React=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RowsDroppedWarning)
        table = mm.lmlist("Reaction ~ Days | Subject", df)
    assert len(table) == 18
    for level, (a, b) in closed_form(df).items():
        np.testing.assert_allclose(table.loc[level].to_numpy(), [a, b], rtol=1e-10)


def test_missing_values_in_used_columns_are_dropped_and_counted():
    df = mm.datasets.load("sleepstudy")
    df.loc[[0, 11], "Days"] = np.nan
    df.loc[25, "Reaction"] = np.nan
    with pytest.warns(RowsDroppedWarning, match="3 row"):
        table = mm.lmlist("Reaction ~ Days | Subject", df)
    for level, (a, b) in closed_form(df.dropna()).items():
        np.testing.assert_allclose(table.loc[level].to_numpy(), [a, b], rtol=1e-10)


def test_bad_input_is_named():
    df = mm.datasets.load("sleepstudy")
    with pytest.raises(ColumnNotFoundError, match="'Dayz'"):
        mm.lmlist("Reaction ~ Dayz | Subject", df)
    with pytest.raises(ColumnNotFoundError, match="'Subj'"):
        mm.lmlist("Reaction ~ Days | Subj", df)
    with pytest.raises(DataError, match="DataFrame"):
        mm.lmlist("Reaction ~ Days | Subject", df.to_dict())
    df = df.assign(Days=df.Days.astype(float))
    df.loc[3, "Days"] = np.inf
    with pytest.raises(DataError, match=r"'Days'.*1 row"):
        mm.lmlist("Reaction ~ Days | Subject", df)
