"""Design building: encodings that must equal hand-made columns, and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.design import build_design
from mixedmodels.errors import (
    ColumnNotFoundError,
    DataError,
    FormulaError,
    MixedModelsError,
    RankDeficiencyWarning,
)


@pytest.fixture()
def sleep():
    return mm.datasets.load("sleepstudy")


def test_power_log_scale_and_factor_columns(sleep):
    df = sleep.assign(g2=np.where(sleep.Days > 4, "hi", "lo"))
    d = build_design("Reaction ~ I(Days^2) + log(Days + 1) + scale(Days) + g2 + (1|Subject)", df)
    assert d.fixed_names == ["(Intercept)", "I(Days^2)", "log(Days + 1)", "scale(Days)", "g2lo"]
    days = df.Days.to_numpy(float)
    np.testing.assert_allclose(d.X[:, 1], days**2)
    np.testing.assert_allclose(d.X[:, 2], np.log(days + 1))
    np.testing.assert_allclose(d.X[:, 3], (days - days.mean()) / days.std(ddof=1))
    np.testing.assert_allclose(d.X[:, 4], (df.g2 == "lo").astype(float))


def test_interaction_and_no_intercept(sleep):
    df = sleep.assign(f=pd.Categorical(np.where(sleep.Days % 2 == 0, "a", "b")))
    d = build_design("Reaction ~ 0 + Days * f + (1|Subject)", df)
    assert d.fixed_names == ["Days", "fa", "fb", "Days:fb"]
    np.testing.assert_allclose(d.X[:, 3], df.Days * (df.f == "b"))
    assert build_design("Reaction ~ Days - 1 + (1|Subject)", sleep).fixed_names == ["Days"]


def test_numeric_grouping_column_is_a_factor(sleep):
    df = sleep.assign(Subject=sleep.Subject.astype(int))
    d = build_design("Reaction ~ Days + (1|Subject)", df)
    assert len(d.terms[0].levels) == 18


def test_missing_values_dropped_and_counted_data_untouched(sleep):
    df = sleep.copy()
    df.loc[[3, 40], "Reaction"] = np.nan
    df.loc[7, "Days"] = np.nan
    before = df.copy()
    with pytest.warns(mm.errors.RowsDroppedWarning, match="3 row"):
        fit = mm.lmer("Reaction ~ Days + (1|Subject)", df)
    assert fit.n_dropped == 3 and fit.nobs == 177
    assert "dropped for missing values: 3" in fit.summary()
    pd.testing.assert_frame_equal(df, before)


def test_rank_deficient_columns_dropped_with_warning(sleep):
    df = sleep.assign(Days2=2 * sleep.Days)
    with pytest.warns(RankDeficiencyWarning, match="Days2"):
        fit = mm.lmer("Reaction ~ Days + Days2 + (1|Subject)", df)
    assert list(fit.fixef.index) == ["(Intercept)", "Days"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = mm.lmer("Reaction ~ Days + (1|Subject)", sleep)
    np.testing.assert_allclose(fit.fixef, ref.fixef, rtol=1e-10)


def test_unknown_column_names_column_and_position(sleep):
    with pytest.raises(ColumnNotFoundError) as info:
        mm.lmer("Reaction ~ Dayz + (1|Subject)", sleep)
    assert "'Dayz'" in str(info.value) and info.value.position == 11


def test_unknown_grouping_column(sleep):
    with pytest.raises(ColumnNotFoundError, match="'Subj'"):
        mm.lmer("Reaction ~ Days + (1|Subj)", sleep)


def test_grouping_with_one_level(sleep):
    df = sleep.assign(one="a")
    with pytest.raises(DataError, match="'one' has 1 level"):
        mm.lmer("Reaction ~ Days + (1|one)", df)


def test_grouping_with_as_many_levels_as_rows(sleep):
    df = sleep.assign(row=np.arange(len(sleep)))
    with pytest.raises(DataError, match="as many levels"):
        mm.lmer("Reaction ~ Days + (1|row)", df)


def test_non_numeric_response(sleep):
    with pytest.raises(DataError, match="response 'Subject' must be numeric"):
        mm.lmer("Subject ~ Days + (1|Subject)", sleep)


def test_empty_data_and_wrong_type(sleep):
    with pytest.raises(DataError, match="no rows"):
        mm.lmer("Reaction ~ Days + (1|Subject)", sleep.iloc[:0])
    with pytest.raises(DataError, match="DataFrame"):
        mm.lmer("Reaction ~ Days + (1|Subject)", sleep.to_numpy())


def test_all_rows_missing(sleep):
    df = sleep.assign(Reaction=np.nan)
    with pytest.raises(DataError, match="no complete rows"):
        mm.lmer("Reaction ~ Days + (1|Subject)", df)


def test_formula_without_random_term(sleep):
    with pytest.raises(FormulaError, match="no random-effect term"):
        mm.lmer("Reaction ~ Days", sleep)


def test_malformed_formula_is_package_error(sleep):
    with pytest.raises(MixedModelsError):
        mm.lmer("Reaction ~ Days + (Days|Subject", sleep)
    with pytest.raises(MixedModelsError):
        mm.lmer("Reaction ~ Days + foo(Days) + (1|Subject)", sleep)


def test_bad_weights(sleep):
    with pytest.raises(DataError, match="weights must be positive"):
        mm.lmer("Reaction ~ Days + (1|Subject)", sleep, weights=np.zeros(len(sleep)))
    with pytest.raises(DataError, match="one value per row"):
        mm.lmer("Reaction ~ Days + (1|Subject)", sleep, weights=np.ones(3))


def test_more_random_effects_than_observations(sleep):
    few = sleep.groupby("Subject", observed=True).head(1)  # one row per subject
    few = few.assign(Days=np.arange(len(few), dtype=float))
    with pytest.raises(DataError, match="number of observations"):
        mm.lmer("Reaction ~ Days + (Days|Subject)", pd.concat([few, few.iloc[:3]]))
