"""GlmerFit's accessors shared with LmerFit, against R (tests/reference/glmer_accessors/*.json,
made by make_glmer_accessors.R with lme4 1.1-31, glmmTMB 1.1.5, performance 0.10.2 /
insight 0.19.0 and broom.mixed 0.2.9.4): tidy, variance_decomposition / icc / r2_nakagawa,
ranef_cov, b, ranef_condvar, scaled_residuals; identities between them.

Tolerances.  Our fits and R's (lme4's run to tight tolerances) agree to 3e-5 relative in
the fixed effects (asserted below per case, with 1e-4); every quantity here is a smooth
function of the estimates (variances are quadratic in theta, ICC and R2 ratios of them), so
the quantities compared with R get 1e-4 relative (measured at most 7e-5: gamma_sim's random
variance, whose theta agrees to 4e-5; ICC and R2 at most 6e-5) unless a comment says
otherwise.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import ArgumentError
from mixedmodels.results.glmm_variance import null_intercept
from tests.family_cases import load_data

REFERENCE = Path(__file__).parents[1] / "reference" / "glmer_accessors"
CASES = sorted(p.stem for p in REFERENCE.glob("*.json"))
LME4_CASES = [
    c for c in CASES if json.loads((REFERENCE / f"{c}.json").read_text())["engine"] != "glmmTMB"
]
FAMILIES = {
    "binomial": "binomial",
    "poisson": "poisson",
    "Gamma": "gamma",
    "nbinom2": "nbinom2",
    "beta_family": "beta",
}
RTOL = 1e-4

_FITS: dict[str, object] = {}


def reference(name: str) -> dict:
    return json.loads((REFERENCE / f"{name}.json").read_text())


def fitted(name: str):
    """The case's fit (made once per session: the tests below share it)."""
    if name not in _FITS:
        ref = reference(name)
        data = load_data(ref["data"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # singular-fit and dropped-row notes
            if ref["engine"] == "glmer.nb":
                fit = mm.glmer_nb(ref["formula"], data)
            else:
                fit = mm.glmer(ref["formula"], data, FAMILIES[ref["family"]], link=ref["link"])
        _FITS[name] = fit
    return _FITS[name]


@pytest.mark.parametrize("name", CASES)
def test_the_fit_is_rs(name):
    """The premise of every comparison below: the estimates agree with R's to 1e-4."""
    ref = reference(name)
    np.testing.assert_allclose(fitted(name).fixef.to_numpy(), ref["fixef"], rtol=RTOL)


@pytest.mark.parametrize("name", CASES)
def test_variance_decomposition_is_insights(name):
    """insight::get_variance's var.fixed, var.random, var.residual, var.distribution and
    var.dispersion (the distribution-specific variance per family and link, the
    observation-level term of grouseticks as dispersion)."""
    ref = reference(name)["variance"]
    v = fitted(name).variance_decomposition()
    for key in ("fixed", "random", "residual", "distribution"):
        assert v[key] == pytest.approx(ref[key], rel=RTOL), key
    assert v["dispersion"] == pytest.approx(ref["dispersion"], rel=RTOL, abs=1e-12)
    assert v["residual"] == v["distribution"] + v["dispersion"]


@pytest.mark.parametrize("name", CASES)
def test_icc_and_r2_are_performances(name):
    ref = reference(name)
    fit = fitted(name)
    adjusted = fit.icc_adjusted()
    assert fit.icc() == pytest.approx(ref["icc_adjusted"], rel=RTOL)
    assert adjusted["adjusted"] == fit.icc()
    assert adjusted["conditional"] == pytest.approx(ref["icc_conditional"], rel=RTOL)
    r2 = fit.r2_nakagawa()
    assert r2["marginal"] == pytest.approx(ref["r2_marginal"], rel=RTOL)
    assert r2["conditional"] == pytest.approx(ref["r2_conditional"], rel=RTOL)


@pytest.mark.parametrize(
    "name",
    [
        "grouseticks_poisson",
        "grouseticks_observation_level",
        "salamanders_glmer_nb",
        "salamanders_nbinom2",
        "beta_sim_logit",
        "sleepstudy_gamma_log_slopes",
    ],
)
def test_null_model_intercept_is_insights(name):
    """insight's null model (the random terms with an intercept only; glmer.nb's size held,
    glmmTMB's parameters estimated again): its intercept, whose exp is the mu of the
    count and beta families' distribution-specific variance."""
    fit = fitted(name)
    expected = reference(name)["null_fixef"]
    expected = expected[0] if isinstance(expected, list) else expected
    assert null_intercept(fit.problem, fit.n_agq) == pytest.approx(expected, rel=RTOL)


def test_binomial_distribution_variance_is_the_links_latent_variance():
    """Closed forms: logit pi^2/3 (the standard logistic's), probit 1."""
    assert fitted("cbpp_binomial").variance_decomposition()["distribution"] == pytest.approx(
        np.pi**2 / 3, rel=1e-15
    )
    assert fitted("cbpp_probit").variance_decomposition()["distribution"] == 1.0


def test_gamma_distribution_variance_is_sigma_squared():
    fit = fitted("gamma_sim_log")
    assert fit.variance_decomposition()["distribution"] == pytest.approx(fit.sigma**2, rel=1e-15)


def test_poisson_distribution_variance_is_log1p_of_the_null_means_inverse():
    """Nakagawa et al.'s log(1 + 1/mu) at mu = exp(null intercept)."""
    fit = fitted("grouseticks_poisson")
    mu = np.exp(null_intercept(fit.problem, fit.n_agq))
    assert fit.variance_decomposition()["distribution"] == pytest.approx(
        np.log1p(1 / mu), rel=1e-12
    )


def test_variance_decomposition_is_a_copy():
    fit = fitted("cbpp_binomial")
    fit.variance_decomposition()["random"] = -1.0
    assert fit.variance_decomposition()["random"] > 0


def test_undefined_family_is_an_argument_error():
    """performance has no distribution-specific variance for the inverse Gaussian (its
    fallback returns sigma, not a variance): a clear error naming family and link."""
    data = load_data("gamma_sim")
    fit = mm.glmer("y ~ x + (1 | g)", data, "inverse_gaussian", link="log")
    with pytest.raises(ArgumentError, match="inverse_gaussian family with the log link"):
        fit.icc()
    with pytest.raises(ArgumentError, match="inverse_gaussian"):
        fit.r2_nakagawa()


# ------------------------------------------------------------------ tidy
@pytest.mark.parametrize("name", LME4_CASES)
def test_tidy_is_broom_mixeds(name):
    """broom.mixed's tidy(m, conf.int = TRUE, conf.method = "Wald"): rows, effect, group,
    term as R's; estimates to 1e-4; standard errors to 1e-3 relative (both from a
    finite-difference Hessian of the Laplace deviance, lme4's with steps of 1e-4: their
    agreement is the existing vcov tests'); z to 1e-3; p-values compared as -log10 p to
    1e-3 relative (they range to 1e-31); Wald limits to 1e-3 standard errors."""
    full = reference(name)
    ref = full["tidy"]
    t = fitted(name).tidy()
    assert list(t.columns) == [
        "effect",
        "group",
        "term",
        "estimate",
        "std_error",
        "statistic",
        "p_value",
        "conf_low",
        "conf_high",
    ]
    assert list(t.effect) == ref["effect"]
    assert [None if pd.isna(g) else g for g in t.group] == ref["group"]
    assert list(t.term) == ref["term"]
    np.testing.assert_allclose(t.estimate, ref["estimate"], rtol=RTOL)
    fixed = t.effect.to_numpy() == "fixed"
    assert t.std_error[~fixed].isna().all() and t.statistic[~fixed].isna().all()
    assert t.p_value[~fixed].isna().all()
    # Gamma: R's fixed rows from the Richardson standard errors (lme4's vcov's steps are
    # too wide there, see make_glmer_accessors.R); the others: broom.mixed's own
    richardson = full.get("tidy_fixed_richardson")
    expected = richardson if isinstance(richardson, dict) else ref
    take = slice(None) if isinstance(richardson, dict) else fixed

    def values(key):
        return np.array(expected[key], dtype=float)[take]

    se = values("std_error")
    np.testing.assert_allclose(t.std_error[fixed], se, rtol=1e-3)
    np.testing.assert_allclose(t.statistic[fixed], values("statistic"), rtol=1e-3)
    p_ref = np.maximum(values("p_value"), 1e-300)
    p_ours = np.maximum(t.p_value[fixed].to_numpy(), 1e-300)
    np.testing.assert_allclose(-np.log10(p_ours), -np.log10(p_ref), rtol=1e-3)
    for side in ("conf_low", "conf_high"):
        np.testing.assert_allclose(t[side][fixed], values(side), atol=1e-3 * se.max())
        assert t[side][~fixed].isna().all()


def test_tidy_rows_are_the_fits_parameters():
    """The same numbers as fixef_table and parameters: a reordering, no recomputation."""
    fit = fitted("sleepstudy_gamma_log_slopes")
    t = fit.tidy()
    table = fit.fixef_table()
    fixed = t[t.effect == "fixed"].set_index("term")
    pd.testing.assert_series_equal(fixed.estimate, table.estimate, check_names=False)
    pd.testing.assert_series_equal(fixed.statistic, table.z_value, check_names=False)
    ran = t[t.effect == "ran_pars"]
    params = fit.parameters
    expected = params.drop(table.index).to_numpy()
    np.testing.assert_array_equal(np.sort(ran.estimate.to_numpy()), np.sort(expected))
    assert ran.term.iloc[-1] == "sd__Observation" and ran.estimate.iloc[-1] == fit.sigma


def test_tidy_profile_intervals_are_confints():
    """conf_method="profile" puts confint(method="profile")'s limits on every row."""
    fit = fitted("cbpp_binomial")
    t = fit.tidy("profile")
    ci = fit.confint("profile")
    names = ["sd_(Intercept)|herd", *fit.fixef.index]
    order = [*range(1, len(names)), 0]  # tidy: the fixed effects first
    np.testing.assert_array_equal(t.conf_low, ci.lower[names].to_numpy()[order])
    np.testing.assert_array_equal(t.conf_high, ci.upper[names].to_numpy()[order])
    assert t.conf_low.notna().all()


def test_tidy_of_a_glmmtmb_family_lists_its_own_parameters():
    """nbinom2's size k (glmmTMB's sigma) as a "family" row with its Wald interval."""
    fit = fitted("salamanders_nbinom2")
    t = fit.tidy()
    row = t[t.effect == "family"]
    assert list(row.term) == ["sigma"]
    assert row.estimate.iloc[0] == pytest.approx(
        reference("salamanders_nbinom2")["sigma"], rel=RTOL
    )
    ci = fit.confint("wald").loc["sigma"]
    assert (row.conf_low.iloc[0], row.conf_high.iloc[0]) == (ci.lower, ci.upper)


# ------------------------------------------------------------------ random effects
@pytest.mark.parametrize("name", LME4_CASES)
def test_ranef_cov_is_varcorr(name):
    """lme4's VarCorr matrices (for Gamma scaled by sigma^2), keyed as varcorr's groups."""
    ref = reference(name)["ranef_cov"]
    covs = fitted(name).ranef_cov()
    assert list(covs) == list(ref)
    for label, frame in covs.items():
        assert list(frame.index) == ref[label]["names"]
        expected = np.reshape(ref[label]["cov"], frame.shape)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(frame.to_numpy(), expected, atol=RTOL * scale)


@pytest.mark.parametrize("name", LME4_CASES)
def test_b_is_getme_b(name):
    """getME(m, "b"), Z's column order; to 1e-4 of the largest mode (the modes follow theta
    and beta, which agree to 4e-5)."""
    b = fitted(name).b
    expected = np.array(reference(name)["b"])
    assert b.shape == expected.shape
    np.testing.assert_allclose(b, expected, atol=RTOL * np.abs(expected).max())


@pytest.mark.parametrize("name", LME4_CASES)
def test_ranef_condvar_is_postvar(name):
    """attr(ranef(m, condVar = TRUE)[[g]], "postVar") (one grouping factor per term here);
    the diagonals are ranef_table's condsd squared."""
    fit = fitted(name)
    ref = reference(name)["postvar"]
    condvar = fit.ranef_condvar()
    assert sorted(condvar) == sorted(ref)
    for label, cov in condvar.items():
        p = cov.shape[1]
        expected = np.reshape(ref[label], (-1, p, p))  # R's (p, p, levels), column-major
        np.testing.assert_allclose(cov, expected, atol=RTOL * np.abs(expected).max())
    condsd = fit.ranef_table().condsd.to_numpy()
    stacked = np.concatenate(
        [np.sqrt(np.diagonal(c, axis1=1, axis2=2)).T.ravel() for c in condvar.values()]
    )
    np.testing.assert_array_equal(np.sort(condsd), np.sort(stacked))


@pytest.mark.parametrize("name", LME4_CASES)
def test_scaled_residuals_are_lme4s(name):
    """residuals(m, "pearson", scaled = TRUE): Pearson residuals over sigma for Gamma."""
    fit = fitted(name)
    expected = np.array(reference(name)["scaled_pearson"])
    np.testing.assert_allclose(fit.scaled_residuals, expected, atol=RTOL * np.abs(expected).max())


def test_b_is_the_modes_in_z_order():
    """Identity: Z b is the random part of the linear predictor."""
    fit = fitted("sleepstudy_binary_slopes")
    eta = fit.linear_predictor
    marginal = fit.predict(include_random=False)
    np.testing.assert_allclose(fit.Z @ fit.b, eta - marginal, atol=1e-10)


def test_dropped_fixed_names_the_aliased_column():
    """A column equal to twice another is dropped, as lme4's rank check drops it, and the
    fit is the one without it (the same deviance function)."""
    data = load_data("cbpp").assign(p2=lambda d: (d.period == "2").astype(float))
    data = data.assign(twice=2 * data.p2)
    formula = "cbind(incidence, size - incidence) ~ p2 + twice + (1 | herd)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.glmer(formula, data, "binomial")
    assert fit.dropped_fixed == ["twice"]
    reduced = mm.glmer("cbind(incidence, size - incidence) ~ p2 + (1 | herd)", data, "binomial")
    np.testing.assert_allclose(fit.fixef.to_numpy(), reduced.fixef.to_numpy(), rtol=1e-8)


# ------------------------------------------------------------------ objective functions
@pytest.mark.parametrize("name", LME4_CASES)
def test_loglik_at_moves_as_lme4s_deviance_function(name):
    """loglik_at() is loglik; away from the fit (theta x 1.1, beta + se/10) it changes by
    -1/2 the change of lme4's devFunOnly deviance function (1e-4 of that change, which is
    0.2 to 3 log-likelihood units; both evaluate the Laplace approximation at the same
    point, so only our estimates' 1e-5 error enters through the fit's value)."""
    fit = fitted(name)
    ref = reference(name)["deviance_function"]
    assert fit.loglik_at() == pytest.approx(fit.loglik, rel=1e-10)
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-6)
    moved = fit.loglik_at(ref["beta"], ref["theta"])
    expected = -0.5 * (ref["at_point"] - ref["at_fit"])
    assert moved - fit.loglik == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_loglik_at_checks_its_arguments():
    fit = fitted("cbpp_binomial")
    with pytest.raises(ArgumentError, match="beta must have 4 values, got 2"):
        fit.loglik_at(beta=[0.0, 1.0])
    with pytest.raises(ArgumentError, match="theta must be finite"):
        fit.loglik_at(theta=[np.nan])
    with pytest.raises(ArgumentError, match="lower bounds"):
        fit.loglik_at(theta=[-0.5])
    with pytest.raises(ArgumentError, match="vector of numbers"):
        fit.loglik_at(beta="period")


@pytest.mark.parametrize("name", LME4_CASES)
def test_penalized_loss_is_lme4s_penalized_deviance(name):
    """At the fit: sum(residuals(m, "deviance")^2) + sum(getME(m, "u")^2) (1e-4)."""
    fit = fitted(name)
    expected = reference(name)["penalized_deviance"]
    assert fit.penalized_loss() == pytest.approx(expected, rel=RTOL)


def test_penalized_loss_is_minimal_over_b_at_the_modes():
    """The conditional modes minimise the penalized deviance at the fitted beta: moving b
    raises it, to second order (a step t raises it by about t^2 / 2 d'Hd)."""
    fit = fitted("sleepstudy_binary_slopes")
    base = fit.penalized_loss()
    rng = np.random.default_rng(3)
    for _ in range(5):
        step = rng.standard_normal(fit.b.size)
        up = fit.penalized_loss(b=fit.b + 1e-3 * step) - base
        down = fit.penalized_loss(b=fit.b - 1e-3 * step) - base
        assert up > 0 and down > 0
        assert up == pytest.approx(down, rel=0.05)  # no first-order term


def test_penalized_loss_of_lmer_is_unchanged():
    """LmerFit's penalized_loss (moved to MixedFit) is still the weighted RSS plus
    ||u||^2 (a random-intercept closed form: ||y - X beta - Z b||^2 + ||b||^2 / theta^2)."""
    data = mm.datasets.load("sleepstudy")
    fit = mm.lmer("Reaction ~ Days + (1 | Subject)", data)
    r = data.Reaction.to_numpy() - fit.X @ fit.fixef.to_numpy() - fit.Z @ fit.b
    expected = float(r @ r) + float(fit.b @ fit.b) / fit.theta[0] ** 2
    assert fit.penalized_loss() == pytest.approx(expected, rel=1e-9)


def test_lmer_ranef_condvar_holds_ranef_tables_condsd():
    """LmerFit's conditional covariances (MixedFit.ranef_condvar): their diagonals are the
    condsd that tests/test_lme4_agreement.py compares with lme4."""
    fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    cov = fit.ranef_condvar()["Subject"]
    assert cov.shape == (18, 2, 2)
    np.testing.assert_allclose(cov, np.transpose(cov, (0, 2, 1)), rtol=1e-12)
    table = fit.ranef_table()
    sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    np.testing.assert_array_equal(table.condsd.to_numpy(), sd.T.ravel())
