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

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import ArgumentError, DataError
from tests.catalogue import fit_cache
from tests.family_cases import family_cases

CASES = family_cases("glmer")
IDS = [c.name for c in CASES]
fitted = fit_cache()


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


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_summary_scaled_residuals_are_lme4s(case):
    """The "Scaled residuals" quantiles are lme4's ``residuals(m, "pearson", scaled =
    TRUE)``: Pearson residuals over sigma for these families (they were printed unscaled,
    -0.29 where lme4 prints -3.1679 on sleepstudy's Gamma fit); within 2e-4 of lme4's
    printed 4 decimals (its tight fit against ours)."""
    ours = fitted(case).summary().split("Scaled residuals:")[1].splitlines()[2].split()
    lme4 = case.reference["summary"].split("Scaled residuals:")[1].splitlines()[2].split()
    np.testing.assert_allclose(np.asarray(ours, float), np.asarray(lme4, float), atol=2e-4)


def test_wald_interval_rows_follow_lme4():
    """Fixed effects: estimate -/+ z se; sd rows and sigma NaN (lme4's Wald)."""
    fit = fitted(next(c for c in CASES if c.name == "sleepstudy_gamma_log"))
    ci = fit.confint()
    assert "sigma" in ci.index
    assert ci.loc["sigma"].isna().all()
    se = np.sqrt(np.diag(fit.vcov))
    upper = fit.fixef["Days"] + 1.959963984540054 * se[1]
    np.testing.assert_allclose(ci.loc["Days", "upper"], upper, rtol=1e-12)


def test_simulate_draws_from_the_model_lme4_fits():
    """Gamma responses with shape 1/sigma^2 around random effects with sd sigma * theta
    (varcorr's, the model of lme4's deviance): per draw, the variance over the 30 groups
    of the mean of log(y) - eta_fixed is (sigma theta)^2 + trigamma(1/sigma^2) / 12 (the
    group's own sampling variance); averaged over 300 draws within 10% (its sd there is
    ~2%; with b unscaled, as lme4's simulate draws it, the variance would be 2.3 times
    larger)."""
    from scipy import special

    case = next(c for c in CASES if c.name == "gamma_sim_log")
    fit = fitted(case)
    sims = fit.simulate(300, seed=11)
    assert sims.shape == (fit.nobs, 300) and np.all(sims > 0)
    groups = case.data()["g"].cat.codes.to_numpy()
    resid = np.log(sims) - fit.predict(include_random=False)[:, None]
    counts = np.bincount(groups)
    means = np.stack([np.bincount(groups, r) / counts for r in resid.T])
    expected = (fit.sigma * fit.theta[0]) ** 2 + special.polygamma(1, 1 / fit.sigma**2) / 12
    assert means.var(axis=1, ddof=1).mean() == pytest.approx(expected, rel=0.1)


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
    # (profile intervals, which lme4 refuses for these families, are ours:
    # tests/inference/test_profile_dispersion_families.py)


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


# ------------------------------------------------------------------ glmer.nb (lme4)
NB_CASES = family_cases("glmer.nb")
NB_IDS = [c.name for c in NB_CASES]


@pytest.mark.parametrize("case", NB_CASES, ids=NB_IDS)
def test_glmer_nb_matches_lme4(case):
    """Against lme4's glmer.nb with its outer loop over log(theta) run to 1e-10 and BOBYQA
    to a trust radius of 1e-10 (PIRLS at lme4's default on grouseticks, where 1e-12 does
    not converge in lme4: our log-likelihood is 1.8e-4 higher there).  Tolerances as for
    glmer; the size k (lme4's glmer.nb.theta) within 1e-3 (measured 2.4e-5)."""
    fit = fitted(case)
    ref = case.reference["tight"]
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-6)
    assert fit.loglik >= ref["logLik"] - 1e-6 * abs(ref["logLik"])
    assert fit.n_parameters == ref["df"]
    assert fit.aic == pytest.approx(ref["AIC"], rel=1e-6)
    assert fit.family.k == pytest.approx(ref["nb_theta"], rel=1e-3)
    se = np.sqrt(np.diag(fit.vcov))
    ref_fixef = np.asarray(ref["fixef"])
    allowed = 1e-4 * np.maximum(np.abs(ref_fixef), se)
    assert np.all(np.abs(fit.fixef.to_numpy() - ref_fixef) <= allowed)
    np.testing.assert_allclose(fit.theta, ref["theta"], rtol=1e-4, atol=1e-4 * max(ref["theta"]))
    np.testing.assert_allclose(se, ref["se"], rtol=2e-3)
    assert fit.sigma == 1.0
    lme4_line = case.reference["summary"].split(" Family: ")[1].split("\n")[0]
    assert lme4_line.startswith("Negative Binomial(") and lme4_line.endswith(")  ( log )")
    assert str(fit.family) == f"Negative Binomial({round(fit.family.k, 4):.7g})  ( log )"


# ------------------------------------------------------------------ glmmTMB's families
TMB_CASES = family_cases("glmmTMB")
TMB_IDS = [c.name for c in TMB_CASES]


@pytest.mark.parametrize("case", TMB_CASES, ids=TMB_IDS)
def test_glmmtmb_families_match_glmmtmb(case):
    """Against glmmTMB 1.1.5 (its Laplace approximation with the exact Hessian, the
    dispersion and zero-inflation coefficients estimated jointly): log-likelihood 1e-6
    relative (measured <= 2.7e-5 absolute, 1.6e-8 relative); fixed effects 1e-4 relative
    or 1e-4 standard errors; random-effect sds 1e-4 relative; standard errors 2e-3
    (measured <= 2.8e-4); sigma 1e-3; zero-inflation coefficients 1e-4 relative or
    standard errors, or, where glmmTMB's drifts towards -infinity (salamanders_zinb2: no
    zero inflation, the likelihood flat in it), both probabilities below 1e-4."""
    fit = fitted(case)
    ref = case.reference
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-6)
    assert fit.n_parameters == ref["df"]
    assert fit.aic == pytest.approx(ref["AIC"], rel=1e-6)
    assert fit.nobs == ref["nobs"]
    assert fit.ngroups == ref["ngrps"]
    se = np.sqrt(np.diag(fit.vcov))
    ref_fixef = np.asarray(ref["fixef"])
    allowed = 1e-4 * np.maximum(np.abs(ref_fixef), se)
    assert np.all(np.abs(fit.fixef.to_numpy() - ref_fixef) <= allowed)
    np.testing.assert_allclose(fit.theta, ref["sd"], rtol=1e-4)
    np.testing.assert_allclose(fit.varcorr.sdcor, ref["sd"], rtol=1e-4)
    np.testing.assert_allclose(se, ref["se"], rtol=2e-3)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-3)
    if ref.get("zi"):
        zi = fit.extra_parameters[[n for n in fit.extra_parameters.index if n.startswith("zi_")]]
        assert list(zi.index) == ["zi_" + n for n in ref["zi_fixef_names"]]
        ours, theirs = zi.to_numpy(), np.asarray(ref["zi_fixef"])
        close = np.abs(ours - theirs) <= 1e-4 * np.maximum(np.abs(theirs), ref["zi_se"])
        both_vanish = (special_expit(ours) < 1e-4) & (special_expit(theirs) < 1e-4)
        assert np.all(close | both_vanish)
    np.testing.assert_allclose(fit.fitted, ref["fitted"], rtol=1e-3)


def special_expit(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x)))


@pytest.mark.parametrize("case", TMB_CASES, ids=TMB_IDS)
def test_wald_intervals_of_the_dispersion_match_glmmtmb(case):
    """glmmTMB's Wald ``confint``: the fixed effects', the dispersion's (on the log scale,
    exponentiated) and the zero-inflation coefficients' within 2e-3 relative of the
    interval's width."""
    fit = fitted(case)
    ref = case.reference
    theirs = pd.DataFrame(
        {"lower": ref["confint_lower"], "upper": ref["confint_upper"]},
        index=ref["confint_names"],
    )
    ours = fit.confint()
    pairs = [(f"cond.{n}", n) for n in fit.fixef.index]
    if "sigma" in theirs.index:
        pairs.append(("sigma", "sigma"))
    pairs += [(f"zi.{n}", f"zi_{n}") for n in ref.get("zi_fixef_names") or []]
    zi = [n for n in fit.extra_parameters.index if n.startswith("zi_")]
    if np.any(special_expit(fit.extra_parameters[zi]) < 1e-4):
        # salamanders_zinb2: the zero-inflation intercept drifts along a flat direction
        # (ours -10.3, glmmTMB's -16.4) and the dispersion's curvature with it
        pairs = [p for p in pairs if p[0] not in ("sigma",) and not p[0].startswith("zi.")]
    for their_name, our_name in pairs:
        width = theirs.loc[their_name, "upper"] - theirs.loc[their_name, "lower"]
        np.testing.assert_allclose(
            ours.loc[our_name].to_numpy(), theirs.loc[their_name].to_numpy(), atol=2e-3 * width
        )


@pytest.mark.parametrize("name", ["salamanders_nbinom2", "owls_nbinom1", "salamanders_zip"])
def test_summary_prints_dispersion_and_zero_inflation_as_glmmtmb(name):
    """The information criteria, glmmTMB's dispersion line and the zero-inflation table's
    estimates and standard errors print as glmmTMB prints them."""
    case = next(c for c in TMB_CASES if c.name == name)
    text, theirs = fitted(case).summary(), case.reference["summary"]
    assert text.split("df.resid")[1].split()[:5] == theirs.split("df.resid")[1].split()[:5]
    line = [x for x in theirs.splitlines() if x.startswith("Dispersion parameter")]
    assert line == [x for x in text.splitlines() if x.startswith("Dispersion parameter")]
    if case.reference.get("zi"):
        ours_zi = text.split("Zero-inflation model:")[1].splitlines()[2:4]
        their_zi = theirs.split("Zero-inflation model:")[1].splitlines()[2:4]
        assert [r.split()[:3] for r in ours_zi] == [r.split()[:3] for r in their_zi]
        assert f"Zero inflation:            {case.reference['zi']}" in text


def test_zero_inflation_rejects_what_it_cannot_fit():
    data = load_salamanders()
    with pytest.raises(ArgumentError, match="poisson, nbinom2 and nbinom1"):
        mm.glmer("count ~ mined + (1|site)", data, "binomial", zi="~1")
    with pytest.raises(mm.FormulaError, match="fixed effects only"):
        mm.glmer("count ~ mined + (1|site)", data, "poisson", zi="~1 + (1|site)")
    with pytest.raises(mm.FormulaError, match="one-sided"):
        mm.glmer("count ~ mined + (1|site)", data, "poisson", zi="mined")
    with pytest.raises(DataError, match="beta response"):
        mm.glmer("count ~ mined + (1|site)", data, "beta")


def test_zero_inflated_fitted_values_are_the_mean_of_the_mixture():
    """glmmTMB's fitted(): (1 - pi) mu, with pi from the zero-inflation coefficients."""
    fit = fitted(next(c for c in TMB_CASES if c.name == "salamanders_zip"))
    pi = special_expit(
        fit.extra_parameters["zi_(Intercept)"]
        + fit.extra_parameters["zi_minedno"] * (load_salamanders().mined == "no").to_numpy()
    )
    mu = np.exp(fit.predict(type="link"))
    np.testing.assert_allclose(fit.fitted, (1 - pi) * mu, rtol=1e-12)
    np.testing.assert_allclose(fit.predict(type="response"), fit.fitted, rtol=1e-12)
    # new rows (here the first three fitted ones) get their zero-inflation probability too
    np.testing.assert_allclose(
        fit.predict(load_salamanders().head(3), type="response"), fit.fitted[:3], rtol=1e-10
    )
    sims = fit.simulate(200, seed=5)
    # structural plus sampling zeros: the share of zeros over 200 draws within 5 standard
    # errors of its expectation mean(pi + (1 - pi) exp(-mu)) (random effects redrawn, so
    # the expectation over them is not exact: 0.03 absolute)
    assert abs((sims == 0).mean() - np.mean(pi + (1 - pi) * np.exp(-mu))) < 0.03


def load_salamanders():
    from tests.family_cases import load_data

    return load_data("Salamanders")


def test_anova_of_nested_families_matches_glmmtmbs_likelihoods():
    """Owls: nbinom1 inside its zero-inflated version (zi = ~1): the likelihood-ratio
    statistic against glmmTMB's two log-likelihoods (19.1615) within 1e-4, one degree of
    freedom."""
    plain = fitted(next(c for c in TMB_CASES if c.name == "owls_nbinom1"))
    inflated = fitted(next(c for c in TMB_CASES if c.name == "owls_zinb1"))
    table = mm.anova(plain, inflated)
    refs = [
        next(c for c in TMB_CASES if c.name == n).reference for n in ("owls_nbinom1", "owls_zinb1")
    ]
    expected = 2 * (refs[1]["logLik"] - refs[0]["logLik"])
    assert table["Chisq"].iloc[1] == pytest.approx(expected, abs=1e-4)
    assert int(table["Df"].iloc[1]) == 1
    assert list(table["npar"]) == [refs[0]["df"], refs[1]["df"]]
