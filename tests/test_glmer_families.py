"""glmer with the families that have a dispersion parameter (Gamma, inverse Gaussian,
gaussian with a link), against lme4 1.1-31 (reference/families, made by
make_families_reference.R).

The references are lme4's fit with PIRLS converged (``tolPwrss = 1e-12``) and BOBYQA in
both stages run to a final trust radius of 1e-10 (``tight``): lme4's default stops early on
these flat surfaces (gamma_sim_log: its log-likelihood 1.1e-4 below the tight one).
Tolerances:

- log-likelihood within 1e-6 relative of lme4's and never lower by more than that
  (measured: at most 3.3e-6 absolute, ~5e-9 relative, ours higher);
- fixed effects within 1e-4 relative, or 1e-4 of a standard error for coefficients near 0
  (inverse links give coefficients of 1e-4); theta within 1e-4 relative to the term's
  largest theta (the correlation element of a (Days|Subject) term is 1/10 of the sd ones);
- standard errors within 2e-3 relative of the Hessian of lme4's own Laplace deviance by
  Richardson extrapolation (numDeriv, in the R script), and of lme4's ``vcov`` wherever
  that agrees with its own Richardson Hessian to 2e-3: lme4 differences with absolute steps
  of 1e-4, 10 standard errors wide for an inverse-link slope of 1e-4 (sleepstudy, Gamma
  inverse: lme4 9.20e-6, its Richardson Hessian 7.864e-6, ours 7.864e-6) and a rounding-noise
  width for an identity-link intercept of 1527 (Dyestuff);
- sigma within 1e-3 relative (measured <= 2e-6), the varcorr standard deviations (lme4
  scales them by sigma) likewise; fitted values 1e-4 relative.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import ArgumentError, DataError
from tests.family_cases import family_cases

CASES = family_cases("glmer")
IDS = [c.name for c in CASES]
FITS: dict[str, object] = {}


def fitted(case):
    if case.name not in FITS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            FITS[case.name] = case.fit()
    return FITS[case.name]


def test_there_are_cases_of_every_dispersion_family_and_link():
    pairs = {(c.reference["family"], c.reference["link"]) for c in CASES}
    assert pairs >= {
        ("Gamma", "log"),
        ("Gamma", "inverse"),
        ("Gamma", "identity"),
        ("inverse.gaussian", "1/mu^2"),
        ("inverse.gaussian", "log"),
        ("inverse.gaussian", "identity"),
        ("gaussian", "log"),
        ("gaussian", "inverse"),
    }


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_loglik_aic_and_counts_match_lme4(case):
    fit = fitted(case)
    ref = case.reference["tight"]
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-6)
    assert fit.loglik >= ref["logLik"] - 1e-6 * abs(ref["logLik"])
    assert fit.n_parameters == ref["df"]
    assert fit.aic == pytest.approx(ref["AIC"], rel=1e-6)
    assert fit.bic == pytest.approx(ref["BIC"], rel=1e-6)
    assert fit.nobs == ref["nobs"]
    assert fit.ngroups == ref["ngrps"]
    assert list(fit.fixef.index) == ref["fixef_names"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_estimates_match_lme4(case):
    fit = fitted(case)
    ref = case.reference["tight"]
    se = np.sqrt(np.diag(fit.vcov))
    ref_fixef = np.asarray(ref["fixef"])
    allowed = 1e-4 * np.maximum(np.abs(ref_fixef), se)
    assert np.all(np.abs(fit.fixef.to_numpy() - ref_fixef) <= allowed)
    ref_theta = np.asarray(ref["theta"])
    assert np.all(np.abs(fit.theta - ref_theta) <= 1e-4 * np.max(np.abs(ref_theta)))
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-3)
    np.testing.assert_allclose(fit.varcorr.sdcor, ref["varcorr_sdcor"], rtol=1e-3)
    np.testing.assert_allclose(fit.fitted, ref["fitted"], rtol=1e-4)
    np.testing.assert_allclose(fit.predict(type="response"), ref["fitted"], rtol=1e-4)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_standard_errors_match_the_hessian_of_lme4s_deviance(case):
    fit = fitted(case)
    ref = case.reference["tight"]
    se = np.sqrt(np.diag(fit.vcov))
    np.testing.assert_allclose(se, ref["se_richardson"], rtol=2e-3)
    lme4_stable = np.abs(np.asarray(ref["se"]) / ref["se_richardson"] - 1) <= 2e-3
    np.testing.assert_allclose(se[lme4_stable], np.asarray(ref["se"])[lme4_stable], rtol=2e-3)


def test_summary_prints_family_residual_and_t_values_as_lme4():
    case = next(c for c in CASES if c.name == "sleepstudy_gamma_log")
    text = fitted(case).summary()
    lme4_text = case.reference["summary"]
    assert " Family: Gamma  ( log )" in text and " Family: Gamma  ( log )" in lme4_text
    residual = [line for line in text.splitlines() if line.startswith(" Residual")]
    lme4_residual = [line for line in lme4_text.splitlines() if line.startswith(" Residual")]
    assert residual == lme4_residual  # " Residual             0.0082769 0.09098"
    assert "t value Pr(>|z|)" in text
    for name in ("AIC", "BIC", "logLik", "deviance", "df.resid"):
        assert name in text
    ours_ic = text.split("df.resid")[1].split()[:5]
    lme4_ic = lme4_text.split("df.resid")[1].split()[:5]
    assert ours_ic == lme4_ic


def test_wald_interval_rows_follow_lme4():
    """Fixed effects: estimate -/+ z se; sd rows and sigma NaN (lme4's Wald)."""
    fit = fitted(next(c for c in CASES if c.name == "sleepstudy_gamma_log"))
    ci = fit.confint()
    assert "sigma" in ci.index
    assert ci.loc["sigma"].isna().all()
    se = np.sqrt(np.diag(fit.vcov))
    upper = fit.fixef["Days"] + 1.959963984540054 * se[1]
    np.testing.assert_allclose(ci.loc["Days", "upper"], upper, rtol=1e-12)


def test_simulate_draws_from_the_family_with_lme4s_dispersion():
    """Gamma responses with shape 1/sigma^2 around the fitted model: over many draws the
    per-row mean of y / mu(u) is 1 and its variance sigma^2 (the shape's)."""
    fit = fitted(next(c for c in CASES if c.name == "gamma_sim_log"))
    sims = fit.simulate(400, seed=11)
    assert sims.shape == (fit.nobs, 400)
    assert np.all(sims > 0)
    # marginal mean of y: E exp(eta_fixed + b) = exp(eta_fixed + theta^2 / 2)
    eta = fit.predict(include_random=False)
    expected = np.exp(eta + fit.theta[0] ** 2 / 2)
    ratio = sims.mean(axis=1) / expected
    # 400 draws of a Gamma(shape 3) times lognormal(0.45): sd of a row's mean ~ 0.03
    assert abs(ratio.mean() - 1) < 0.02


def test_dispersion_families_reject_what_lme4_rejects():
    data = mm.datasets.load("sleepstudy")
    bad = data.assign(Reaction=data.Reaction - 300)
    with pytest.raises(DataError, match="Gamma response must be positive"):
        mm.glmer("Reaction ~ Days + (1|Subject)", bad, "gamma", link="log")
    with pytest.raises(DataError, match="log link must be positive"):
        mm.glmer("Reaction ~ Days + (1|Subject)", bad, "gaussian", link="log")
    with pytest.raises(ArgumentError, match="lmer"):
        mm.glmer("Reaction ~ Days + (1|Subject)", data, "gaussian")
    with pytest.raises(ArgumentError, match="n_agq"):
        mm.glmer("Reaction ~ Days + (1|Subject)", data, "gamma", link="log", n_agq=5)
    with pytest.raises(ArgumentError, match="profile"):
        fitted(next(c for c in CASES if c.name == "gamma_sim_log")).confint("profile")


@pytest.mark.parametrize(
    "family, link, words",
    [
        ("gama", None, "'gamma', 'inverse_gaussian'"),
        ("gamma", "logit", "inverse, log, identity"),
        ("inverse_gaussian", "sqrt", "1/mu\\^2, inverse, log, identity"),
    ],
)
def test_unknown_family_or_link_names_the_valid_ones(family, link, words):
    data = mm.datasets.load("sleepstudy")
    with pytest.raises(ArgumentError, match=words):
        mm.glmer("Reaction ~ Days + (1|Subject)", data, family, link=link)


def test_r_spelling_of_inverse_gaussian_is_accepted():
    data = pd.DataFrame({"y": [1.0, 2.0], "g": ["a", "b"]})
    fam = mm.glmer.__globals__["make_family"]("inverse.gaussian", "log")
    assert str(fam) == "inverse.gaussian  ( log )"
    assert data.shape == (2, 2)
