"""Fits with structured residuals against nlme::lme, and their downstream accessors.

Reference values: ``tests/reference/residual/*.json``, made by
``tests/reference/residual/make_residual_reference.R`` (nlme 3.1, REML and ML, control
tolerances tightened so that nlme's own optimum is accurate to ~1e-9).  Tolerances are
the issue's: log-likelihood 1e-6 relative, fixed effects and their standard errors 1e-4
(relative to the largest), correlation / variance parameters 1e-3 (absolute, they are of
order 1 or smaller), fitted values 1e-5 relative.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import ArgumentError, ColumnNotFoundError, RowsDroppedWarning

REFERENCE = Path(__file__).parent.parent / "reference" / "residual"
OVARY = "follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1 | Mare)"
BODYWEIGHT = "weight ~ Time * Diet + (Time | Rat)"
ORTHODONT = "distance ~ age * Sex + (1 | Subject)"


def _ovary_gaps() -> pd.DataFrame:
    d = mm.datasets.load("Ovary")
    t = d.groupby("Mare", observed=True).cumcount() + 1
    return d.assign(t=t.astype(float))[(t % 4 != 0).to_numpy()]


CASES = {
    "ovary_ar1": ("Ovary", OVARY, lambda: {"correlation": mm.cor.AR1()}),
    "ovary_arma11": ("Ovary", OVARY, lambda: {"correlation": mm.cor.ARMA(p=1, q=1)}),
    "ovary_ar2": ("Ovary", OVARY, lambda: {"correlation": mm.cor.ARMA(p=2)}),
    "ovary_ar1_gaps": (_ovary_gaps, OVARY, lambda: {"correlation": mm.cor.AR1("t")}),
    "bodyweight_varpower": ("BodyWeight", BODYWEIGHT, lambda: {"weights": mm.var.Power()}),
    "bodyweight_car1": ("BodyWeight", BODYWEIGHT, lambda: {"correlation": mm.cor.CAR1("Time")}),
    "bodyweight_varexp": ("BodyWeight", BODYWEIGHT, lambda: {"weights": mm.var.Exp("Time")}),
    "bodyweight_car1_varpower_time": (
        "BodyWeight",
        BODYWEIGHT,
        lambda: {"correlation": mm.cor.CAR1("Time"), "weights": mm.var.Power("Time")},
    ),
    "orthodont_varident": ("Orthodont", ORTHODONT, lambda: {"weights": mm.var.Ident("Sex")}),
    "orthodont_varfixed": ("Orthodont", ORTHODONT, lambda: {"weights": mm.var.Fixed("age")}),
    "pastes_cs": (
        "Pastes",
        "strength ~ 1 + (1 | batch)",
        lambda: {"correlation": mm.cor.CompSymm(group="batch/cask")},
    ),
    "sleepstudy_ar1": (
        "sleepstudy",
        "Reaction ~ Days + (1 | Subject)",
        lambda: {"correlation": mm.cor.AR1()},
    ),
}


def _reference(name: str) -> dict:
    return json.loads((REFERENCE / f"{name}.json").read_text())


_FITS: dict[str, mm.ResidualLmerFit] = {}


def fitted(case: str, method: str) -> mm.ResidualLmerFit:
    key = f"{case}_{method}"
    if key not in _FITS:
        data, formula, kwargs = CASES[case]
        frame = data() if callable(data) else mm.datasets.load(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[key] = mm.lmer(formula, frame, reml=method == "reml", **kwargs())
    return _FITS[key]


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_agrees_with_nlme(case, method):
    ref = _reference(f"{case}_{method}")
    fit = fitted(case, method)
    assert fit.nobs == ref["nobs"]
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-6)
    assert fit.n_parameters == ref["df"]
    assert fit.aic == pytest.approx(ref["AIC"], rel=1e-6)
    beta = fit.fixef.to_numpy()
    np.testing.assert_allclose(beta, ref["fixef"], atol=1e-4 * np.max(np.abs(ref["fixef"])))
    se = np.sqrt(np.diagonal(fit.vcov.to_numpy()))
    np.testing.assert_allclose(se, ref["se"], rtol=1e-4)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-4)
    np.testing.assert_allclose(fit.correlation_parameters.to_numpy(), ref["cor_par"], atol=1e-3)
    var = fit.variance_parameters.to_numpy()
    ref_var = np.asarray(ref["var_par"], dtype=float)
    if case == "orthodont_varident":  # nlme lists the reference level's 1 too
        assert ref["var_names"][1:] == list(fit.variance_parameters.index)
        ref_var = ref_var[1:]
    np.testing.assert_allclose(var, ref_var, atol=1e-3)
    sd = fit.varcorr.query("var2.isnull() and grp != 'Residual'", engine="python")["sdcor"]
    np.testing.assert_allclose(sd.to_numpy(), ref["re_sd"], rtol=1e-3)
    scale = np.max(np.abs(ref["fitted"]))
    np.testing.assert_allclose(fit.fitted, ref["fitted"], atol=1e-5 * scale)
    np.testing.assert_allclose(
        fit.predict(include_random=False), ref["fitted_fixed"], atol=1e-5 * scale
    )


@pytest.mark.parametrize(
    ("case", "method"),
    [
        ("ovary_ar1", "reml"),
        ("ovary_arma11", "ml"),
        ("bodyweight_car1", "reml"),
        ("orthodont_varident", "reml"),
        ("bodyweight_varpower", "reml"),
        ("pastes_cs", "reml"),
    ],
)
def test_wald_intervals_agree_with_nlme_intervals(case, method):
    # nlme's intervals(): normal quantiles on its unconstrained scale, transformed back;
    # the Hessians are both numerical, so 2e-3 absolute
    ref = _reference(f"{case}_{method}")
    fit = fitted(case, method)
    ci = fit.confint("wald")
    names = list(fit.correlation_parameters.index) + list(fit.variance_parameters.index)
    lower = ref["cor_lower"] or ref["var_lower"]
    upper = ref["cor_upper"] or ref["var_upper"]
    np.testing.assert_allclose(ci.loc[names, "lower"], lower, atol=2e-3)
    np.testing.assert_allclose(ci.loc[names, "upper"], upper, atol=2e-3)
    # fixed effects: estimate -/+ 1.96 se
    se = np.sqrt(np.diagonal(fit.vcov.to_numpy()))
    np.testing.assert_allclose(
        ci.loc[fit.fixef.index, "upper"] - fit.fixef, 1.959963984540054 * se, rtol=1e-12
    )


def _structure_cases() -> list[tuple[str, str]]:
    return [
        (case, method)
        for case in sorted(CASES)
        for method in ("reml", "ml")
        if case != "orthodont_varfixed"  # varFixed has no parameters
    ]


@pytest.mark.parametrize(("case", "method"), _structure_cases())
def test_wald_intervals_of_every_structure_agree_with_nlme_intervals(case, method):
    # every fit with structure parameters, correlation and variance function together
    # (nlme transforms the vector of lower ends at once, which matters for AR(2): Phi1
    # depends on both partial autocorrelations).  5e-3 absolute: nlme's apVar comes from
    # fdHess, a coarse numerical Hessian; ours, extrapolated central differences, changes
    # by < 1e-4 in the standard errors between steps 1e-3 and 1e-2 (checked on the fits
    # farthest from nlme: pastes_cs ML 3.0e-3, BodyWeight CAR(1) + varPower REML 2.3e-3)
    ref = _reference(f"{case}_{method}")
    fit = fitted(case, method)
    ci = fit.confint("wald")
    names = list(fit.correlation_parameters.index) + list(fit.variance_parameters.index)
    lower = (ref["cor_lower"] or []) + (ref["var_lower"] or [])
    upper = (ref["cor_upper"] or []) + (ref["var_upper"] or [])
    assert len(lower) == len(names)
    np.testing.assert_allclose(ci.loc[names, "lower"], lower, atol=5e-3)
    np.testing.assert_allclose(ci.loc[names, "upper"], upper, atol=5e-3)


def test_compound_symmetry_is_a_nested_random_intercept():
    # with Rho >= 0, CS within cask is (1 | batch:cask): the same REML fit (lme4's);
    # variance estimates of two optimizers on objectives equal to 1e-8 agree to ~1e-5
    fit = fitted("pastes_cs", "reml")
    pastes = mm.datasets.load("Pastes")
    nested = mm.lmer("strength ~ 1 + (1 | batch) + (1 | batch:cask)", pastes)
    assert fit.loglik == pytest.approx(nested.loglik, rel=1e-8)
    rho = fit.correlation_parameters["Rho"]
    vc = nested.varcorr.set_index("grp")["vcov"]
    assert rho * fit.sigma**2 == pytest.approx(vc["batch:cask"], rel=1e-5)
    assert fit.sigma**2 == pytest.approx(vc["batch:cask"] + vc["Residual"], rel=1e-5)


def test_marginal_covariance_gives_the_likelihood():
    # ML: log L = log N(y; X beta, Sigma) with the structured Sigma from marginal_cov()
    fit = fitted("bodyweight_car1_varpower_time", "ml")
    sigma = fit.marginal_cov().toarray()
    np.testing.assert_allclose(sigma, sigma.T, atol=1e-10)
    r = fit.design.y - fit.design.X @ fit.fixef.to_numpy()
    sign, log_det = np.linalg.slogdet(sigma)
    assert sign > 0
    loglik = -0.5 * (log_det + r @ np.linalg.solve(sigma, r) + r.size * np.log(2 * np.pi))
    assert loglik == pytest.approx(fit.loglik, rel=1e-9)
    # the residual part: sigma^2 s_i s_j Phi^|t_i - t_j| within a rat, 0 across rats
    resid = fit.residual_cov().toarray()
    d = fit.design.data
    phi = fit.correlation_parameters["Phi"]
    power = fit.variance_parameters["power"]
    i, j = 0, 3  # rows 1 and 4 of rat 1 (times 1 and 22)
    assert d["Rat"].iloc[i] == d["Rat"].iloc[j]
    ti, tj = d["Time"].iloc[i], d["Time"].iloc[j]
    expected = fit.sigma**2 * (ti * tj) ** power * phi ** abs(ti - tj)
    assert resid[i, j] == pytest.approx(expected, rel=1e-10)
    other = np.flatnonzero((d["Rat"] != d["Rat"].iloc[0]).to_numpy())[0]
    assert resid[0, other] == 0.0


def test_normalized_residuals_are_whitened():
    fit = fitted("ovary_ar1", "reml")
    sigma = fit.residual_cov().toarray()
    r = fit.residuals
    # nlme's normalized residuals: L^-1 r with L L' = sigma^2 V group by group; their
    # squared norm is r' (sigma^2 V)^-1 r whichever factor is used
    e = fit.normalized_residuals
    assert e @ e == pytest.approx(r @ np.linalg.solve(sigma, r), rel=1e-9)
    np.testing.assert_allclose(fit.scaled_residuals, r / fit.sigma, rtol=1e-12)


def test_simulated_errors_have_the_fitted_correlation():
    fit = fitted("ovary_ar1", "reml")
    sims = fit.simulate(4000, seed=1)
    # lag-1 correlation of consecutive rows of a mare minus that of rows 2 apart: the
    # random intercept cancels in the differences of successive rows ...
    mean = fit.design.X @ fit.fixef.to_numpy()
    dev = sims - mean[:, None]
    mares = fit.design.data["Mare"].to_numpy()
    same = mares[1:] == mares[:-1]
    d1 = (dev[1:] - dev[:-1])[same]
    # Var(e_t - e_{t-1}) = 2 sigma^2 (1 - Phi) for AR(1) errors
    phi = fit.correlation_parameters["Phi"]
    expected = 2 * fit.sigma**2 * (1 - phi)
    assert np.var(d1) == pytest.approx(expected, rel=0.03)  # 4000 x 297 draws: se ~1%


def test_summary_prints_nlme_blocks():
    text = fitted("ovary_ar1", "reml").summary()
    assert "Correlation Structure: AR(1)" in text
    phi = fitted("ovary_ar1", "reml").correlation_parameters["Phi"]
    assert f"{phi:.7f}" in text
    text = fitted("orthodont_varident", "reml").summary()
    assert "Variance function:" in text and "Male" in text and "Female" in text


def test_anova_compares_structures_by_ml():
    ovary = mm.datasets.load("Ovary")
    plain = mm.lmer(OVARY, ovary, reml=False)
    ar1 = fitted("ovary_ar1", "ml")
    table = mm.anova(plain, ar1)
    ref = _reference("ovary_ar1_ml")
    chisq = 2 * (ref["logLik"] - plain.loglik)
    assert table["Chisq"].iloc[1] == pytest.approx(chisq, rel=1e-6)
    assert table["Df"].iloc[1] == 1
    with pytest.warns(UserWarning, match="refitting"):
        table = mm.anova(mm.lmer(OVARY, ovary), fitted("ovary_ar1", "reml"))
    assert table["logLik"].iloc[1] == pytest.approx(ref["logLik"], rel=1e-6)


def test_bootstrap_refits_the_structure():
    fit = fitted("orthodont_varident", "ml")
    boot = fit.bootstrap(nsim=12, seed=3, progress=False)
    draws = boot.draws if hasattr(boot, "draws") else boot.replicates
    assert "Female" in draws.columns
    # the estimates vary around the fit's: mean within 4 bootstrap se of the estimate
    col = draws["Female"]
    assert abs(col.mean() - fit.variance_parameters["Female"]) < 4 * col.std() / np.sqrt(12) + 1e-3


def test_bad_arguments():
    ovary = mm.datasets.load("Ovary")
    with pytest.raises(ArgumentError, match="correlation must be a structure"):
        mm.lmer(OVARY, ovary, correlation="AR1")
    with pytest.raises(ColumnNotFoundError, match="'Day'"):
        mm.lmer(OVARY, ovary, correlation=mm.cor.CAR1("Day"))
    halves = ovary.assign(half=(ovary["Time"] > 0.5).astype(str))  # spans the mares
    with pytest.raises(ArgumentError, match="nested"):
        mm.lmer(OVARY, halves, correlation=mm.cor.AR1(group="half"))
    with pytest.raises(ArgumentError, match="prior weights cannot be combined"):
        mm.lmer(OVARY, ovary, correlation=mm.cor.AR1(), weights="Time")
    with pytest.raises(ArgumentError, match="start and optimize"):
        mm.lmer(OVARY, ovary, correlation=mm.cor.AR1(), optimize=False)


def test_missing_times_are_dropped_with_a_count():
    ovary = mm.datasets.load("Ovary").assign(
        t=lambda d: d.groupby("Mare", observed=True).cumcount()
    )
    holed = ovary.copy()
    holed.loc[[3, 10, 50], "t"] = np.nan
    with pytest.warns(RowsDroppedWarning, match="3 row"):
        fit = mm.lmer(OVARY, holed, correlation=mm.cor.AR1("t"))
    assert fit.nobs == len(ovary) - 3
    assert holed["t"].isna().sum() == 3  # the user's frame is not modified


def test_profile_interval_ends_are_where_the_deviance_rises_by_the_chi2_quantile():
    from mixedmodels.optim.residual_profile import profiled

    fit = fitted("ovary_ar1", "ml")
    ci = fit.confint("profile")
    rp = fit._rp
    x_hat = fit._optimum.result.x
    structure = rp.correlation
    cut = 3.841458820694124  # qchisq(0.95, 1)
    for end in ("lower", "upper"):
        u = structure.unconstrained(np.array([ci.loc["Phi", end]]))[0]
        rise = profiled(rp, x_hat, rp.n_theta, u) - fit.objective
        assert rise == pytest.approx(cut, abs=2e-4)
    assert ci.loc["Phi", "lower"] < fit.correlation_parameters["Phi"] < ci.loc["Phi", "upper"]
    # the fixed effects are profiled too (as lme4's; they kept their Wald intervals before
    # the profiles covered every parameter): at each end, the deviance minimized with the
    # coefficient held there rises by the same quantile
    from mixedmodels.optim.residual_profile import with_fixed_value

    for j, name in enumerate(fit.fixef.index):
        for end in ("lower", "upper"):
            held = with_fixed_value(rp, j, ci.loc[name, end])
            # theta and Phi free, from the optimum and from a point next to it
            best = min(profiled_free(held, x_hat), profiled_free(held, x_hat * 1.01))
            assert best - fit.objective == pytest.approx(cut, abs=2e-4)


def profiled_free(rp, start):
    """min of ``rp.objective`` from ``start`` (BOBYQA, tight tolerances)."""
    from mixedmodels.optim.bobyqa import minimize_bounded

    res = minimize_bounded(
        rp.objective,
        np.clip(start, rp.lower_bounds(), rp.upper_bounds()),
        rp.lower_bounds(),
        upper=rp.upper_bounds(),
        ftol_abs=1e-12,
        xtol_abs=1e-12,
        initial_step=np.maximum(0.1 * np.abs(start), 0.02),
    )
    return res.fun


def test_refit_keeps_the_structure():
    fit = fitted("sleepstudy_ar1", "reml")
    y = fit.design.y * 1.5 + 3.0  # an affine response: Phi unchanged, beta scaled
    again = mm.refit(fit, y)
    assert isinstance(again, mm.ResidualLmerFit)
    assert again.correlation_parameters["Phi"] == pytest.approx(
        fit.correlation_parameters["Phi"], abs=1e-5
    )
    np.testing.assert_allclose(
        again.fixef.to_numpy(), fit.fixef.to_numpy() * 1.5 + [3.0, 0.0], rtol=1e-5
    )
    # REML: the density of n - p error contrasts, each scaled by 1.5
    dof = fit.nobs - len(fit.fixef)
    assert again.loglik == pytest.approx(fit.loglik - dof * np.log(1.5), rel=1e-8)


def test_prediction_intervals_use_the_rows_residual_variance():
    fit = fitted("orthodont_varident", "reml")
    conf = fit.predict(interval="confidence")
    pred = fit.predict(interval="prediction")
    female = (fit.design.data["Sex"] == "Female").to_numpy()
    delta = fit.variance_parameters["Female"]
    s2 = np.where(female, delta**2, 1.0) * fit.sigma**2
    # prediction variance = confidence variance + z' Var(b | y) z + sigma^2 s_i^2
    covs = fit._conditional_covariances[0][fit.design.terms[0].codes, 0, 0]
    np.testing.assert_allclose(pred["se"] ** 2, conf["se"] ** 2 + covs + s2, rtol=1e-10)
    # new rows: the same from their Sex column
    new = fit.design.data.iloc[[0, 60]]
    np.testing.assert_allclose(
        fit.predict(new, interval="prediction")["se"], pred["se"].to_numpy()[[0, 60]], rtol=1e-10
    )
    with pytest.raises(mm.DataError, match="new level"):
        fit.predict(new.assign(Sex="Other"), interval="prediction", allow_new_levels=True)


def test_a_structure_object_passed_to_two_fits_is_not_shared():
    ortho = mm.datasets.load("Orthodont")
    ident = mm.var.Ident("Sex")
    first = mm.lmer(ORTHODONT, ortho, weights=ident)
    subjects = ortho.assign(Group=np.where(ortho["Subject"].astype(str) < "M05", "a", "b"))
    mm.lmer(ORTHODONT, subjects, weights=mm.var.Ident("Group"))
    mm.lmer(ORTHODONT, ortho.iloc[::-1], weights=ident)  # the same object, other row order
    assert list(first.variance_parameters.index) == ["Female"]
    assert ident.levels == []  # the user's object stays unbound


def test_polars_and_arrow_data_fit_as_pandas():
    """Residual structures take polars DataFrames and pyarrow Tables as every other fit
    does (through narwhals): the same fit as from the pandas frame."""
    pl = pytest.importorskip("polars")
    pa = pytest.importorskip("pyarrow")
    sleep = mm.datasets.load("sleepstudy")
    formula = "Reaction ~ Days + (1 | Subject)"
    reference = mm.lmer(formula, sleep, correlation=mm.cor.AR1())
    for frame in (pl.from_pandas(sleep), pa.Table.from_pandas(sleep)):
        fit = mm.lmer(formula, frame, correlation=mm.cor.AR1())
        assert fit.loglik == pytest.approx(reference.loglik, rel=1e-12)
        np.testing.assert_allclose(fit.fixef, reference.fixef, rtol=1e-10)
