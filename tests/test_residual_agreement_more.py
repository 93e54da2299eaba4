"""Issue 12 reviewed on cases that are not in its tests: nlme::lme's ``correlation =`` and
``weights =`` and glmmTMB's structured random-effect covariances, on new models and data.

References: ``tests/reference/rescheck/*.json``, made with the simulated data (CSV beside
them) by ``tests/reference/rescheck/make_rescheck.R`` (nlme 3.1-162 with its control
tolerances tightened so its optimum is accurate to ~1e-9; glmmTMB 1.1.5, converged with a
positive-definite Hessian).  The cases cover what the first tests do not: a random slope
with AR(1) and with compound symmetry at an inner level, an integer time with gaps in
unequal groups given in shuffled row order, continuous-time AR(1) at non-integer times,
MA(2), compound symmetry with varIdent on a 3-level factor, varPower of a covariate and
of the fitted values, varComb, varIdent with AR(1), singleton groups with missing values
in the response and in two structure columns, nested ``a/b`` with AR(1) at the inner
level; glmmTMB heterogeneous ``cs`` over three levels, ``ar1`` over six, ``diag`` beside a
crossed term and ``toep`` in a crossed model.

Tolerances are the issue's: log-likelihood 1e-6 relative; fixed effects 1e-4 of the
largest; standard errors 1e-3 relative; correlation and variance parameters 1e-3
absolute (they are of order one); random-effect standard deviations and sigma 1e-3
relative.  Predictions on new rows follow from beta and the modes: 1e-4 of the largest
prediction.  LRT statistics are differences of two log-likelihoods each within 1e-6
relative: 4e-6 times their size, and p-values follow (1e-3 relative).

Two references are not R's printed numbers, for causes found in R:

- nlme's ``intervals()`` invert ``fdHess``, a coarse Hessian: on Orthodont's
  ``varComb(varIdent, varPower(age))`` (``log age`` spans 2.1-2.6, so ``power`` is nearly
  collinear with ``log sigma``) its lower end for ``power`` is -1.3549 where the same
  intervals with numDeriv's Richardson Hessian of the same function give -1.3817 (ours
  -1.3817).  The Wald ends are checked against the Richardson ones (1e-3 absolute: the
  estimates agree within 1e-4 and the Hessians are both numerical).
- glmmTMB's standard errors of beta come from the observed information over beta and the
  covariance parameters together (its ``sdreport``), which carries the covariance
  parameters' uncertainty (tmb_cs3: 0.06284 for ``x``, lme4's ``(X'V^-1 X)^-1`` 0.06274,
  ours 0.06274).  The script writes lme4's out densely at glmmTMB's estimates
  (``se_lme4``); the standard errors are checked against it.  glmmTMB 1.1.5's ``predict()``
  under REML is not ``X beta + Z b`` (it differs from ``X %*% fixef`` by up to 0.15), so
  predictions are written out from ``fixef()`` and ``ranef()`` (checked against
  ``predict()`` on the ML fits).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mixedmodels as mm
from mixedmodels.errors import FormulaError, RowsDroppedWarning

REFERENCE = Path(__file__).parent / "reference" / "rescheck"

Kwargs = Callable[[], dict]
_NONE: Kwargs = dict

#: case -> (formula, structures of the fit, structures of the LRT's second model)
NLME: dict[str, tuple[str, Kwargs, Kwargs]] = {
    "slope_ar1": (
        "y ~ x + Time + (Time | g)",
        lambda: {"correlation": mm.cor.AR1()},
        _NONE,
    ),
    "slope_cs_inner": (
        "y ~ Time + (Time | subj)",
        lambda: {"correlation": mm.cor.CompSymm(group="subj/session")},
        _NONE,
    ),
    "gaps_ar1": ("y ~ x + (1 | g)", lambda: {"correlation": mm.cor.AR1("t", group="g")}, _NONE),
    "car1_irregular": (
        "y ~ t + (1 | g)",
        lambda: {"correlation": mm.cor.CAR1("t", group="g")},
        _NONE,
    ),
    "ovary_ma2": (
        "follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1 | Mare)",
        lambda: {"correlation": mm.cor.ARMA(q=2)},
        lambda: {"correlation": mm.cor.AR1()},
    ),
    "cs_varident3": (
        "y ~ cond + (1 | site)",
        lambda: {
            "correlation": mm.cor.CompSymm(group="site/subj"),
            "weights": mm.var.Ident("cond"),
        },
        lambda: {"correlation": mm.cor.CompSymm(group="site/subj")},
    ),
    "varpower_cov": ("y ~ dose + (1 | g)", lambda: {"weights": mm.var.Power("dose")}, _NONE),
    "varpower_fitted": (
        "y ~ x + (1 | g)",
        lambda: {"weights": mm.var.Power()},
        lambda: {"weights": mm.var.Exp()},
    ),
    "orthodont_varcomb": (
        "distance ~ age + Sex + (1 | Subject)",
        lambda: {"weights": mm.var.Combined(mm.var.Ident("Sex"), mm.var.Power("age"))},
        lambda: {"weights": mm.var.Ident("Sex")},
    ),
    "varident_ar1": (
        "y ~ Time + (1 | g)",
        lambda: {"correlation": mm.cor.AR1(), "weights": mm.var.Ident("phase")},
        lambda: {"correlation": mm.cor.AR1()},
    ),
    "single_missing": (
        "y ~ x + (1 | g)",
        lambda: {"correlation": mm.cor.AR1("t", group="g"), "weights": mm.var.Exp("x")},
        lambda: {"correlation": mm.cor.AR1("t", group="g")},
    ),
    "nested_ar1": ("y ~ x + (1 | a/b)", lambda: {"correlation": mm.cor.AR1()}, _NONE),
}
GLMMTMB = ["tmb_cs3", "tmb_ar1_6", "tmb_diag_plus", "tmb_crossed_toep"]
METHODS = ["reml", "ml"]
#: Wald ends against nlme's intervals() with numDeriv's Richardson Hessian (see module)
WALD_TOL = 1e-3


def reference(case: str) -> dict:
    return json.loads((REFERENCE / f"{case}.json").read_text())


def case_data(case: str) -> pd.DataFrame:
    ref = reference(case)
    if ref["simulated"]:
        return pd.read_csv(REFERENCE / f"{case}.csv")
    return mm.datasets.load(ref["data"])


def _fit(formula: str, data: pd.DataFrame, reml: bool, kwargs: dict):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.lmer(formula, data, reml=reml, **kwargs)


_FITS: dict[tuple[str, str], object] = {}


def fitted(case: str, method: str):
    key = (case, method)
    if key not in _FITS:
        data = case_data(case)
        if case in NLME:
            formula, kwargs, _ = NLME[case]
            _FITS[key] = _fit(formula, data, method == "reml", kwargs())
        else:
            _FITS[key] = _fit(reference(case)["formula"], data, method == "reml", {})
    return _FITS[key]


def _check_common(fit, ref: dict) -> None:
    assert fit.nobs == ref["nobs"]
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-6)
    assert fit.n_parameters == ref["df"]
    beta = fit.fixef.to_numpy()
    np.testing.assert_allclose(beta, ref["fixef"], atol=1e-4 * np.max(np.abs(ref["fixef"])))
    se = np.sqrt(np.diagonal(fit.vcov.to_numpy()))
    np.testing.assert_allclose(se, ref.get("se_lme4", ref["se"]), rtol=1e-3)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-3)


def _check_predictions(fit, ref: dict, method_ref: dict) -> None:
    new = pd.DataFrame(ref["newdata"])
    scale = np.max(np.abs(method_ref["predict_random"]))
    fixed = np.asarray(fit.predict(new, include_random=False))
    np.testing.assert_allclose(fixed, method_ref["predict_fixed"], atol=1e-4 * scale)
    full = np.asarray(fit.predict(new))
    np.testing.assert_allclose(full, method_ref["predict_random"], atol=1e-4 * scale)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", sorted(NLME))
def test_agrees_with_nlme(case, method):
    ref = reference(case)
    r = ref[method]
    fit = fitted(case, method)
    _check_common(fit, r)
    assert fit.aic == pytest.approx(r["AIC"], rel=1e-6)
    np.testing.assert_allclose(fit.correlation_parameters.to_numpy(), r["cor_par"], atol=1e-3)
    np.testing.assert_allclose(fit.variance_parameters.to_numpy(), r["var_par"], atol=1e-3)
    sd = fit.varcorr.query("var2.isnull() and grp != 'Residual'", engine="python")["sdcor"]
    np.testing.assert_allclose(np.sort(sd.to_numpy()), np.sort(r["re_sd"]), rtol=1e-3)
    scale = np.max(np.abs(r["fitted"]))
    np.testing.assert_allclose(fit.fitted, r["fitted"], atol=1e-4 * scale)
    np.testing.assert_allclose(
        fit.predict(include_random=False), r["fitted_fixed"], atol=1e-4 * scale
    )
    _check_predictions(fit, ref, r)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", sorted(NLME))
def test_wald_intervals_agree_with_nlme_intervals(case, method):
    r = reference(case)[method]
    fit = fitted(case, method)
    ci = fit.confint("wald")
    names = list(fit.correlation_parameters.index) + list(fit.variance_parameters.index)
    accurate = r["richardson"]
    lower = (accurate["cor_lower"] or []) + (accurate["var_lower"] or [])
    upper = (accurate["cor_upper"] or []) + (accurate["var_upper"] or [])
    assert len(lower) == len(names)
    np.testing.assert_allclose(ci.loc[names, "lower"], lower, atol=WALD_TOL)
    np.testing.assert_allclose(ci.loc[names, "upper"], upper, atol=WALD_TOL)


def _lrt(plain, fit, ref_lrt: dict, df: int) -> None:
    # lme4's convention: Chisq = 2 max(0, logLik(larger) - logLik(smaller)); nlme's
    # L.Ratio is 2 |difference| (ovary_ma2: MA(2) fits worse than AR(1), L.Ratio 9.68)
    # and none between models of equal size (varPower against varExp of the fitted values)
    table = mm.anova(plain, fit)
    assert plain.loglik == pytest.approx(ref_lrt["alt_logLik"], rel=1e-6)
    chisq = float(table["Chisq"].iloc[1])
    size = max(abs(plain.loglik), abs(fit.loglik))
    small, large = sorted([plain, fit], key=lambda f: f.n_parameters)  # the table's order
    difference = 2 * (large.loglik - small.loglik)
    if ref_lrt["L_ratio"] is not None:
        assert abs(difference) == pytest.approx(ref_lrt["L_ratio"], abs=4e-6 * size)
    assert chisq == pytest.approx(max(difference, 0.0), abs=1e-12 * size)
    if df != 0:
        assert int(table["Df"].iloc[1]) == abs(df)
        assert stats.chi2.sf(abs(difference), abs(df)) == pytest.approx(
            ref_lrt["p_value"], rel=1e-3, abs=1e-12
        )


@pytest.mark.parametrize("case", sorted(NLME))
def test_lrt_between_structures_agrees_with_nlme_anova(case):
    ref = reference(case)
    formula, _, alt = NLME[case]
    fit = fitted(case, "ml")
    plain = _fit(formula, case_data(case), False, alt())
    _lrt(plain, fit, ref["lrt"], ref["ml"]["df"] - ref["lrt"]["alt_df"])


def test_missing_values_are_dropped_and_counted():
    # nlme's na.omit drops the rows with a missing value in the response or in a column of
    # the correlation or variance function; the warnings must count every one of them
    ref = reference("single_missing")
    data = case_data("single_missing")
    before = data.copy()
    formula, kwargs, _ = NLME["single_missing"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = mm.lmer(formula, data, reml=True, **kwargs())
    dropped = [w for w in caught if issubclass(w.category, RowsDroppedWarning)]
    counts = [int(re.match(r"(\d+) row", str(w.message)).group(1)) for w in dropped]
    assert sum(counts) == ref["rows"] - ref["reml"]["nobs"] == 7
    assert fit.nobs == ref["reml"]["nobs"]
    pd.testing.assert_frame_equal(data, before)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", GLMMTMB)
def test_agrees_with_glmmtmb(case, method):
    ref = reference(case)
    r = ref[method]
    fit = fitted(case, method)
    _check_common(fit, r)
    covs = list(fit.ranef_cov().values())
    assert len(covs) == len(r["re_cov"])
    for ours, theirs in zip(covs, r["re_cov"].values(), strict=True):
        ours = ours.to_numpy()
        theirs = np.atleast_2d(np.asarray(theirs, dtype=float))
        np.testing.assert_allclose(
            np.sqrt(np.diagonal(ours)), np.sqrt(np.diagonal(theirs)), rtol=1e-3
        )
        np.testing.assert_allclose(ours, theirs, atol=2e-3 * np.max(theirs))
    _check_predictions(fit, ref, r)


@pytest.mark.parametrize("case", GLMMTMB)
def test_lrt_between_structures_agrees_with_glmmtmb_anova(case):
    ref = reference(case)
    fit = fitted(case, "ml")
    plain = _fit(ref["alt_formula"], case_data(case), False, {})
    _lrt(plain, fit, ref["lrt"], int(ref["lrt"]["chi_df"]))


def test_missing_values_with_a_repeated_index():
    # the structures' columns are matched to the design's rows by label; with a repeated
    # index label the rows are matched by position instead: the same fit
    data = case_data("single_missing")
    repeated = data.set_axis(np.arange(len(data)) // 2)
    formula, kwargs, _ = NLME["single_missing"]
    fit = fitted("single_missing", "reml")
    again = _fit(formula, repeated, True, kwargs())
    assert again.nobs == fit.nobs
    assert again.loglik == pytest.approx(fit.loglik, rel=1e-10)


def test_ar1_over_one_numeric_column_is_refused():
    # glmmTMB: "ar1() expects a single, factor variable as the time component"; one column
    # has no correlation, so the term would silently be a random slope on time.  With the
    # time as a factor the fit is glmmTMB's (ML logLik within 1e-6)
    data = case_data("tmb_ar1_6")
    with pytest.raises(FormulaError, match=r"ar1\(0 \+ time \| subj\) has 1 column"):
        mm.lmer("y ~ time + ar1(0 + time | subj)", data)
    fit = _fit("y ~ time + ar1(0 + factor(time) | subj)", data, False, {})
    assert fit.loglik == pytest.approx(reference("tmb_ar1_6")["ml"]["logLik"], rel=1e-6)
