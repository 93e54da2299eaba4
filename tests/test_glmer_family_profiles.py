"""Profile intervals of the GLMM families with their own parameters, the dispersion
included (reference/families/profile, made by make_profile_reference.R).

glmmTMB's families (nbinom1, nbinom2, beta, tweedie, zero inflation): every parameter (fixed
effects, random-effect sd, the dispersion ``sigma``, zero-inflation coefficients) against
glmmTMB 1.1.5's ``confint(method = "uniroot")``, TMB's root finding on the profile of the
same Laplace likelihood, on its internal scale (log sd, log dispersion): within 1e-3 of the
interval's width (uniroot's own tolerance is R's default 1.2e-4 on that scale; the
estimates agree to 1e-4 relative; measured <= 3e-5 of the width), and against its
``confint(method = "profile")``, which interpolates a spline through ~8 points per side,
within 2e-3 of the width (measured <= 6e-4).

lme4's glmer.nb: the sd and fixed effects against lme4 1.1-31's ``confint(profile(m))``
(the size held at its estimate, as lme4 profiles; lme4 interpolates splines too): within
2.5e-3 of the width (measured <= 2e-3, minedno's upper end, where lme4's spline is
furthest from its last profile point); the size ``k`` (a row lme4's confint has not)
against the profile of lme4's own likelihood over k computed in R by refitting
``glmer(family = negative.binomial(k))`` and solving with ``uniroot(tol = 1e-10)``:
within 1e-4 relative (measured 2e-7).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.catalogue import fit_cache
from tests.family_cases import FAMILY_DIR, family_cases

PROFILE_DIR = FAMILY_DIR / "profile"
fitted = fit_cache()
intervals = {}


def profile_of(case):
    if case.name not in intervals:
        intervals[case.name] = fitted(case).confint("profile")
    return intervals[case.name]


def reference(case) -> dict:
    return json.loads((PROFILE_DIR / f"{case.name}.json").read_text())


def tmb_case(name):
    return next(c for c in family_cases("glmmTMB") if c.name == name)


# the Salamanders cases (10 and 11 parameters, 15-30 s CPU of profiling) are in the slow set
TMB_NAMES = ["owls_nbinom1", "beta_sim_logit", "tweedie_sim"]
TMB_SLOW = ["salamanders_nbinom2", "salamanders_zip"]


def _logit_power(power: float) -> float:
    """glmmTMB's internal Tweedie power parameter: ``power = 1 + plogis(psi)``."""
    return math.log((power - 1) / (2 - power))


def internal_pairs(fit, ref_names):
    """(our row, glmmTMB's internal name, the map from ours to that scale or None)."""
    pairs = [(n, n, None) for n in fit.fixef.index]
    sd_names = [n for n in fit.parameter_names if n.startswith("sd_")]
    theta_names = [n for n in ref_names if n.startswith("theta_")]
    pairs += [(ours, theirs, math.log) for ours, theirs in zip(sd_names, theta_names, strict=True)]
    if "d~(Intercept)" in ref_names:
        pairs.append(("sigma", "d~(Intercept)", math.log))
    if "Tweedie power" in ref_names:
        pairs.append(("power", "Tweedie power", _logit_power))
    pairs += [
        (n, "zi~" + n.removeprefix("zi_"), None)
        for n in fit.extra_parameters.index
        if n.startswith("zi_")
    ]
    return pairs


def check_against_glmmtmb(case):
    fit = fitted(case)
    ours = profile_of(case)
    ref = reference(case)
    assert list(ours.index) == fit.parameter_names
    for method, tolerance in (("uniroot", 1e-3), ("profile", 2e-3)):
        table = {
            n: (lo, hi)
            for n, lo, hi in zip(
                ref[f"{method}_names"],
                ref[f"{method}_lower"],
                ref[f"{method}_upper"],
                strict=True,
            )
        }
        pairs = internal_pairs(fit, list(table))
        assert len(pairs) == len(table)
        for our_name, their_name, to_internal in pairs:
            lo, hi = ours.loc[our_name]
            if to_internal is not None:
                lo, hi = to_internal(lo), to_internal(hi)
            t_lo, t_hi = table[their_name]
            width = t_hi - t_lo
            assert abs(lo - t_lo) <= tolerance * width, (method, our_name, lo, t_lo)
            assert abs(hi - t_hi) <= tolerance * width, (method, our_name, hi, t_hi)


@pytest.mark.parametrize("name", TMB_NAMES)
def test_profile_intervals_match_glmmtmb(name):
    check_against_glmmtmb(tmb_case(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", TMB_SLOW)
def test_profile_intervals_match_glmmtmb_slow(name):
    check_against_glmmtmb(tmb_case(name))


@pytest.mark.parametrize("name", TMB_NAMES + TMB_SLOW)
def test_wald_intervals_of_sigma_match_glmmtmb_full_confint(name):
    """glmmTMB's ``confint(method = "wald", full = TRUE)`` for the dispersion and the
    fixed effects: within 2e-3 of the width (as test_glmer_families.py's Wald check)."""
    case = tmb_case(name)
    fit, ref = fitted(case), reference(case)
    ours = fit.confint("wald")
    theirs = {
        n: (lo, hi)
        for n, lo, hi in zip(ref["wald_names"], ref["wald_lower"], ref["wald_upper"], strict=True)
    }
    pairs = [(n, f"cond.{n}") for n in fit.fixef.index]
    if "sigma" in theirs:
        pairs.append(("sigma", "sigma"))
    for our_name, their_name in pairs:
        t_lo, t_hi = theirs[their_name]
        np.testing.assert_allclose(
            ours.loc[our_name].to_numpy(), [t_lo, t_hi], atol=2e-3 * (t_hi - t_lo)
        )


def test_glmer_nb_profile_matches_lme4_and_the_size_profile():
    case = next(c for c in family_cases("glmer.nb") if c.name == "salamanders_glmer_nb")
    ours = profile_of(case)
    ref = reference(case)
    names = ref["profile_names"]
    lower, upper = np.asarray(ref["profile_lower"]), np.asarray(ref["profile_upper"])
    width = upper - lower
    np.testing.assert_array_less(np.abs(ours.loc[names, "lower"] - lower), 2.5e-3 * width)
    np.testing.assert_array_less(np.abs(ours.loc[names, "upper"] - upper), 2.5e-3 * width)
    assert list(ours.index) == names + ["k"]
    assert ours.loc["k", "lower"] == pytest.approx(ref["k_lower"], rel=1e-4)
    assert ours.loc["k", "upper"] == pytest.approx(ref["k_upper"], rel=1e-4)


def test_profile_traces_report_the_dispersion_on_its_own_scale():
    """profile(): zeta is 0 at the estimate of sigma and crosses -+1.96 at the profile
    interval's ends (on the scale sigma is reported)."""
    case = tmb_case("beta_sim_logit")
    fit = fitted(case)
    traces = fit.profile(level=0.95, points=3)
    sigma = traces[traces.parameter == "sigma"]
    at_hat = sigma.loc[np.isclose(sigma.value, fit.sigma, rtol=1e-12), "zeta"]
    assert len(at_hat) == 1 and at_hat.iloc[0] == 0.0
    ends = profile_of(case).loc["sigma"]
    for end, z in ((ends.lower, -1.959963984540054), (ends.upper, 1.959963984540054)):
        row = sigma.loc[np.isclose(sigma.value, end, rtol=1e-9), "zeta"]
        assert len(row) == 1 and row.iloc[0] == pytest.approx(z, abs=1e-6)


def test_lme4_dispersion_families_are_profiled_where_lme4_refuses():
    """lme4 cannot profile Gamma, inverse Gaussian or gaussian GLMMs ("can't (yet) profile
    GLMMs with non-fixed scale parameters": its sigma is not a parameter of its Laplace
    deviance); we profile theta and beta (sigma has no row) and check the ends against
    independent computations in tests/inference/test_profile_dispersion_families.py.
    Here: gamma_sim_log's intervals contain the estimates, and each fixed effect's is
    within 25% of the Wald interval's width (measured 1.003 and 1.04)."""
    case = next(c for c in family_cases("glmer") if c.name == "gamma_sim_log")
    fit = fitted(case)
    profile = fit.confint("profile")
    wald = fit.confint("wald")
    assert "sigma" not in profile.index
    estimates = fit.parameters.drop("sigma")
    assert list(profile.index) == list(estimates.index)
    assert np.all((profile["lower"] < estimates) & (estimates < profile["upper"]))
    for name in fit.fixef.index:
        ratio = (profile.loc[name, "upper"] - profile.loc[name, "lower"]) / (
            wald.loc[name, "upper"] - wald.loc[name, "lower"]
        )
        assert 0.75 < ratio < 1.25
