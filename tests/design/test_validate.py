"""The data boundary: missing values of every dtype dropped and counted, infinite values
and unusable weights/offsets refused with the column named, R's non-integer warnings.

Fits on data with dropped rows are compared with fits on the same rows removed by hand
(the same optimisation on the same numbers: rtol 1e-10 leaves room only for summation
order)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.design import build_design
from mixedmodels.design.validate import MAX_MAGNITUDE, missing_mask, vector_argument
from mixedmodels.errors import (
    ColumnNotFoundError,
    DataError,
    NonIntegerResponseWarning,
    RowsDroppedWarning,
)

FORMULA = "Reaction ~ x + (1|Subject)"


@pytest.fixture()
def sleep():
    df = mm.datasets.load("sleepstudy")
    return df.assign(x=df.Days.astype(float))


def quiet_fit(formula, data, fitter=mm.lmer, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fitter(formula, data, **kwargs)


# ------------------------------------------------------------------ missing values
NA_COLUMNS = {
    # name: (column with NA in rows 0, 5, 10, the same column's values without NA)
    "numpy float NaN": lambda days: (days.astype(float).where(~_rows(days)), days.astype(float)),
    "Float64 NA": lambda days: (
        pd.array(days.astype(float).where(~_rows(days)), dtype="Float64"),
        days.astype(float),
    ),
    "Int64 NA": lambda days: (pd.array(days.where(~_rows(days)), dtype="Int64"), days),
}


def _rows(days: pd.Series) -> np.ndarray:
    mask = np.zeros(len(days), dtype=bool)
    mask[[0, 5, 10]] = True
    return mask


@pytest.mark.parametrize("kind", sorted(NA_COLUMNS))
def test_numeric_na_of_every_dtype_is_dropped_and_counted(sleep, kind):
    with_na, plain = NA_COLUMNS[kind](sleep.Days)
    df = sleep.assign(x=with_na)
    before = df.copy()
    with pytest.warns(RowsDroppedWarning, match=r"3 row\(s\).*x: 3"):
        fit = mm.lmer(FORMULA, df)
    pd.testing.assert_frame_equal(df, before)
    assert fit.nobs == 177 and fit.n_dropped == 3
    keep = ~_rows(sleep.Days)
    ref = quiet_fit(FORMULA, sleep.assign(x=plain)[keep])
    assert list(fit.fixef.index) == ["(Intercept)", "x"]  # not dropped as rank deficient
    np.testing.assert_allclose(fit.fixef, ref.fixef, rtol=1e-10)
    assert fit.objective == pytest.approx(ref.objective, rel=1e-10)


FACTOR_NA = {
    "boolean pd.NA": lambda v: pd.array(np.where(v, True, False), dtype="boolean"),
    "string pd.NA": lambda v: pd.array(np.where(v, "hi", "lo"), dtype="string"),
    "object None": lambda v: pd.Series(np.where(v, "hi", "lo"), dtype=object),
    "categorical NaN": lambda v: pd.Categorical(np.where(v, "hi", "lo")),
}


@pytest.mark.parametrize("kind", sorted(FACTOR_NA))
def test_factor_na_of_every_dtype_is_dropped_not_coded_as_a_level(sleep, kind):
    high = (sleep.Days > 4).to_numpy()
    full = pd.Series(FACTOR_NA[kind](high))
    with_na = full.copy()
    with_na[_rows(sleep.Days)] = None
    df = sleep.assign(f=with_na.to_numpy() if kind == "object None" else with_na.array)
    with pytest.warns(RowsDroppedWarning, match=r"3 row\(s\).*f: 3"):
        fit = mm.lmer("Reaction ~ f + (1|Subject)", df)
    assert fit.nobs == 177
    keep = ~_rows(sleep.Days)
    ref = quiet_fit("Reaction ~ f + (1|Subject)", sleep.assign(f=full.array)[keep])
    np.testing.assert_allclose(fit.fixef, ref.fixef, rtol=1e-10)
    assert list(fit.fixef.index) == list(ref.fixef.index)


def test_nullable_boolean_na_is_not_coded_false(sleep):
    """The issue's case: before, pd.NA became FALSE and no row was dropped."""
    b = pd.array([True, False, None] * 60, dtype="boolean")
    with pytest.warns(RowsDroppedWarning, match="60 row"):
        fit = mm.lmer("Reaction ~ b + (1|Subject)", sleep.assign(b=b))
    assert fit.nobs == 120
    keep = np.array([True, True, False] * 60)
    plain = np.array([True, False, False] * 60)
    ref = quiet_fit("Reaction ~ b + (1|Subject)", sleep.assign(b=plain)[keep])
    np.testing.assert_allclose(fit.fixef, ref.fixef, rtol=1e-10)


@pytest.mark.parametrize(
    "column, expected",
    [
        (pd.Series([1.0, np.nan, 2.0]), [False, True, False]),
        (pd.Series(pd.array([1, None, 2], dtype="Int64")), [False, True, False]),
        (pd.Series(pd.array([1.0, None, 2.0], dtype="Float64")), [False, True, False]),
        (pd.Series(pd.array([True, None, False], dtype="boolean")), [False, True, False]),
        (pd.Series(pd.array(["a", None, "b"], dtype="string")), [False, True, False]),
        (pd.Series(["a", None, 1], dtype=object), [False, True, False]),
        (pd.Series(pd.Categorical(["a", None, "b"])), [False, True, False]),
        (pd.Series(pd.to_datetime(["2020-01-01", None, "2020-01-02"])), [False, True, False]),
        (pd.Series([1, 2, 3]), [False, False, False]),
        (pd.Series([True, False, True]), [False, False, False]),
    ],
)
def test_missing_mask_knows_every_dtype(column, expected):
    assert missing_mask(column).tolist() == expected


@pytest.mark.filterwarnings("ignore:invalid value encountered in log:RuntimeWarning")
def test_nan_from_a_transform_drops_the_row_as_r_does(sleep):
    """``log`` of a negative number is NaN in R's model frame, which na.omit drops."""
    df = sleep.assign(x=sleep.Days - 1.5)  # rows with Days 0 and 1 give log(negative)
    with pytest.warns(RowsDroppedWarning, match=r"36 row\(s\).*log\(x\) \(NaN produced\): 36"):
        fit = mm.lmer("Reaction ~ log(x) + (1|Subject)", df)
    assert fit.nobs == 144
    ref = quiet_fit("Reaction ~ log(x) + (1|Subject)", df[df.x > 0])
    np.testing.assert_allclose(fit.fixef, ref.fixef, rtol=1e-10)


# ------------------------------------------------------------------ infinite values
def test_inf_in_response_names_it_and_counts_rows(sleep):
    df = sleep.copy()
    df.loc[[3, 8], "Reaction"] = [np.inf, -np.inf]
    before = df.copy()
    with pytest.raises(DataError, match=r"Inf.*response 'Reaction'.*2 row"):
        mm.lmer(FORMULA, df)
    pd.testing.assert_frame_equal(df, before)


@pytest.mark.parametrize("fitter", ["lmer", "lm", "glmer"])
def test_inf_in_predictor_is_an_error_not_a_dropped_column(sleep, fitter):
    """Before, lm and glmer dropped the column as rank deficient."""
    df = sleep.assign(x=sleep.Days.astype(float), y01=(sleep.Reaction > 300).astype(int))
    df.loc[5, "x"] = -np.inf
    formulas = {
        "lmer": ("Reaction ~ x + (1|Subject)", {}),
        "lm": ("Reaction ~ x", {}),
        "glmer": ("y01 ~ x + (1|Subject)", {"family": "binomial"}),
    }
    formula, kwargs = formulas[fitter]
    with pytest.raises(DataError, match=r"fixed-effect column 'x'.*1 row"):
        getattr(mm, fitter)(formula, df, **kwargs)


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")
def test_inf_from_a_transform_names_the_built_column(sleep):
    with pytest.raises(DataError, match=r"'log\(Days\)'.*18 row"):
        mm.lmer("Reaction ~ log(Days) + (1|Subject)", sleep)


def test_inf_in_random_effect_column(sleep):
    df = sleep.copy()
    df.loc[0, "x"] = np.inf
    with pytest.raises(DataError, match=r"'x \| Subject'.*1 row"):
        mm.lmer("Reaction ~ Days + (x|Subject)", df)


def test_inf_in_a_poisson_response_is_a_data_error_without_lapack_chatter(sleep, capfd):
    df = sleep.assign(c=np.round(sleep.Reaction / 100))
    df.loc[2, "c"] = np.inf
    with pytest.raises(DataError, match=r"response 'c'.*1 row"):
        mm.glmer("c ~ Days + (1|Subject)", df, "poisson")
    assert capfd.readouterr().err == ""


def test_huge_values_are_refused_before_they_overflow(sleep):
    df = sleep.assign(Reaction=sleep.Reaction * 1e300)
    with pytest.raises(DataError, match=r"response 'Reaction'.*rescale"):
        mm.lmer(FORMULA, df)
    assert MAX_MAGNITUDE == 1e100


# ------------------------------------------------------------------ weights and offsets
def test_weights_naming_a_grouping_factor_are_refused(sleep):
    with pytest.raises(DataError, match=r"weights column 'Subject' must be numeric.*factor"):
        mm.lmer(FORMULA, sleep, weights="Subject")


def test_text_weights_and_offsets_are_refused(sleep):
    df = sleep.assign(w="a")
    with pytest.raises(DataError, match=r"weights column 'w' must be numeric.*text"):
        mm.lmer(FORMULA, df, weights="w")
    with pytest.raises(DataError, match=r"offset column 'w' must be numeric"):
        mm.lmer(FORMULA, df, offset="w")
    with pytest.raises(DataError, match=r"weights must be numeric.*text"):
        mm.lmer(FORMULA, sleep, weights=["a"] * len(sleep))
    with pytest.raises(DataError, match=r"weights must be numeric.*logical"):
        mm.lmer(FORMULA, sleep, weights=np.ones(len(sleep), dtype=bool))


def test_weights_column_not_in_data(sleep):
    with pytest.raises(ColumnNotFoundError, match="'nope'"):
        mm.lmer(FORMULA, sleep, weights="nope")


@pytest.mark.parametrize("what", ["weights", "offset"])
def test_infinite_weights_or_offset(sleep, what):
    values = np.ones(len(sleep))
    values[[4, 9, 11]] = np.inf
    with pytest.raises(DataError, match=rf"Inf.*{what}.*3 row"):
        mm.lmer(FORMULA, sleep, **{what: values})
    df = sleep.assign(v=values)
    with pytest.raises(DataError, match=rf"{what} column 'v'.*3 row"):
        mm.lmer(FORMULA, df, **{what: "v"})


def test_missing_weights_drop_their_rows(sleep):
    w = np.linspace(0.5, 2.0, len(sleep))
    w_na = w.copy()
    w_na[[1, 2]] = np.nan
    with pytest.warns(RowsDroppedWarning, match=r"2 row\(s\).*weights: 2"):
        fit = mm.lmer(FORMULA, sleep, weights=w_na)
    keep = ~np.isnan(w_na)
    ref = quiet_fit(FORMULA, sleep[keep], weights=w[keep])
    np.testing.assert_allclose(fit.fixef, ref.fixef, rtol=1e-10)


def test_nullable_weights_column_is_numeric(sleep):
    w = np.linspace(0.5, 2.0, len(sleep))
    df = sleep.assign(w=pd.array(w, dtype="Float64"))
    fit = quiet_fit(FORMULA, df, weights="w")
    ref = quiet_fit(FORMULA, sleep, weights=w)
    np.testing.assert_allclose(fit.fixef, ref.fixef, rtol=1e-12)


def test_nonpositive_weights_name_the_rows(sleep):
    w = np.ones(len(sleep))
    w[7] = -1.0
    with pytest.raises(DataError, match=r"weights must be positive.*1 row.*7 \(-1\)"):
        mm.lmer(FORMULA, sleep, weights=w)


def test_vector_argument_wrong_length_and_shape(sleep):
    with pytest.raises(DataError, match="one value per row"):
        vector_argument(np.ones(3), sleep, "offset")
    with pytest.raises(DataError, match="one number per row"):
        vector_argument(np.ones((len(sleep), 2)), sleep, "offset")


# ------------------------------------------------------------------ frames
def test_duplicated_column_names_are_named(sleep):
    df = pd.concat([sleep, sleep[["Days"]]], axis=1)
    with pytest.raises(DataError, match="duplicated column names: 'Days'"):
        mm.lmer("Reaction ~ Days + (1|Subject)", df)


def test_more_fixed_effects_than_rows_is_a_clear_error(sleep):
    rng = np.random.default_rng(1)
    wide = pd.DataFrame(rng.standard_normal((180, 300)), columns=[f"x{i}" for i in range(300)])
    df = pd.concat([sleep[["Reaction", "Subject"]], wide], axis=1)
    formula = "Reaction ~ " + " + ".join(wide.columns) + " + (1|Subject)"
    with pytest.raises(DataError, match="more fixed-effect columns than observations.*301"):
        mm.lmer(formula, df)


def test_lm_with_as_many_coefficients_as_rows_has_no_residual_df(sleep):
    """R: a saturated lm fits exactly, with NaN residual standard error."""
    small = sleep.iloc[:4].assign(a=[0.0, 1, 0, 0], b=[0.0, 0, 1, 0], c=[0.0, 0, 0, 1])
    fit = quiet_fit("Reaction ~ a + b + c", small, fitter=mm.lm)
    np.testing.assert_allclose(fit.fitted, small.Reaction, rtol=1e-10)
    assert np.isnan(fit.sigma)
    assert "NaN on 0 degrees of freedom" in fit.summary()


def test_build_design_never_modifies_the_frame(sleep):
    df = sleep.assign(
        b=pd.array([True, None, False, False] * 45, dtype="boolean"),
        k=pd.array([1, 2, None, 4] * 45, dtype="Int64"),
    )
    before = df.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_design("Reaction ~ b + k + log(Days) + (1|Subject)", df.assign(Days=df.Days + 1))
        with pytest.raises(DataError):
            build_design("Reaction ~ b + log(Days) + (1|Subject)", df)
    pd.testing.assert_frame_equal(df, before)


# ------------------------------------------------------------------ counts
def test_poisson_non_integer_counts_warn_as_r(sleep):
    df = sleep.assign(c=np.round(sleep.Reaction / 10) + 0.5 * (sleep.Days == 3))
    with pytest.warns(NonIntegerResponseWarning, match=r"poisson response 'c': 18 value.*\.5"):
        quiet_ok = mm.glmer("c ~ Days + (1|Subject)", df, "poisson")
    assert quiet_ok.nobs == 180
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonIntegerResponseWarning)
        mm.glmer("c ~ Days + (1|Subject)", df.assign(c=np.round(df.c + 0.1)), "poisson")


@pytest.mark.parametrize("family", ["nbinom2", "nbinom1"])
def test_negative_binomial_non_integer_counts_warn_as_r(sleep, family):
    """R's dnbinom warns on non-integer x as dpois does; so do glmer_nb and glmmTMB's
    negative binomial families."""
    df = sleep.assign(c=np.round(sleep.Reaction / 10) + 0.5 * (sleep.Days == 3))
    with pytest.warns(NonIntegerResponseWarning, match=rf"{family} response 'c': 18 value"):
        mm.glmer("c ~ Days + (1|Subject)", df, family)
    with pytest.warns(NonIntegerResponseWarning, match=r"negative_binomial response 'c'"):
        mm.glmer_nb("c ~ Days + (1|Subject)", df)


def test_binomial_non_integer_successes_warn_as_r(sleep):
    k = np.round(sleep.Reaction / 10)
    df = sleep.assign(k=k + 0.25 * (sleep.Days == 0), fails=50 - k)
    with pytest.warns(NonIntegerResponseWarning, match=r"successes.*'cbind\(k, fails\)': 18 row"):
        mm.glmer("cbind(k, fails) ~ Days + (1|Subject)", df, "binomial")
    # whole successes with fractional failures: R checks the successes only
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonIntegerResponseWarning)
        mm.glmer("cbind(k, fails) ~ Days + (1|Subject)", df.assign(k=k, fails=50.5 - k), "binomial")
    # a proportion with whole-number weights: no warning (R neither)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonIntegerResponseWarning)
        mm.glmer(
            "p ~ Days + (1|Subject)", df.assign(p=k / 50), "binomial", weights=np.full(180, 50.0)
        )


@pytest.mark.parametrize(
    "values, match",
    [
        (lambda d: d.Days + 1j, "'c' holds complex numbers"),
        (lambda d: pd.Timestamp("2020-01-01") + pd.to_timedelta(d.Days, "D"), "'c' holds dates"),
        (lambda d: pd.to_timedelta(d.Days, "D"), "'c' holds dates, times or durations"),
    ],
)
@pytest.mark.parametrize("formula", ["Reaction ~ c + (1|Subject)", "c ~ Days + (1|Subject)"])
def test_complex_and_time_columns_cannot_enter_a_model(sleep, values, match, formula):
    with pytest.raises(DataError, match=match):
        mm.lmer(formula, sleep.assign(c=values(sleep)))


def test_dates_are_fine_as_a_grouping_factor(sleep):
    day = pd.Timestamp("2020-01-01") + pd.to_timedelta(sleep.Subject.cat.codes, "D")
    fit = quiet_fit("Reaction ~ Days + (1|day)", sleep.assign(day=day))
    ref = quiet_fit("Reaction ~ Days + (1|Subject)", sleep)
    assert fit.objective == pytest.approx(ref.objective, rel=1e-10)


def test_complex_weights_are_refused(sleep):
    with pytest.raises(DataError, match="weights must be numeric, but it is complex"):
        mm.lmer(FORMULA, sleep, weights=np.ones(len(sleep)) + 0j)


@pytest.mark.parametrize(
    "column",
    [
        pd.Series(["a", None, np.nan, "b"], dtype=object),
        pd.Series(["a", None, "b"], dtype="string[python]"),
        pd.Series(["a", None, "b"], dtype="string[pyarrow]"),
        pd.Series([1, None, 3], dtype="Int64"),
        pd.Series([1.5, None, np.nan], dtype="Float64"),
        pd.Series([True, None, False], dtype="boolean"),
        pd.Series(pd.to_datetime(["2020-01-01", None, "2020-01-03"])),
        pd.Series(pd.to_timedelta(["1D", None, "2D"])),
        pd.Series(pd.period_range("2020-01", periods=3, freq="M")).where(lambda s: s.index != 1),
        pd.Series(pd.arrays.SparseArray([0.0, np.nan, 1.0])),
        pd.Series([1.0, np.nan, 2.0]),
        pd.Series([1, 2, 3]),
    ],
)
def test_missing_mask_is_isna(column):
    """missing_mask (the column's array's isna, no Series built) marks what pandas' isna
    marks (and NaN besides NA in a nullable float)."""
    expected = np.array(column.isna(), dtype=bool)
    if str(column.dtype) == "Float64":
        expected |= np.isnan(column.to_numpy(dtype=float, na_value=np.nan))
    np.testing.assert_array_equal(missing_mask(column), expected)
