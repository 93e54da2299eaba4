"""Prediction checks new data as carefully as the fit checks its data.

The reference for a prediction is the identity ``predict(newdata = the fitted rows) ==
fitted`` (and ``X beta`` for ``include_random=False``), which holds to rounding: rtol 1e-10.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import ColumnNotFoundError, DataError, NewLevelError

RTOL = 1e-10


@pytest.fixture(scope="module")
def sleep():
    df = mm.datasets.load("sleepstudy")
    return df.assign(half=np.where(df.Days < 5, "early", "late"))


@pytest.fixture(scope="module")
def fit(sleep):
    return mm.lmer("Reaction ~ Days + half + (Days | Subject)", sleep)


@pytest.fixture(scope="module")
def gfit(sleep):
    df = sleep.assign(slow=(sleep.Reaction > 300).astype(int))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.glmer("slow ~ Days + half + (1 | Subject)", df, "binomial")


def test_fitted_rows_as_newdata_reproduce_fitted_values(fit, sleep):
    np.testing.assert_allclose(fit.predict(sleep), fit.fitted, rtol=RTOL)
    marginal = fit.X @ fit.fixef.to_numpy()
    np.testing.assert_allclose(fit.predict(sleep, include_random=False), marginal, rtol=RTOL)


def test_missing_column_is_named(fit, gfit, sleep):
    for model in (fit, gfit):
        with pytest.raises(ColumnNotFoundError, match="newdata lacks column.*'Days'"):
            model.predict(sleep.drop(columns="Days"))
        with pytest.raises(ColumnNotFoundError, match="'Subject'"):
            model.predict(sleep.drop(columns="Subject"))


def test_grouping_column_not_needed_without_random_effects(fit, sleep):
    new = sleep.drop(columns="Subject")
    np.testing.assert_allclose(
        fit.predict(new, include_random=False), fit.X @ fit.fixef.to_numpy(), rtol=RTOL
    )


@pytest.mark.parametrize("bad", [{"Days": [1], "Subject": ["308"], "half": ["early"]}, [1, 2]])
def test_newdata_must_be_a_dataframe(fit, gfit, bad):
    for model in (fit, gfit):
        with pytest.raises(
            DataError, match=f"newdata must be a pandas DataFrame.*got {type(bad).__name__}"
        ):
            model.predict(bad)


def test_duplicated_newdata_columns_are_named(fit, sleep):
    new = pd.concat([sleep, sleep[["Days"]]], axis=1)
    with pytest.raises(DataError, match="newdata has duplicated column names: 'Days'"):
        fit.predict(new)


def test_text_in_a_numeric_column_is_named(fit, gfit, sleep):
    new = sleep.head(3).assign(Days=["1", "2", "many"])
    for model in (fit, gfit):
        with pytest.raises(DataError, match="column 'Days' was numeric.*text"):
            model.predict(new)


def test_logical_in_a_numeric_column_is_refused(fit, sleep):
    with pytest.raises(DataError, match="column 'Days' was numeric.*logical"):
        fit.predict(sleep.head(3).assign(Days=[True, False, True]))


def test_new_level_of_a_fixed_factor_is_an_error_as_lme4(fit, gfit, sleep):
    """Before, the unseen level was predicted as the reference level."""
    new = sleep.head(3).assign(half=["early", "middle", "late"])
    for model in (fit, gfit):
        with pytest.raises(NewLevelError, match="factor 'half' has new level.*middle"):
            model.predict(new)
        with pytest.raises(NewLevelError, match="'half'"):
            model.predict(new, allow_new_levels=True)  # only grouping levels may be new


def test_new_value_of_a_numeric_variable_made_a_factor(sleep):
    fit = mm.lmer("Reaction ~ factor(Days) + (1 | Subject)", sleep[sleep.Days < 8])
    new = sleep[sleep.Days >= 7].head(3)
    with pytest.raises(NewLevelError, match="factor 'Days' has new level.*8"):
        fit.predict(new)
    seen = sleep[sleep.Days < 8]
    np.testing.assert_allclose(
        fit.predict(seen.assign(Days=seen.Days.astype(float))), fit.fitted, rtol=RTOL
    )


def test_factor_given_as_text_categorical_or_other_categories(fit, sleep):
    as_categorical = sleep.assign(half=pd.Categorical(sleep.half, categories=["late", "early"]))
    np.testing.assert_allclose(fit.predict(as_categorical), fit.fitted, rtol=RTOL)
    one_level = sleep[sleep.half == "late"]
    expected = fit.fitted[(sleep.half == "late").to_numpy()]
    np.testing.assert_allclose(fit.predict(one_level), expected, rtol=RTOL)


def test_int_grouping_at_fit_and_float_or_text_in_newdata_are_the_same_levels(sleep):
    df = sleep.assign(S=sleep.Subject.astype(str).astype(int))
    fit = mm.lmer("Reaction ~ Days + (1 | S)", df)
    np.testing.assert_allclose(fit.predict(df.assign(S=df.S.astype(float))), fit.fitted, rtol=RTOL)
    np.testing.assert_allclose(fit.predict(df.assign(S=df.S.astype(str))), fit.fitted, rtol=RTOL)
    np.testing.assert_allclose(
        fit.predict(df.assign(S=pd.array(df.S, dtype="Int64"))), fit.fitted, rtol=RTOL
    )
    with pytest.raises(NewLevelError, match="308.5"):
        fit.predict(df.head(1).assign(S=308.5))


def test_float_grouping_at_fit_and_int_in_newdata(sleep):
    df = sleep.assign(S=sleep.Subject.astype(str).astype(float))
    fit = mm.lmer("Reaction ~ Days + (1 | S)", df)
    assert fit.ranef["S"].index[0] == "308"  # R's label of 308.0
    np.testing.assert_allclose(fit.predict(df.assign(S=df.S.astype(int))), fit.fitted, rtol=RTOL)


def test_interaction_grouping_matches_numbers_by_value(sleep):
    df = sleep.assign(S=sleep.Subject.astype(str).astype(int), block=(sleep.Days >= 5).astype(int))
    fit = mm.lmer("Reaction ~ Days + (1 | S:block)", df)
    new = df.assign(S=df.S.astype(float), block=df.block.astype(float))
    np.testing.assert_allclose(fit.predict(new), fit.fitted, rtol=RTOL)


def test_rows_with_missing_values_are_predicted_as_nan(fit, gfit, sleep):
    new = sleep.head(6).copy()
    new.loc[1, "Days"] = np.nan
    new.loc[3, "Subject"] = np.nan
    new["half"] = pd.array(["early", None, "early", "early", "early", "late"], dtype="string")
    for model in (fit, gfit):
        pred = model.predict(new)
        assert np.isnan(pred[[1, 3]]).all()
        expected = model.predict(sleep.head(6))
        keep = [0, 2, 4, 5]
        np.testing.assert_allclose(pred[keep], expected[keep], rtol=RTOL)
    table = fit.predict(new, interval="confidence")
    assert table.loc[[1, 3]].isna().all().all()
    np.testing.assert_allclose(table.fit.to_numpy()[[0, 2]], fit.fitted[[0, 2]], rtol=RTOL)


def test_nullable_dtypes_in_newdata(fit, sleep):
    new = sleep.assign(Days=pd.array(sleep.Days, dtype="Int64"), half=sleep.half.astype("string"))
    np.testing.assert_allclose(fit.predict(new), fit.fitted, rtol=RTOL)


def test_newdata_is_not_modified(fit, sleep):
    new = sleep.head(5).assign(Days=pd.array([0, 1, None, 3, 4], dtype="Int64"))
    before = new.copy()
    fit.predict(new, interval="prediction")
    pd.testing.assert_frame_equal(new, before)


def test_prediction_arguments_are_checked(fit, gfit, sleep):
    with pytest.raises(mm.ArgumentError, match="include_random must be True or False"):
        fit.predict(sleep, include_random="no")
    with pytest.raises(mm.ArgumentError, match="allow_new_levels"):
        fit.predict(sleep, allow_new_levels=1)
    with pytest.raises(mm.ArgumentError, match="interval must be one of"):
        fit.predict(sleep, interval="credible")
    with pytest.raises(mm.ArgumentError, match="level must lie strictly between 0 and 1"):
        fit.predict(sleep, interval="confidence", level=95)
    with pytest.raises(mm.ArgumentError, match="type must be one of 'link', 'response'"):
        gfit.predict(sleep, type="probability")


def test_empty_newdata_gives_empty_predictions(fit, sleep):
    assert fit.predict(sleep.iloc[:0]).shape == (0,)
